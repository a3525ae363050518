"""Rating every candidate of every block (DNA), along a prefix tree.

For each candidate: re-estimate BatchNorm statistics on training batches, run held-out data, and score the block's
output against the teacher's with DNA's scale-free ``mean|Y_hat - Y| / std(Y)`` (``l1_rel``, the search score) and
``mean((Y_hat - Y)^2) / var(Y)`` (``mse_rel``). Candidates sharing their first layers share those layers' modules
(see ``hwnas.supernet.blocks``), hence their outputs and BN statistics: a depth-first walk of the prefix tree evaluates each
distinct prefix once. Each candidate's score is averaged over the widths the block can receive.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from hwnas.supernet.blocks import BlockSupernet, layer_key
from profilers.progress import progress

log = logging.getLogger(__name__)


DEFAULT_MAX_CANDIDATES = 200_000


@dataclass
class _Node:
    """A prefix: the layer modules so far; candidates ending here; children by next layer key."""

    candidates: list[Any] = field(default_factory=list)
    children: dict[str, _Node] = field(default_factory=dict)


@dataclass
class RatingStats:
    """Work done: layer evaluations (one per prefix-tree node) and candidates scored."""

    layer_evaluations: int = 0
    candidates: int = 0


def prefix_tree(supernet: BlockSupernet, state: Hashable, by_module: bool = True) -> _Node:
    """The candidates of the block as a tree keyed by layer modules, or with ``by_module=False`` by the layers they
    build (then a shorter candidate is the ancestor of the longer ones that start with its layers even where each
    depth has its own modules)."""
    root = _Node()
    for candidate in supernet.candidates:
        _insert(supernet, root, candidate, state, by_module)
    return root


def _insert(supernet: BlockSupernet, root: _Node, candidate: Any, state: Hashable, by_module: bool = True) -> None:
    node = root
    units = supernet.units(candidate, state)
    for position, unit in enumerate(units):
        key = supernet.module_key(len(units), position, unit) if by_module else layer_key(position, unit)
        node = node.children.setdefault(key, _Node())
    node.candidates.append(candidate)


@torch.no_grad()
def recalibrate_and_run(module: nn.Module, calibration: torch.Tensor, held_out: torch.Tensor,
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Reset the module's BN statistics, re-estimate them on ``calibration`` (one pass, cumulative average, the
    outputs of that pass feed the next layer's re-estimation), then run ``held_out`` in eval mode."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    module.train()
    calibrated = module(calibration)
    module.eval()
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    return calibrated, module(held_out)


def _scores(prediction: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    error = prediction - target
    return {"l1_rel": float(error.abs().mean() / target.std()), "mse_rel": float(error.pow(2).mean() / target.var())}


@torch.no_grad()
def rate_block(
    supernet: BlockSupernet, calibration_input: torch.Tensor, held_out_input: torch.Tensor, held_out_target: torch.Tensor,
    max_candidates: int = DEFAULT_MAX_CANDIDATES, show_progress: bool = True, share_prefixes: bool = True,
) -> tuple[dict[str, dict[str, float]], RatingStats]:
    """Scores of every candidate (averaged over input states) and the work it took.

    ``share_prefixes=False`` evaluates each candidate from scratch (the baseline the benchmark compares with).
    """
    total = len(supernet.candidates) * len(supernet.states)
    if total > max_candidates:
        raise ValueError(f"block {supernet.block} has {total} candidate evaluations (candidates x input widths), more "
                         f"than --max-candidates {max_candidates}; raise it, or restrict the space (fewer depths or "
                         "ops per stage)")
    supernet.eval()
    stats = RatingStats()
    per_state: dict[str, list[dict[str, float]]] = {}
    bar = progress(total=total, desc=f"rate block {supernet.block}", unit="cand", disable=not show_progress,
                   summary=False)
    for state in supernet.states:
        adapter = supernet.adapters_in[supernet._state_key(state)]
        calibration, held_out = adapter(calibration_input), adapter(held_out_input)
        if share_prefixes:
            _walk(supernet, prefix_tree(supernet, state), calibration, held_out, held_out_target, per_state, stats, bar)
        else:
            for candidate in supernet.candidates:
                tree = _Node()
                _insert(supernet, tree, candidate, state)
                _walk(supernet, tree, calibration, held_out, held_out_target, per_state, stats, bar)
    bar.close()
    ratings = {name: {metric: sum(s[metric] for s in scores) / len(scores) for metric in scores[0]}
               for name, scores in per_state.items()}
    return ratings, stats


def _walk(supernet: BlockSupernet, node: _Node, calibration: torch.Tensor, held_out: torch.Tensor,
          target: torch.Tensor, per_state: dict[str, list[dict[str, float]]], stats: RatingStats, bar: Any) -> None:
    for candidate in node.candidates:
        per_state.setdefault(str(candidate), []).append(_scores(supernet.output_adapter(candidate)(held_out), target))
        stats.candidates += 1
        bar.update()
    for key, child in node.children.items():
        child_calibration, child_held_out = recalibrate_and_run(supernet.layers[key], calibration, held_out)
        stats.layer_evaluations += 1
        _walk(supernet, child, child_calibration, child_held_out, target, per_state, stats, bar)


def rating_summary(ratings: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Best, worst and spread of a block's l1_rel scores."""
    values = sorted(v["l1_rel"] for v in ratings.values())
    return {"candidates": len(values), "best": values[0], "median": values[len(values) // 2], "worst": values[-1]}


def deeper_worse(supernet: BlockSupernet, ratings: dict[str, dict[str, float]]) -> tuple[int, int]:
    """Pairs (candidate, a longer candidate that starts with exactly its layers) where the longer one rates worse.

    The extra layers of a longer candidate are residual (identity-initialised at worst), so in a trained supernet
    extending a candidate does not make it mimic the teacher worse; when most extensions rate worse the supernet is
    under-trained and its ratings favour the shallowest networks. Returns (worse, pairs), walking the prefix tree of
    the first input width.
    """
    worse = pairs = 0

    def walk(node: _Node, shorter: list[str]) -> None:
        nonlocal worse, pairs
        here = [str(c) for c in node.candidates if str(c) in ratings]
        for name in here:
            pairs += len(shorter)
            worse += sum(ratings[name]["l1_rel"] > ratings[prefix]["l1_rel"] for prefix in shorter)
        for child in node.children.values():
            walk(child, shorter + here)

    walk(prefix_tree(supernet, supernet.states[0], by_module=False), [])
    return worse, pairs


# the share of deeper candidates rated worse than their own prefix above which supernets read as under-trained
# (trained ones stay well below it on digits; under-trained ones reach 96%: benchmarks/docs/ranking.md)
UNDERTRAINED_FRACTION = 0.6


def undertrained_warning(deeper_worse_by_block: list[tuple[int, int]]) -> str | None:
    """A warning when, averaged over the blocks that have extensions, over ``UNDERTRAINED_FRACTION`` of extensions
    rate worse than their prefixes (naming the blocks above it), or None.

    The average, not any one block: an under-trained supernet fails in every block, while one trained supernet's
    late blocks on 2x2 and 1x1 maps can be all or nothing (block 4 of the demo's space has 216 pairs but only 12
    distinct functions, and one distillation seed had 216 of them worse, another 27), so a single block says more
    about which twin family won than about training."""
    checked = [(b, w, n) for b, (w, n) in enumerate(deeper_worse_by_block) if n]
    if not checked or sum(w / n for _, w, n in checked) / len(checked) <= UNDERTRAINED_FRACTION:
        return None
    where = ", ".join(f"block {b}: {w}/{n}" for b, w, n in checked if w / n > UNDERTRAINED_FRACTION)
    return (f"the block supernets look under-trained: deeper candidates rate worse than their own shorter prefixes "
            f"({where}), so the ratings favour the shallowest networks. Distill longer (--epochs) or with a higher "
            "--lr, then rate again")
