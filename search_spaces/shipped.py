"""The spaces hwnas ships: DNA's MBConv space and a small ViT space, each with a tiny CPU variant."""

from __future__ import annotations

from search_spaces.mbconv import DNA_OPS, DNA_STAGES, MIXED_OPS, MBConvSpace, StageSpec
from search_spaces.registry import register_space
from search_spaces.vit import ViTSpace


@register_space("mbconv")
def mbconv() -> MBConvSpace:
    """DNA's MBConv space at 224 px for ImageNet (1000 classes)."""
    return MBConvSpace("mbconv")


@register_space("mbconv-tiny")
def mbconv_tiny() -> MBConvSpace:
    """The MBConv space shrunk for CPU tests and the demo: 32 px, half width, 1-2 layers a stage, 10 classes."""
    stages = tuple(StageSpec(s.widths, s.stride, tuple(d for d in s.depths if d <= 2)) for s in DNA_STAGES)
    return MBConvSpace("mbconv-tiny", stages=stages, resolution=32, num_classes=10, width_mult=0.5)


@register_space("mbconv-tiny-64")
def mbconv_tiny_64() -> MBConvSpace:
    """``mbconv-tiny`` at 64 px with 62 classes, for ``--data glyphs``: its last blocks see 4x4 to 2x2 maps instead
    of 2x2 to 1x1, so most kernel choices compute different functions."""
    stages = tuple(StageSpec(s.widths, s.stride, tuple(d for d in s.depths if d <= 2)) for s in DNA_STAGES)
    return MBConvSpace("mbconv-tiny-64", stages=stages, resolution=64, num_classes=62, width_mult=0.5)


@register_space("mbconv-tiny-64-mix")
def mbconv_tiny_64_mix() -> MBConvSpace:
    """``mbconv-tiny-64`` with MixNet's multi-branch layers beside DNA's ops: ``e3k3.5.7`` and ``e6k3.5.7`` split
    the expanded channels into three groups convolved with 3x3, 5x5 and 7x7 depthwise kernels in parallel."""
    stages = tuple(StageSpec(s.widths, s.stride, tuple(d for d in s.depths if d <= 2)) for s in DNA_STAGES)
    return MBConvSpace("mbconv-tiny-64-mix", stages=stages, ops=DNA_OPS + MIXED_OPS, resolution=64, num_classes=62,
                       width_mult=0.5)


@register_space("vit")
def vit() -> ViTSpace:
    """A small ViT space (AutoFormer-T sized): 224 px, patch 16, width 192, three blocks of 3-4 layers."""
    return ViTSpace("vit")


@register_space("vit-tiny")
def vit_tiny() -> ViTSpace:
    """The ViT space shrunk for CPU tests and the demo: 32 px, patch 4, width 64, three blocks of 1-2 layers."""
    return ViTSpace(
        "vit-tiny", block_depths=((1, 2), (1, 2), (1, 2)), heads=(2, 4), mlp_ratios=(2.0, 4.0),
        resolution=32, patch_size=4, embed_dim=64, num_classes=10,
    )


