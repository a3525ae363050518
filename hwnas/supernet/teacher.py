"""Teachers cut at the space's block boundaries: stem, one stage per searchable block, head.

A teacher is a timm model (``--teacher efficientnet_b0 --pretrained`` for users with weights), a checkpoint, or, for
the embedded default, the largest member of the run's own space trained locally (``hwnas teacher train``). For timm
EfficientNets the stages are ``blocks[1:]`` (``blocks[0]`` belongs to the stem); for ViTs the transformer layers are
split into as many groups as the space has blocks.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from hwnas.data import load_data
from hwnas.devices import load_checkpoint
from hwnas.run import RunDir
from hwnas.supernet.seeds import source_run
from hwnas.training import TrainConfig, train_classifier
from profilers.files import atomic_torch_save
from search_spaces import SearchSpace


class BlockTeacher(nn.Module):
    """A teacher cut at the space's block boundaries: ``head(stage_n(...stage_1(stem(x))))``, one stage per block;
    ``features`` returns every boundary."""

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


def split_model(model: nn.Module, space: SearchSpace, description: dict[str, Any]) -> BlockTeacher:
    """Cut ``model`` at the space's block boundaries (``SearchSpace.cut_into_blocks``)."""
    stem, stages, head, recorded = space.cut_into_blocks(model, description)
    return BlockTeacher(model, stem, stages, head, {**description, **recorded})


def largest_arch(space: SearchSpace) -> Hashable:
    """The space's largest member: the last (widest, deepest, largest-op) candidate of every block."""
    return space.assemble([space.block_candidates(b)[-1] for b in range(space.num_blocks)])


def space_teacher(space: SearchSpace, arch: Hashable) -> BlockTeacher:
    """A teacher built from a member of the space itself (the embedded default's teacher)."""
    model = space.build(arch)
    description: dict[str, Any] = {"kind": "space", "space": space.name, "arch": str(arch), "name": str(arch)}
    if isinstance(model, VisionTransformer):
        description["layer_bounds"] = [0] + [b["layers"][1] for b in space.describe_blocks(arch)]
    return split_model(model, space, description)


def timm_teacher(name: str, space: SearchSpace, pretrained: bool = False) -> BlockTeacher:
    """A timm model by name; ``pretrained=True`` needs its weights on this machine (hwnas never fetches them here)."""
    import timm

    if name not in timm.list_models():
        raise ValueError(f"timm has no model {name!r}; see timm.list_models()")
    model = timm.create_model(name, pretrained=pretrained, img_size=space.resolution) if "vit" in name or \
        "deit" in name else timm.create_model(name, pretrained=pretrained)
    return split_model(model, space, {"kind": "timm", "name": name, "pretrained": pretrained})


def check_teacher(teacher: BlockTeacher, space: SearchSpace) -> list[tuple[int, ...]]:
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


def save_teacher(teacher: BlockTeacher, path: Path, extra: dict[str, Any]) -> None:
    """Checkpoint a teacher (its description, weights and results)."""
    atomic_torch_save({"description": teacher.description, "state_dict": teacher.model.state_dict(), **extra}, path)


def load_teacher(path: Path, space: SearchSpace) -> BlockTeacher:
    """A teacher checkpoint written by ``save_teacher`` (or ``hwnas teacher train``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no teacher at {path}; train one with 'hwnas teacher train' or pass --teacher NAME")
    saved = load_checkpoint(path)
    description = saved["description"]
    builders: dict[str, Callable[[], BlockTeacher]] = {
        "space": lambda: _member_teacher(space, description),
        "timm": lambda: timm_teacher(description["name"], space, pretrained=False),
    }
    if description.get("kind") not in builders:
        raise ValueError(f"{path}: unknown teacher kind {description.get('kind')!r}")
    teacher = builders[description["kind"]]()
    teacher.model.load_state_dict(saved["state_dict"])
    return teacher.eval()


def _member_teacher(space: SearchSpace, description: dict[str, Any]) -> BlockTeacher:
    """A teacher that is a member of a space: of the space it was recorded with (a space derived from it, such as
    an evolved op set, may lack the teacher's ops; the boundaries are the same), else of ``space``."""
    from search_spaces import get_space

    recorded = description.get("space")
    home = get_space(recorded) if recorded and recorded != space.name else space
    teacher = space_teacher(home, home.parse(description["arch"]))
    check_teacher(teacher, space)
    return teacher


def teacher_path(run: RunDir) -> Path:
    """The run's teacher checkpoint (a distillation seed's is its parent run's)."""
    return source_run(run).teacher_checkpoint


def train_teacher(
    run: RunDir, arch: str | None = None, timm_name: str | None = None, pretrained: bool = False,
    config: TrainConfig | None = None, show_progress: bool = True, train: bool = True, device: str = "cpu",
) -> dict[str, Any]:
    """Train (or resume) the run's teacher on ``device`` and report its test accuracy; ``train=False`` registers it
    as it is (a pretrained timm model, or an untrained space member)."""
    if run.config.seed_of:
        raise ValueError(f"{run.path} is a distillation seed of {source_run(run).path} and uses its teacher: train "
                         "the teacher there")
    space = run.space
    if timm_name is not None:
        teacher = timm_teacher(timm_name, space, pretrained=pretrained)
    else:
        teacher = space_teacher(space, space.parse(arch) if arch else largest_arch(space))
    check_teacher(teacher, space)
    _check_one_teacher(run, teacher.description)
    bundle = load_data(run.config.data, space.resolution)
    config = config or TrainConfig()
    result: dict[str, Any] = {"teacher": teacher.description, "data": bundle.name}
    if train and not pretrained:
        trained = train_classifier(teacher, bundle, config, run.teacher_training,
                                   show_progress=show_progress, label="teacher", device=device)
        result.update(trained)
    save_teacher(teacher, teacher_path(run), {"result": result})
    return result


def _check_one_teacher(run: RunDir, description: dict[str, Any]) -> None:
    """A run trains one teacher: ValueError when it already has (or is training) another one, whose training
    checkpoint would otherwise be loaded into this one and whose supernets would be mixed with its features. Records
    the teacher before training, so a killed training resumes only for the same teacher."""
    recorded = run.config.teacher
    files = [p.name for p in (teacher_path(run), run.teacher_training) if p.exists()]
    wanted = json.loads(json.dumps(description))
    if files and recorded is not None and recorded != wanted:
        raise ValueError(f"run {run.path} already has the teacher {recorded.get('name')} ({', '.join(files)}); "
                         f"training or registering another ({wanted.get('name')}) would mix the two. Use a new run "
                         f"(--run), or move {', '.join(files)} (and the supernet/ and ratings/ distilled from it) out "
                         f"of {run.path} first")
    run.update(teacher=wanted)


def open_teacher(run: RunDir) -> BlockTeacher:
    """The run's teacher (FileNotFoundError says how to make one)."""
    return load_teacher(teacher_path(run), run.space)


# what a teacher's weights determine: moved aside with it when another teacher takes its place
DERIVED = ("teacher.pt", "teacher_training.pt", "supernet", "ratings", "ratings.json", "ratings_seeds.json", "seeds",
           "search", "search.db")


def set_teacher(run: RunDir, arch_text: str, weights: Path | None = None) -> dict[str, Any]:
    """Make a trained child of the run (``hwnas train``; or ``weights`` of that architecture) the run's teacher, as
    DNA+'s progressive rounds do: the previous teacher and everything distilled, rated or searched from it move to
    ``RUN/teachers/DIGEST/`` (nothing trained is lost; the feature cache is rebuilt, its digest no longer matches);
    returns the new teacher's description, accuracy and where the previous one went."""
    if run.config.seed_of:
        raise ValueError(f"{run.path} is a distillation seed of {source_run(run).path}; set the teacher there")
    space = run.space
    arch = space.parse(arch_text)
    weights = Path(weights) if weights is not None else run.child_folder(arch) / "weights.pt"
    if not weights.is_file():
        raise FileNotFoundError(f"no trained weights at {weights}; train the child first with 'hwnas train --run "
                                f"{run.path} --arch \"{arch}\"' (or give --weights)")
    saved = load_checkpoint(weights)
    if saved.get("arch") != str(arch) or saved.get("space", space.name) != space.name:
        raise ValueError(f"{weights} holds {saved.get('arch')} of {saved.get('space')}, not {arch} of {space.name}")
    teacher = space_teacher(space, arch)
    teacher.model.load_state_dict(saved["state_dict"])
    check_teacher(teacher, space)
    result_file = weights.parent / "train_result.json"
    accuracy = json.loads(result_file.read_text()).get("test_accuracy") if result_file.is_file() else None
    moved_to = None
    current = teacher_path(run)
    if current.exists():
        old = load_teacher(current, space)
        if old.digest() == teacher.digest():
            return {"teacher": teacher.description, "test_accuracy": accuracy, "unchanged": True, "moved_to": None}
        moved_to = run.path / "teachers" / old.digest()[:12]
        moved_to.mkdir(parents=True, exist_ok=True)
        for name in DERIVED:
            if (run.path / name).exists():
                (run.path / name).replace(moved_to / name)
    result = {"teacher": teacher.description, "data": run.config.data, "test_accuracy": accuracy,
              "from_child": str(weights)}
    run.update(teacher=json.loads(json.dumps(teacher.description)), distill=None)
    save_teacher(teacher, teacher_path(run), {"result": result})
    return {**result, "unchanged": False, "moved_to": str(moved_to) if moved_to else None}
