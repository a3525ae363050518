"""The run's ratings: rating every block's candidates, assembling ratings.json, and loading them for the search."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hwnas.data import load_data
from hwnas.devices import resolve_device
from hwnas.run import RunDir
from hwnas.supernet.distill import (
    block_indices,
    check_same_teacher,
    checkpoint_path,
    load_supernet,
    recorded_method,
    teacher_features,
)
from hwnas.supernet.rating import DEFAULT_MAX_CANDIDATES, deeper_worse, rate_block, rating_summary, undertrained_warning
from hwnas.supernet.seeds import SCORE, block_scores, combine_seed_ratings, combined_ratings, describe, seed_runs
from hwnas.supernet.selfsup import SELF_SUPERVISED
from hwnas.supernet.teacher import open_teacher
from hwnas.supernet.twins import pool_equivalent, pooled_counts
from profilers.files import atomic_write_json, file_digest, read_json
from search_spaces import SearchSpace

log = logging.getLogger(__name__)


def ratings_path(run: RunDir) -> Path:
    """The run's assembled ratings file."""
    return run.ratings_file


def rate(run: RunDir, block: int | None = None, max_candidates: int = DEFAULT_MAX_CANDIDATES,
         calibration_samples: int = 256, show_progress: bool = True, device: str = "cpu") -> dict[str, Any]:
    """Rate every candidate of every block (or one) on ``device``; assemble ratings.json once every block is rated."""
    blocks, torch_device = block_indices(run, block), resolve_device(device)
    method = recorded_method(run)
    source = _teacher_free_source(run, method, torch_device) if method in SELF_SUPERVISED else \
        _teacher_source(run, show_progress, torch_device)
    datasets = load_data(run.config.data, run.space.resolution).datasets
    held_out = torch.arange(len(datasets["val"]))
    calibration = torch.arange(min(calibration_samples, len(datasets["train"])))
    for b in blocks:
        path = run.block_ratings(b)
        if path.exists():
            rated_from = read_json(path, "block ratings").get("supernet", {})
            checkpoint = checkpoint_path(run, b)
            if method not in SELF_SUPERVISED:
                check_same_teacher(rated_from, source.digest, checkpoint, run)
            if not checkpoint.exists() or rated_from.get("sha256") == file_digest(checkpoint):
                continue
            if show_progress:
                log.info("block %d: its supernet changed since it was rated (trained further or again): rating "
                         "it again", b)
        supernet, record, (calibration_inputs, inputs, targets) = source.block(b, calibration, held_out)
        ratings, stats = rate_block(supernet, calibration_inputs, inputs, targets, max_candidates, show_progress)
        atomic_write_json(path, {"block": b, "supernet": record, "layer_evaluations": stats.layer_evaluations,
                                 "candidates_scored": stats.candidates,
                                 "deeper_worse": list(deeper_worse(supernet, ratings)), "ratings": ratings})
        if show_progress:
            summary = rating_summary(ratings)
            log.info("block %d: rated %d candidates (l1_rel best %.3f, median %.3f, worst %.3f) with %d layer "
                     "evaluations", b, summary["candidates"], summary["best"], summary["median"], summary["worst"],
                     stats.layer_evaluations)
    summary = assemble_ratings(run)
    if summary.get("undertrained"):
        log.warning("%s", summary["undertrained"])
    extra = seed_runs(run)
    for seed_run in extra:
        if not all(checkpoint_path(seed_run, b).exists() for b in range(run.space.num_blocks)):
            log.warning("%s: not every block is distilled yet, so it is left out of the combined ratings (finish it "
                        "with 'hwnas distill --run %s --seeds %d')", seed_run.path, run.path, len(extra) + 1)
            continue
        rate(seed_run, block, max_candidates, calibration_samples, show_progress, device)
    summary["rating_seeds"] = combine_seed_ratings(run) if not summary["missing_blocks"] else None
    return summary


@dataclass
class _Source:
    """Where a method's block ratings get their supernet and inputs: ``block(b, calibration, held_out)`` returns
    (supernet, checkpoint record, [calibration inputs, held-out inputs, held-out targets]) on the device."""

    block: Callable[[int, torch.Tensor, torch.Tensor], tuple[Any, dict[str, Any], list[torch.Tensor]]]
    digest: str = ""


def _teacher_source(run: RunDir, show_progress: bool, device: torch.device) -> _Source:
    """DNA: the teacher's features in and out of each block."""
    teacher = open_teacher(run)
    features = teacher_features(run, teacher, (run.config.distill or {}).get("cache", True), show_progress, device)

    def block(b: int, calibration: torch.Tensor, held_out: torch.Tensor) -> tuple[Any, dict[str, Any], list]:
        supernet, record = load_supernet(run, teacher, b, features.teacher_digest)
        inputs, targets = (t.to(device) for t in features.pair("val", b, held_out))
        return supernet.to(device), record, [features.get("train", b, calibration).to(device), inputs, targets]

    return _Source(block, features.teacher_digest)


def _teacher_free_source(run: RunDir, method: str, device: torch.device) -> _Source:
    """DNA++ and Pi-NAS: the frozen prefix's features in, the momentum ensemble's embedding as the target."""
    from hwnas.supernet.selfsup_train import rating_inputs

    return _Source(lambda b, calibration, held_out: rating_inputs(run, b, method, calibration, held_out, device))


def assemble_ratings(run: RunDir) -> dict[str, Any]:
    """ratings.json from the per-block files, with what produced them; incomplete runs say which blocks are missing."""
    space = run.space
    blocks, missing = [], []
    for b in range(space.num_blocks):
        path = run.block_ratings(b)
        if path.exists():
            blocks.append(read_json(path, "block ratings"))
        else:
            missing.append(b)
    summary = {"space": space.name, "space_hash": space.definition_hash(), "teacher": run.config.teacher,
               "data": run.config.data, "distill": run.config.distill, "missing_blocks": missing}
    if not missing:
        checked = [tuple(b["deeper_worse"]) for b in blocks if "deeper_worse" in b]  # absent in older runs
        summary["undertrained"] = undertrained_warning(checked) if len(checked) == len(blocks) else None
        atomic_write_json(ratings_path(run), {
            **summary, "score": "l1_rel",
            "blocks": [{"supernet": b["supernet"], "layer_evaluations": b["layer_evaluations"],
                        "deeper_worse": b.get("deeper_worse"), "ratings": b["ratings"]} for b in blocks],
        })
    return summary


def load_ratings(run: RunDir, score: str = "l1_rel", pooled: bool = True,
                 seeds: bool = True) -> list[dict[str, float]]:
    """Per block: candidate string -> score; FileNotFoundError says how to make them. ``pooled`` (what the search
    uses) gives candidates that compute the same functions their family's mean rating (``hwnas.rating_pool``);
    ``pooled=False`` returns each candidate's own rating as ``ratings.json`` stores it. With ``seeds`` the l1_rel
    score combined over the run's distillation seeds (``ratings_seeds.json``) is used when the run has one."""
    return load_ratings_and_seeds(run, score, pooled, seeds)[0]


def load_ratings_and_seeds(run: RunDir, score: str = "l1_rel", pooled: bool = True,
                           seeds: bool = True) -> tuple[list[dict[str, float]], dict[str, Any] | None]:
    """``load_ratings`` and the record of the combined seeds it used (None: the run's own ratings)."""
    path = ratings_path(run)
    if not path.exists():
        raise FileNotFoundError(f"run {run.path} has no ratings.json; run 'hwnas rate --run {run.path}'")
    data = read_json(path, "ratings file")
    if data.get("space_hash") != run.space.definition_hash():
        raise ValueError(f"{path} rates another definition of {run.space.name}; re-run 'hwnas rate'")
    combined = combined_ratings(run) if seeds and score == SCORE else None
    ratings, record = combined if combined else (block_scores(data, score), None)
    return (pool_equivalent(run.space, ratings) if pooled else ratings), record


@dataclass(frozen=True)
class Ratings:
    """What the search reads of a run's ratings: per block, each candidate's score (lower is better), and where they
    came from. Candidates are looked up by value (the space's candidate); the files key them by their string."""

    space: SearchSpace
    blocks: list[dict[str, float]]
    source: Path
    seeds: dict[str, Any] | None = None

    def of_candidate(self, block: int, candidate: Hashable) -> float:
        """One candidate's score in its block."""
        return self.blocks[block][str(candidate)]

    def of(self, arch: Hashable) -> float:
        """An architecture's summed block scores (what the combiner minimises)."""
        return sum(self.of_candidate(b, c) for b, c in enumerate(self.space.blocks_of(arch)))

    def digest(self) -> str:
        """A short hash of the scores (a search study is tied to the ratings it refined)."""
        text = json.dumps([dict(sorted(block.items())) for block in self.blocks])
        return hashlib.sha1(text.encode()).hexdigest()[:8]

    def describe(self) -> str:
        """One line on where the ratings came from."""
        return describe(self.seeds)

    def families(self) -> list[dict[str, int]]:
        """Per block: how many candidates were rated and how many distinct functions they compute."""
        return pooled_counts(self.space, self.blocks)


def open_ratings(run: RunDir) -> Ratings:
    """The ratings the search uses: l1_rel, twins pooled, the distillation seeds combined when the run has them."""
    blocks, record = load_ratings_and_seeds(run)
    source = Path(record["file"]) if record else ratings_path(run)
    return Ratings(run.space, blocks, source, record)
