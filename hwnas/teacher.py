"""Teachers cut at the space's block boundaries: stem, one stage per searchable block, head.

A teacher is a timm model (``--teacher efficientnet_b0 --pretrained`` for users with weights), a checkpoint, or, for
the embedded default, the largest member of the run's own space trained locally (``hwnas teacher train``). For timm
EfficientNets the stages are ``blocks[1:]`` (``blocks[0]`` belongs to the stem); for ViTs the transformer layers are
split into as many groups as the space has blocks.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import torch
from timm.models.efficientnet import EfficientNet
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from hwnas.devices import load_checkpoint
from profilers._files import atomic_torch_save
from search_spaces import SearchSpace


class _ViTStem(nn.Module):
    def __init__(self, vit: VisionTransformer) -> None:
        super().__init__()
        self.vit = vit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        vit = self.vit
        return vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(x))))


class _ViTHead(nn.Module):
    def __init__(self, vit: VisionTransformer) -> None:
        super().__init__()
        self.vit = vit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit.forward_head(self.vit.norm(x))


class TeacherStages(nn.Module):
    """A classifier seen as ``head(stage_n(...stage_1(stem(x))))``; ``features`` returns every boundary."""

    def __init__(self, model: nn.Module, stem: nn.Module, stages: list[nn.Module], head: nn.Module,
                 description: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.stem = stem
        self.stages = nn.ModuleList(stages)
        self.head = head
        self.description = description

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for stage in self.stages:
            h = stage(h)
        return self.head(h)

    def digest(self) -> str:
        """``weights_digest`` of the whole model (stem, stages and head are parts of it, so each weight counts once)."""
        return weights_digest(self.model)

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[stem output, output of stage 1, ..., output of stage n]."""
        outputs = [self.stem(x)]
        for stage in self.stages:
            outputs.append(stage(outputs[-1]))
        return outputs


def weights_digest(module: nn.Module) -> str:
    """Short sha256 of a module's weights and buffers (names, dtypes, shapes, values): what the teacher's features,
    and everything distilled from them, depend on. The same weights give the same digest on any device."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        value = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{value.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def split_model(model: nn.Module, num_blocks: int, description: dict[str, Any]) -> TeacherStages:
    """Cut a timm EfficientNet or VisionTransformer into stem, ``num_blocks`` stages and head."""
    if isinstance(model, EfficientNet):
        stages = list(model.blocks)[1:]
        if len(stages) != num_blocks:
            raise ValueError(f"teacher {description.get('name')} has {len(stages)} stages after its stem, the space "
                             f"has {num_blocks} blocks; choose a teacher of the same family (EfficientNet-B0..B7)")
        stem = nn.Sequential(model.conv_stem, model.bn1, model.blocks[0])
        head = nn.Sequential(model.conv_head, model.bn2, model.global_pool, model.classifier)
        return TeacherStages(model, stem, stages, head, description)
    if isinstance(model, VisionTransformer):
        layers = list(model.blocks)
        if len(layers) < num_blocks:
            raise ValueError(f"teacher {description.get('name')} has {len(layers)} transformer layers, fewer than the "
                             f"space's {num_blocks} blocks")
        bounds = description.get("layer_bounds") or [round(i * len(layers) / num_blocks) for i in range(num_blocks + 1)]
        stages = [nn.Sequential(*layers[a:b]) for a, b in zip(bounds, bounds[1:])]
        return TeacherStages(model, _ViTStem(model), stages, _ViTHead(model), {**description, "layer_bounds": bounds})
    raise ValueError(f"teacher {type(model).__name__} is neither a timm EfficientNet nor a VisionTransformer; hwnas "
                     "cuts those two families at their stages")


def largest_arch(space: SearchSpace) -> Hashable:
    """The space's largest member: the last (widest, deepest, largest-op) candidate of every block."""
    return space.assemble([space.block_candidates(b)[-1] for b in range(space.num_blocks)])


def space_teacher(space: SearchSpace, arch: Hashable) -> TeacherStages:
    """A teacher built from a member of the space itself (the embedded default's teacher)."""
    model = space.build(arch)
    description: dict[str, Any] = {"kind": "space", "space": space.name, "arch": str(arch), "name": str(arch)}
    if isinstance(model, VisionTransformer):
        description["layer_bounds"] = [0] + [b["layers"][1] for b in space.describe_blocks(arch)]
    return split_model(model, space.num_blocks, description)


def timm_teacher(name: str, space: SearchSpace, pretrained: bool = False) -> TeacherStages:
    """A timm model by name; ``pretrained=True`` needs its weights on this machine (hwnas never fetches them here)."""
    import timm

    if name not in timm.list_models():
        raise ValueError(f"timm has no model {name!r}; see timm.list_models()")
    model = timm.create_model(name, pretrained=pretrained, img_size=space.resolution) if "vit" in name or \
        "deit" in name else timm.create_model(name, pretrained=pretrained)
    return split_model(model, space.num_blocks, {"kind": "timm", "name": name, "pretrained": pretrained})


def check_teacher(teacher: TeacherStages, space: SearchSpace) -> list[tuple[int, ...]]:
    """The teacher's boundary shapes at the space's resolution; ValueError when they do not line up with the space."""
    teacher.eval()
    shapes = [tuple(f.shape[1:]) for f in teacher.features(space.example_input())]
    arch = space.sample(random.Random(0))
    for block, info in enumerate(space.describe_blocks(arch)):
        student, mine = tuple(info["output_shape"]), shapes[block + 1]
        if _layout(student) != _layout(mine):
            raise ValueError(
                f"teacher {teacher.description.get('name')} stage {block + 1} outputs {mine}, but block {block} of "
                f"{space.name} outputs {student} at {space.resolution} px: spatial sizes (or token counts) must match; "
                "choose a teacher whose stage strides equal the space's"
            )
    return shapes


def _layout(shape: tuple[int, ...]) -> tuple[int, ...]:
    """What must match between teacher and student: (H, W) of feature maps, the token count of token sequences."""
    return shape[1:] if len(shape) == 3 else shape[:1]


def save_teacher(teacher: TeacherStages, path: Path, extra: dict[str, Any]) -> None:
    """Checkpoint a teacher (its description, weights and results)."""
    atomic_torch_save({"description": teacher.description, "state_dict": teacher.model.state_dict(), **extra}, path)


def load_teacher(path: Path, space: SearchSpace) -> TeacherStages:
    """A teacher checkpoint written by ``save_teacher`` (or ``hwnas teacher train``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no teacher at {path}; train one with 'hwnas teacher train' or pass --teacher NAME")
    saved = load_checkpoint(path)
    description = saved["description"]
    builders: dict[str, Callable[[], TeacherStages]] = {
        "space": lambda: space_teacher(space, space.parse(description["arch"])),
        "timm": lambda: timm_teacher(description["name"], space, pretrained=False),
    }
    if description.get("kind") not in builders:
        raise ValueError(f"{path}: unknown teacher kind {description.get('kind')!r}")
    teacher = builders[description["kind"]]()
    teacher.model.load_state_dict(saved["state_dict"])
    return teacher.eval()
