"""A small ViT search space (in the spirit of DNA++ and AutoFormer-T), built from timm's VisionTransformer.

The patch embedding and width are fixed per space; transformer layers are grouped into blocks (the distillation
units), each block chooses its depth, and each layer its number of heads and MLP ratio. An architecture is written
``h3m4,h4m3.5|...`` with one group per block and each layer ``h{heads}m{mlp_ratio}``.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from search_spaces.base import LatencyUnit, SearchSpace, choice_error

_LAYER_PATTERN = re.compile(r"h(\d+)m(\d+(?:\.\d+)?)")


@dataclass(frozen=True, order=True)
class ViTLayer:
    """One transformer layer choice: number of attention heads and MLP expansion ratio."""

    heads: int
    mlp_ratio: float

    def __str__(self) -> str:
        return f"h{self.heads}m{self.mlp_ratio:g}"


@dataclass(frozen=True)
class ViTBlock:
    """The choice made for one block: its layers."""

    layers: tuple[ViTLayer, ...]

    @property
    def depth(self) -> int:
        """Number of layers."""
        return len(self.layers)

    def __str__(self) -> str:
        return ",".join(str(layer) for layer in self.layers)


@dataclass(frozen=True)
class ViTArch:
    """A member of a ViT space: one ``ViTBlock`` per block."""

    blocks: tuple[ViTBlock, ...]

    def __str__(self) -> str:
        return "|".join(str(block) for block in self.blocks)


class _Embed(nn.Module):
    """Patch embedding, class token and position embedding of a depth-0 timm ViT (its final norm included)."""

    def __init__(self, vit: VisionTransformer) -> None:
        super().__init__()
        vit.head = nn.Identity()  # the classifier belongs to the head unit
        self.vit = vit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit.forward_features(x)


class _Head(nn.Module):
    """Token pooling and classifier of a timm ViT."""

    def __init__(self, vit: VisionTransformer) -> None:
        super().__init__()
        # the embedding and the final norm belong to the embed unit
        vit.patch_embed, vit.norm, vit.cls_token, vit.pos_embed = nn.Identity(), nn.Identity(), None, None
        self.vit = vit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit.forward_head(x)


class ViTStem(nn.Module):
    def __init__(self, vit: VisionTransformer) -> None:
        super().__init__()
        self.vit = vit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        vit = self.vit
        return vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(x))))


class ViTHead(nn.Module):
    def __init__(self, vit: VisionTransformer) -> None:
        super().__init__()
        self.vit = vit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit.forward_head(self.vit.norm(x))


class ViTSpace(SearchSpace):
    """Blocks of transformer layers with searchable depth, heads and MLP ratio; fixed embedding width."""

    def __init__(
        self,
        name: str,
        block_depths: Sequence[Sequence[int]] = ((3, 4), (3, 4), (3, 4)),
        heads: Sequence[int] = (3, 4),
        mlp_ratios: Sequence[float] = (3.0, 3.5, 4.0),
        resolution: int = 224,
        patch_size: int = 16,
        embed_dim: int = 192,
        num_classes: int = 1000,
    ) -> None:
        if not block_depths or any(not depths or min(depths) < 1 for depths in block_depths):
            raise ValueError("a ViT space needs at least one block, each with depths >= 1")
        if any(embed_dim % h for h in heads):
            raise ValueError(f"every head count must divide embed_dim {embed_dim}, got heads {tuple(heads)}")
        if resolution % patch_size:
            raise ValueError(f"resolution {resolution} must be a multiple of patch_size {patch_size}")
        self.name = name
        self.block_depths = tuple(tuple(d) for d in block_depths)
        self.layer_choices = tuple(ViTLayer(h, float(m)) for h in heads for m in mlp_ratios)
        self.heads = tuple(heads)
        self.mlp_ratios = tuple(float(m) for m in mlp_ratios)
        self.resolution = resolution
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.num_classes = num_classes
        self.tokens = (resolution // patch_size) ** 2 + 1

    # -- architectures -------------------------------------------------------------------------------------------
    @property
    def num_blocks(self) -> int:
        return len(self.block_depths)

    def parse(self, text: str) -> ViTArch:
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"a {self.name} architecture string looks like {self._example()!r}, got {text!r}")
        groups = text.strip().split("|")
        if len(groups) != self.num_blocks:
            raise ValueError(
                f"{self.name} has {self.num_blocks} blocks separated by '|', the string has {len(groups)}; "
                f"example: {self._example()!r}"
            )
        return ViTArch(tuple(self._parse_block(i, group) for i, group in enumerate(groups)))

    def _parse_block(self, index: int, text: str) -> ViTBlock:
        layer_texts = text.split(",")
        if len(layer_texts) not in self.block_depths[index]:
            raise choice_error(f"block {index} depth", len(layer_texts), self.block_depths[index])
        layers = []
        for position, layer_text in enumerate(layer_texts):
            match = _LAYER_PATTERN.fullmatch(layer_text.strip())
            layer = ViTLayer(int(match.group(1)), float(match.group(2))) if match else None
            if layer not in self.layer_choices:
                raise choice_error(f"block {index} layer {position}", layer_text, self.layer_choices)
            layers.append(layer)
        return ViTBlock(tuple(layers))

    def _example(self) -> str:
        return str(ViTArch(tuple(ViTBlock((self.layer_choices[0],) * d[0]) for d in self.block_depths)))

    def validate(self, arch: ViTArch) -> ViTArch:
        """Check that ``arch`` belongs to this space (round-trips through the string form)."""
        if not isinstance(arch, ViTArch):
            raise ValueError(f"{self.name} takes ViTArch values, got {type(arch).__name__}")
        return self.parse(str(arch))

    def block_candidates(self, block: int) -> list[ViTBlock]:
        return [
            ViTBlock(layers)
            for depth in self.block_depths[block]
            for layers in itertools.product(self.layer_choices, repeat=depth)
        ]

    def sample(self, rng: random.Random) -> ViTArch:
        return ViTArch(tuple(
            ViTBlock(tuple(rng.choice(self.layer_choices) for _ in range(rng.choice(depths))))
            for depths in self.block_depths
        ))

    def enumerate(self) -> Iterator[ViTArch]:
        per_block = [self.block_candidates(i) for i in range(self.num_blocks)]
        for blocks in itertools.product(*per_block):
            yield ViTArch(tuple(blocks))

    def count(self) -> int:
        n = len(self.layer_choices)
        return math.prod(sum(n**d for d in depths) for depths in self.block_depths)

    def mutate(self, arch: ViTArch, rng: random.Random) -> ViTArch:
        decisions = []
        for index, (depths, block) in enumerate(zip(self.block_depths, arch.blocks)):
            if len(depths) > 1:
                decisions.append((index, None))
            if len(self.layer_choices) > 1:
                decisions.extend((index, layer) for layer in range(block.depth))
        if not decisions:
            raise ValueError(f"{self.name} holds a single architecture; there is nothing to mutate")
        index, layer = rng.choice(decisions)
        block = arch.blocks[index]
        if layer is None:
            depth = rng.choice([d for d in self.block_depths[index] if d != block.depth])
            extra = tuple(rng.choice(self.layer_choices) for _ in range(max(0, depth - block.depth)))
            block = ViTBlock((block.layers + extra)[:depth])
        else:
            choice = rng.choice([c for c in self.layer_choices if c != block.layers[layer]])
            block = ViTBlock(block.layers[:layer] + (choice,) + block.layers[layer + 1 :])
        blocks = list(arch.blocks)
        blocks[index] = block
        return ViTArch(tuple(blocks))

    # -- models --------------------------------------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, ...]:
        return (3, self.resolution, self.resolution)

    def _vit(self, layers: Sequence[ViTLayer], drop_path_rate: float = 0.0) -> VisionTransformer:
        """timm's VisionTransformer whose i-th block gets the heads and MLP ratio of ``layers[i]``."""

        def block_fn(**kwargs: Any) -> Block:
            layer = layers[kwargs["depth"]]
            return Block(**{**kwargs, "num_heads": layer.heads, "mlp_ratio": layer.mlp_ratio})

        return VisionTransformer(
            img_size=self.resolution, patch_size=self.patch_size, num_classes=self.num_classes,
            embed_dim=self.embed_dim, depth=len(layers), num_heads=self.heads[0], qkv_bias=True,
            block_fn=block_fn, drop_path_rate=drop_path_rate,
        )

    def build(self, arch: ViTArch, drop_path_rate: float = 0.0) -> VisionTransformer:
        layers = [layer for block in self.validate(arch).blocks for layer in block.layers]
        return self._vit(layers, drop_path_rate).eval()

    def units(self, arch: ViTArch) -> list[LatencyUnit]:
        arch = self.validate(arch)
        layers = [self._layer_unit(layer) for block in arch.blocks for layer in block.layers]
        return [self._embed_unit(), *layers, self._head_unit()]

    def _embed_unit(self) -> LatencyUnit:
        return LatencyUnit.of("vit_embed", self.input_shape, patch=self.patch_size, dim=self.embed_dim)

    def _layer_unit(self, layer: ViTLayer) -> LatencyUnit:
        return LatencyUnit.of("vit_layer", (self.tokens, self.embed_dim), heads=layer.heads, mlp=layer.mlp_ratio)

    def _head_unit(self) -> LatencyUnit:
        return LatencyUnit.of("vit_head", (self.tokens, self.embed_dim), classes=self.num_classes)

    # -- block interface (what the combiner needs) ---------------------------------------------------------------
    def initial_state(self) -> int:
        """What the first block receives: the embedding width (fixed)."""
        return self.embed_dim

    def block_output_state(self, block: int, candidate: ViTBlock) -> int:
        """What the next block receives: the embedding width (fixed)."""
        return self.embed_dim

    def block_units(self, block: int, candidate: ViTBlock, state: int) -> list[LatencyUnit]:
        """The units of ``candidate`` in block ``block``."""
        return [self._layer_unit(layer) for layer in candidate.layers]

    def stem_units(self) -> list[LatencyUnit]:
        """Units before the first block."""
        return [self._embed_unit()]

    def head_units(self, state: int) -> list[LatencyUnit]:
        """Units after the last block."""
        return [self._head_unit()]

    def cut_into_blocks(
        self, model: nn.Module, description: dict[str, Any],
    ) -> tuple[nn.Module, list[nn.Module], nn.Module, dict[str, Any]]:
        """A timm VisionTransformer: its transformer layers in as many groups as the space has blocks (equal
        groups, or the ``layer_bounds`` an earlier cut recorded)."""
        name = description.get("name")
        if not isinstance(model, VisionTransformer):
            raise ValueError(f"teacher {name} ({type(model).__name__}) is neither a timm EfficientNet nor a "
                             f"VisionTransformer; the {self.name} space cuts timm VisionTransformers")
        layers = list(model.blocks)
        if len(layers) < self.num_blocks:
            raise ValueError(f"teacher {name} has {len(layers)} transformer layers, fewer than the space's "
                             f"{self.num_blocks} blocks")
        count = self.num_blocks
        bounds = description.get("layer_bounds") or [round(i * len(layers) / count) for i in range(count + 1)]
        stages = [nn.Sequential(*layers[a:b]) for a, b in zip(bounds, bounds[1:])]
        return ViTStem(model), stages, ViTHead(model), {"layer_bounds": bounds}

    def blocks_of(self, arch: ViTArch) -> tuple[ViTBlock, ...]:
        """The candidate chosen in each block."""
        return arch.blocks

    def assemble(self, candidates: Sequence[ViTBlock]) -> ViTArch:
        """The architecture made of one candidate per block."""
        return self.validate(ViTArch(tuple(candidates)))

    def all_units(self) -> list[LatencyUnit]:
        units = {self._embed_unit(), self._head_unit(), *(self._layer_unit(c) for c in self.layer_choices)}
        return sorted(units, key=lambda u: u.key)

    def build_unit(self, unit: LatencyUnit) -> nn.Module:
        if unit.kind == "vit_layer":
            layer = ViTLayer(int(unit.param("heads")), float(unit.param("mlp")))
            return self._vit([layer]).blocks[0].eval()
        if unit.kind == "vit_embed":
            return _Embed(self._vit([])).eval()
        if unit.kind == "vit_head":
            return _Head(self._vit([])).eval()
        raise ValueError(f"{self.name} cannot build latency unit {unit.key}: unknown kind {unit.kind!r}")

    def describe_blocks(self, arch: ViTArch) -> list[dict[str, Any]]:
        arch = self.validate(arch)
        shape = [self.tokens, self.embed_dim]
        blocks, first = [], 0
        for index, block in enumerate(arch.blocks):
            blocks.append({
                "block": index, "choice": str(block), "depth": block.depth, "layers": [first, first + block.depth],
                "input_shape": shape, "output_shape": shape,
            })
            first += block.depth
        return blocks

    def definition(self) -> dict[str, Any]:
        return {
            "family": "vit", "name": self.name, "resolution": self.resolution, "patch_size": self.patch_size,
            "embed_dim": self.embed_dim, "num_classes": self.num_classes, "heads": list(self.heads),
            "mlp_ratios": list(self.mlp_ratios), "block_depths": [list(d) for d in self.block_depths],
        }
