"""More distillation seeds of a run's block supernets, and the one rating they combine into.

A block's ratings come from supernets trained with one random seed (the sampled paths and the data order). Where
a second seed orders a block's candidates alike, the rating measures the candidates; where it does not, it measures
the seed. ``hwnas distill --seeds N`` trains seeds 1..N-1 beside the run's own, each in ``RUN/seeds/seedK/`` (a run
of its own that shares the parent's teacher and feature cache); ``hwnas rate`` rates them and writes
``ratings_seeds.json``: the seeds' mean rating with each block scaled by how well its candidates' order reproduces
across them (``hwnas.supernet.reliability.reliability_weighted``). The search reads that file when it is there.
What it gives and costs: ``benchmarks/docs/seed_combination.md``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from hwnas.run import RunDir, open_run
from hwnas.supernet.reliability import block_reliability, reliability_weighted
from profilers.files import atomic_write_json, file_digest, read_json

SCORE = "l1_rel"


def source_run(run: RunDir) -> RunDir:
    """The run whose teacher and feature cache ``run`` uses: its parent for a seed run, else itself."""
    parent = run.config.seed_of
    return open_run((run.path / parent).resolve()) if parent else run


def seed_run_path(run: RunDir, seed: int) -> Path:
    """Where extra distillation seed ``seed`` (>= 1) of ``run`` lives."""
    return run.seeds_folder / f"seed{seed}"


def open_seed_run(run: RunDir, seed: int) -> RunDir:
    """Extra distillation seed ``seed`` of ``run``, created (atomically) on first use."""
    if run.config.seed_of:
        raise ValueError(f"{run.path} is itself a distillation seed of {source_run(run).path}: give that run")
    if seed < 1:
        raise ValueError(f"extra distillation seeds are numbered from 1, got {seed}")
    path = seed_run_path(run, seed)
    if not (path / "run.json").exists():  # several processes (torchrun ranks) may create it at once: one rename wins
        partial = path.with_name(f"{path.name}.partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        config = replace(run.config, distill=None, seed_of="../..")
        atomic_write_json(partial / "run.json", config.to_json())
        try:
            partial.rename(path)
        except OSError:
            shutil.rmtree(partial, ignore_errors=True)
            if not (path / "run.json").exists():
                raise
    return open_run(path)


def seed_runs(run: RunDir) -> list[RunDir]:
    """The extra distillation seeds ``run`` has, in seed order."""
    folder = run.seeds_folder
    found = sorted((int(p.name[4:]), p) for p in folder.glob("seed*")
                   if p.name[4:].isdigit() and (p / "run.json").exists()) if folder.exists() else []
    return [open_run(p) for _, p in found]


def block_scores(data: dict[str, Any], score: str = SCORE) -> list[dict[str, float]]:
    """Per block, candidate -> ``score`` of a ratings file's content (``ratings.json`` or ``ratings_seeds.json``)."""
    return [{name: float(s[score]) for name, s in block["ratings"].items()} for block in data["blocks"]]


def combine_seed_ratings(run: RunDir, ratings_file: str = "ratings.json") -> dict[str, Any] | None:
    """Write ``ratings_seeds.json`` from the run's ratings and those of every seed rated in full; None (and the file
    removed) when no extra seed is rated yet. Returns what was written, less the ratings."""
    combined_path = run.combined_ratings_file
    own = run.path / ratings_file
    files = [own] + [s.path / ratings_file for s in seed_runs(run) if (s.path / ratings_file).exists()]
    if not own.exists() or len(files) < 2:
        combined_path.unlink(missing_ok=True)
        return None
    contents = [read_json(f, "ratings file") for f in files]
    runs = [block_scores(data) for data in contents]
    reliability = block_reliability(runs)
    summary = {"score": SCORE, "weighting": "reliability", "seeds": len(files),
               "sources": [{"file": str(f.relative_to(run.path)), "sha256": file_digest(f)} for f in files],
               "block_reliability": reliability}
    parent = contents[0]
    blocks = [{"ratings": {name: {SCORE: value} for name, value in block.items()}}
              for block in reliability_weighted(runs)]
    atomic_write_json(combined_path, {"space": parent["space"], "space_hash": parent["space_hash"], **summary,
                                      "blocks": blocks})
    return summary


def combined_ratings(run: RunDir) -> tuple[list[dict[str, float]], dict[str, Any]] | None:
    """The combined ratings and their record when ``ratings_seeds.json`` is there and still matches every ratings
    file it was made from; None when there is none. ValueError when it is out of date (says what to run)."""
    path = run.combined_ratings_file
    if not path.exists():
        return None
    data = read_json(path, "combined ratings file")
    for source in data.get("sources", []):
        file = run.path / source["file"]
        if not file.exists() or file_digest(file) != source["sha256"]:
            raise ValueError(f"{path} was combined from another {file} (rated again since): run 'hwnas rate --run "
                             f"{run.path}' to combine the seeds again")
    ratings = block_scores(data)
    record = {k: data[k] for k in ("seeds", "weighting", "block_reliability")} | {"file": str(path)}
    return ratings, record


def describe(record: dict[str, Any] | None) -> str:
    """One line on where the ratings came from."""
    if record is None:
        return "one distillation seed"
    weights = ", ".join(f"{max(0.0, r):.2f}" for r in record["block_reliability"])
    return f"{record['seeds']} distillation seeds, blocks weighted by reproducibility ({weights})"
