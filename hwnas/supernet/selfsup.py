"""Teacher-free block supernets: DNA++ (self-supervised ensemble bootstrapping) and Pi-NAS (cross-path contrast).

Without a teacher, a block's input and target come from the supernets themselves, trained block after block:

- **Input of block i**: the images through a frozen *prefix*: the stem and, for each earlier block, the momentum
  (EMA) copy of its supernet along its reference candidate (the largest, the path a DNA run's default teacher would
  take), with BatchNorm statistics re-estimated on training images. Block 0 owns the stem and trains it. Block i
  therefore needs blocks 0..i-1 trained first; each block is still its own job (``--block i``, resumable per epoch,
  its own checkpoint), and its checkpoint records the digest of the prefix it learned on, so retraining an earlier
  block invalidates the later ones.
- **Target**: the momentum copy of the block's own supernet on another augmented view (``hwnas.data.augment_batch``),
  pooled and projected to a ``dim``-d embedding.
  - ``dnapp`` (DNA++, as BossNAS's ensemble bootstrapping): the online path's prediction (projector + predictor)
    of the mean normalized embedding of ``ensemble`` momentum paths; loss ``2 - 2 cos``, both views. Collapse is
    kept away by the predictor and the momentum target (BYOL) and by a variance term: the embeddings' directions
    are pushed to spread across the batch in every dimension (output divergence among samples).
  - ``pinas`` (Pi-NAS): two paths per step that differ; path A's online embedding of view 1 is contrasted with path
    B's momentum embedding of view 2 and vice versa (InfoNCE at ``temperature`` against a queue of ``queue``
    negative keys); the momentum update touches only the modules on the two paths (the mean teacher follows what
    was trained: no parameter shift for idle modules).
- **Rating** (both): each candidate's normalized online prediction (embedding for ``pinas``) of held-out images
  against the mean normalized momentum embedding of ``RATING_PATHS`` fixed paths, scored with the same
  ``l1_rel``/``mse_rel`` as DNA, so ``hwnas rate`` and ``hwnas search`` read them unchanged.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Hashable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hwnas.supernet.blocks import BlockSupernet
from hwnas.supernet.teacher import check_teacher, largest_arch, space_teacher, weights_digest
from search_spaces import SearchSpace

METHODS = {
    "dna": "distillation from a trained teacher, block by block (DNA; needs 'hwnas teacher train')",
    "dnapp": "teacher-free self-supervised blocks: momentum ensemble bootstrapping (DNA++)",
    "pinas": "teacher-free cross-path contrast with a momentum teacher and negatives (Pi-NAS)",
}
SELF_SUPERVISED = ("dnapp", "pinas")
RATING_PATHS = 16  # momentum paths averaged into a block's rating target


def check_method(method: str) -> str:
    """``method`` when hwnas knows it; ValueError listing the methods otherwise."""
    if method not in METHODS:
        raise ValueError(f"unknown --method {method!r}; choose one of {', '.join(METHODS)} ('hwnas distill --help' "
                         "says what each does)")
    return method


@dataclass(frozen=True)
class SelfSupSettings:
    """The self-supervised recipe beside ``DistillConfig`` (recorded in every checkpoint; a resume must match).

    Momentum 0.99 rather than Pi-NAS's 0.999 and a 4,096-key queue rather than 49,152: an epoch of the embedded data
    sets is tens of steps, not ImageNet's thousands, and a queue larger than a few epochs holds stale keys."""

    momentum: float = 0.99
    ensemble: int = 4
    dim: int = 128
    hidden: int = 256
    temperature: float = 0.2
    queue: int = 4096
    augment_strength: float = 0.5
    variance_weight: float = 1.0

    def __post_init__(self) -> None:
        if (not 0 <= self.momentum < 1 or self.ensemble < 1 or self.dim < 1 or self.hidden < 1
                or self.temperature <= 0 or self.queue < 1 or not 0 < self.augment_strength <= 1
                or self.variance_weight < 0):
            raise ValueError(f"bad self-supervised settings: 0 <= momentum < 1, ensemble, dim, hidden, queue >= 1, "
                             f"temperature > 0, 0 < augment_strength <= 1, variance_weight >= 0; got {self}")

    def record(self) -> dict[str, Any]:
        """The settings as a checkpoint records them."""
        return asdict(self)


def _mlp(width: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out))


def pool(h: torch.Tensor) -> torch.Tensor:
    """Global average of a feature map (N, C, H, W) or a token sequence (N, T, D): (N, C) or (N, D)."""
    return h.mean(dim=(2, 3)) if h.dim() == 4 else h.mean(dim=1)


class SelfSupBlock(nn.Module):
    """One block's online network: (block 0: the stem,) the block supernet, a projector and (``dnapp``) a
    predictor. ``forward(x, state, candidate)`` returns the path's embedding and its prediction."""

    def __init__(self, supernet: BlockSupernet, stem: nn.Module | None, settings: SelfSupSettings,
                 predictor: bool) -> None:
        super().__init__()
        self.supernet, self.stem = supernet, stem
        out = supernet.teacher_out
        self.projector = _mlp(out[0] if len(out) == 3 else out[-1], settings.hidden, settings.dim)
        self.predictor = _mlp(settings.dim, settings.hidden, settings.dim) if predictor else nn.Identity()

    def block_input(self, x: torch.Tensor) -> torch.Tensor:
        """Images through the stem (block 0), or the prefix's features as they are (later blocks)."""
        return self.stem(x) if self.stem is not None else x

    def embed(self, x: torch.Tensor, state: Hashable, candidate: Any) -> torch.Tensor:
        """The candidate's projected, pooled output (not normalized)."""
        return self.projector(pool(self.supernet.path_forward(self.block_input(x), state, candidate)))

    def forward(self, x: torch.Tensor, state: Hashable, candidate: Any) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.embed(x, state, candidate)
        return z, self.predictor(z)

    def rating_head(self) -> nn.Module:
        """What turns a candidate's adapted output into the score's embedding: pool, project, predict, normalize."""
        return _RatingHead(self.projector, self.predictor)


class _RatingHead(nn.Module):
    def __init__(self, projector: nn.Module, predictor: nn.Module) -> None:
        super().__init__()
        self.projector, self.predictor = projector, predictor

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.predictor(self.projector(pool(h))), dim=1)


class Pool(nn.Module):
    """``pool`` as a module."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return pool(h)


class EmbeddingSupernet(BlockSupernet):
    """A block supernet rated in its embedding space: once ``head`` is set, a candidate's output adapter ends in it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head: nn.Module | None = None

    def output_adapter(self, candidate: Any) -> nn.Module:
        adapter = super().output_adapter(candidate)
        return adapter if self.head is None else nn.Sequential(adapter, self.head)


def reference_shapes(space: SearchSpace) -> tuple[list[tuple[int, ...]], nn.Module]:
    """Block boundary shapes of the space's largest member (the adapters' common widths) and a fresh stem."""
    reference = space_teacher(space, largest_arch(space))
    return check_teacher(reference, space), reference.stem


def reference_path(space: SearchSpace, block: int) -> tuple[Hashable, Any]:
    """(input state, candidate) of the block's reference path: the largest candidate, fed by the largest before it."""
    state = space.block_input_states(0)[0]
    for earlier in range(block):
        state = space.block_output_state(earlier, space.block_candidates(earlier)[-1])
    return state, space.block_candidates(block)[-1]


def momentum_update(online: nn.Module, target: nn.Module, momentum: float) -> None:
    """``target = momentum * target + (1 - momentum) * online`` for every parameter (buffers stay the target's)."""
    with torch.no_grad():
        for mine, theirs in zip(target.parameters(), online.parameters()):
            mine.mul_(momentum).add_(theirs.detach(), alpha=1 - momentum)


def make_target(online: nn.Module) -> nn.Module:
    """The momentum copy of an online network (no gradients)."""
    target = copy.deepcopy(online)
    for parameter in target.parameters():
        parameter.requires_grad_(False)
    return target


def byol_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``2 - 2 cos`` between predictions and (already computed) targets, averaged over the batch."""
    return (2 - 2 * F.cosine_similarity(prediction, target.detach(), dim=1)).mean()


def variance_floor(z: torch.Tensor, floor: float = 1.0) -> torch.Tensor:
    """Mean shortfall below ``floor`` of each dimension's standard deviation across the batch, on the embeddings'
    directions (normalized, scaled by sqrt(dim) so that directions spread evenly over the sphere have 1): zero
    when the samples point apart, one when they all point alike (VICReg's variance term, on what the loss and the
    ratings compare: directions; a common offset cannot hide a collapse behind a large spread of lengths)."""
    directions = F.normalize(z, dim=1) * z.shape[1] ** 0.5
    return F.relu(floor - torch.sqrt(directions.var(dim=0) + 1e-4)).mean()


def info_nce(query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """MoCo's InfoNCE: each normalized query against its key (positive) and the queue's keys (negatives)."""
    positive = (query * key.detach()).sum(dim=1, keepdim=True)
    negative = query @ queue.detach().T
    logits = torch.cat([positive, negative], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(query), dtype=torch.long, device=query.device))


def path_network(block: SelfSupBlock, state: Hashable, candidate: Any) -> nn.Sequential:
    """One path of a block as a module: (stem,) input adapter, layers, output adapter, pool, projector."""
    supernet = block.supernet
    parts = [block.stem] if block.stem is not None else []
    return nn.Sequential(*parts, supernet.adapters_in[supernet._state_key(state)],
                         *supernet.candidate_layers(candidate, state), supernet.output_adapter(candidate), Pool(),
                         block.projector)


@torch.no_grad()
def ensemble_target(target: SelfSupBlock, x: torch.Tensor, paths: list[tuple[Hashable, Any]]) -> torch.Tensor:
    """The mean normalized momentum embedding of ``x`` over ``paths``, normalized."""
    total = sum(F.normalize(target.embed(x, state, candidate), dim=1) for state, candidate in paths)
    return F.normalize(total / len(paths), dim=1)


def other_path(supernet: BlockSupernet, first: tuple[Hashable, Any], rng: random.Random,
               tries: int = 16) -> tuple[Hashable, Any]:
    """A second sampled path that differs from ``first`` (the same one only in a block with a single candidate)."""
    for _ in range(tries):
        second = supernet.sample_path(rng)
        if second[1] != first[1]:
            return second
    return second


def path_modules(block: SelfSupBlock, paths: list[tuple[Hashable, Any]]) -> list[nn.Module]:
    """The modules a step's paths ran: their layers, their adapters, the projector (and stem, predictor)."""
    supernet = block.supernet
    modules: list[nn.Module] = [block.projector, block.predictor]
    if block.stem is not None:
        modules.append(block.stem)
    for state, candidate in paths:
        modules += [supernet.adapters_in[supernet._state_key(state)], supernet.output_adapter(candidate)]
        modules += supernet.candidate_layers(candidate, state)
    return list({id(m): m for m in modules}.values())


def momentum_update_paths(online: SelfSupBlock, target: SelfSupBlock, paths: list[tuple[Hashable, Any]],
                          momentum: float) -> None:
    """Pi-NAS's mean teacher: the momentum update of only the modules on this step's paths."""
    names = {id(m): n for n, m in online.named_modules()}
    mine = dict(target.named_modules())
    for module in path_modules(online, paths):
        momentum_update(module, mine[names[id(module)]], momentum)


def prefix_digest(prefix: nn.Module | None) -> str:
    """What a block's inputs depend on: the frozen prefix's weights and statistics (block 0: none)."""
    return "images" if prefix is None else weights_digest(prefix)
