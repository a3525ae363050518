"""NSE's evolving search space: rounds that add ops from a pool, distil them beside the kept ones, and prune.

Round k works on the op set ``kept(k-1) + added(k)`` (``kept(0)`` is ``--start``, default the run space's ops; the
pool is added in ``rounds`` equal slices, in the order given). It is a run of its own, ``RUN/evolve/roundK/``, of the
derived space ``BASE[ops]`` (``search_spaces.derived``) that shares the run's teacher and feature cache; its block
supernets start from round k-1's: every module whose key and shape they share (layers are keyed by their latency
unit, so a kept op's layers keep what they learned; the adapters too) is copied in, the new ops' modules start
fresh, and the round distils ``--epochs`` more epochs and rates every candidate. Then each block's candidates are put
on their Pareto front of (cost under ``objective``, rating): an op that no block's front uses is pruned, since the
exact combiner never picks a block candidate another one beats on both (at least one op is always kept).

``RUN/evolve/evolution.json`` records the settings and each finished round (written atomically); a rerun skips the
rounds recorded and resumes the one in flight. The result, ``RUN/evolve/space.json``, names the evolved space
(``hwnas space info runs/R/evolve/space.json``); ``RUN/evolve/final/`` is a run of it whose ratings are the last
round's for the candidates the evolved space keeps, so ``hwnas search --run RUN/evolve/final`` searches it.
"""

from __future__ import annotations

import json
import logging
import math
import random
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from hwnas.run import RunConfig, RunDir, open_run
from hwnas.search.combiner import pareto_mask
from hwnas.search.costs import CostModel, counted_cost
from hwnas.supernet.distill import DistillConfig, build_supernet, checkpoint_path, distill
from hwnas.supernet.ratings import load_ratings, rate
from hwnas.supernet.teacher import open_teacher
from profilers.files import atomic_torch_save, atomic_write_json, read_json
from search_spaces import SearchSpace, get_space
from search_spaces.derived import base_name, derive_space, parse_ops
from search_spaces.mbconv import MBConvOp, MBConvSpace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvolveSettings:
    """``rounds`` of evolution adding ``pool`` (op strings) to ``start`` (None: the space's own ops), ``epochs``
    of distillation per round, fronts under ``objective`` (``macs`` or ``params``)."""

    rounds: int
    pool: tuple[str, ...]
    start: tuple[str, ...] | None = None
    epochs: int = 10
    objective: str = "macs"
    lr: float = 0.02

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.epochs < 1 or self.lr <= 0:
            raise ValueError(f"--rounds and --epochs must be >= 1 and --lr > 0 (rounds of evolution, epochs per "
                             f"round), got rounds {self.rounds}, epochs {self.epochs}, lr {self.lr}")
        if self.objective not in ("macs", "params"):
            raise ValueError(f"--objective must be macs or params (what the fronts weigh), got {self.objective!r}")


def _check(run: RunDir, settings: EvolveSettings) -> tuple[list[MBConvOp], list[list[MBConvOp]]]:
    """The start ops and each round's added ops; ValueError for a space or pool evolution cannot take."""
    space = run.space
    if not isinstance(space, MBConvSpace):
        raise ValueError(f"space {space.name} has no op set to evolve; hwnas evolve works on MBConv spaces")
    if run.config.seed_of:
        raise ValueError(f"{run.path} belongs to another run; evolve that run")
    start = parse_ops(settings.start) if settings.start else list(space.ops)
    given = [parse_ops([text])[0] for text in settings.pool]  # in the order given: the first slice comes first
    pool = [op for op in dict.fromkeys(given) if op not in start]
    if not pool:
        raise ValueError(f"--pool adds no op the start set ({', '.join(map(str, start))}) lacks; name new ops, e.g. "
                         "e6k9,e4k5,e6k3.5.7")
    for op in pool:  # each op must build as a layer of this space
        alone = derive_space(space, [op])
        alone.build(alone.sample(random.Random(0)))
    per_round = math.ceil(len(pool) / settings.rounds)
    return start, [pool[i * per_round:(i + 1) * per_round] for i in range(settings.rounds)]


def evolve_folder(run: RunDir) -> Any:
    """Where a run's evolution lives."""
    return run.path / "evolve"


def round_run(run: RunDir, name: str, space: SearchSpace) -> RunDir:
    """The run of one round (or the final space) under ``RUN/evolve/``, sharing the run's teacher and cache."""
    path = evolve_folder(run) / name
    if not (path / "run.json").exists():
        path.mkdir(parents=True, exist_ok=True)
        config = RunConfig(space.name, run.config.data, run.config.created, run.config.teacher, None, "../..")
        atomic_write_json(path / "run.json", config.to_json())
    opened = open_run(path)
    if opened.config.space != space.name:
        raise ValueError(f"{path} holds {opened.config.space}, not {space.name}: it was made by another evolution; "
                         f"move {evolve_folder(run)} away to start a new one")
    return opened


def inherit(previous: RunDir, current: RunDir, config: DistillConfig) -> list[int]:
    """Start each of ``current``'s blocks that has no checkpoint from ``previous``'s: every tensor with the same key
    and shape copied in, fresh optimizer state, epoch 0; returns per block how many tensors were copied."""
    teacher = open_teacher(current)
    digest = teacher.digest()
    copied = []
    for block in range(current.space.num_blocks):
        target, source = checkpoint_path(current, block), checkpoint_path(previous, block)
        if target.exists() or not source.exists():
            copied.append(0)
            continue
        supernet = build_supernet(current, teacher, block, config.share_twins, config.separate_depths)
        state = supernet.state_dict()
        learned = torch.load(source, map_location="cpu", weights_only=True)["model"]
        same = {k: v for k, v in learned.items() if k in state and state[k].shape == v.shape}
        supernet.load_state_dict(state | same)
        optimizer = torch.optim.Adam(supernet.parameters(), lr=config.lr)
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.lr_decay)
        atomic_torch_save({"config": asdict(config), "model": supernet.state_dict(), "optimizer": optimizer.state_dict(),
                           "scheduler": scheduler.state_dict(), "teacher": digest, "epoch": 0, "history": [],
                           "inherited": len(same)}, target)
        copied.append(len(same))
    return copied


def front_ops(space: SearchSpace, ratings: list[dict[str, float]], cost: CostModel) -> set[MBConvOp]:
    """The ops some block's Pareto-optimal candidate (cost averaged over the widths the block can receive) uses."""
    used: set[MBConvOp] = set()
    for block, scores in enumerate(ratings):
        candidates = space.block_candidates(block)
        states = space.block_input_states(block)
        costs = np.asarray([np.mean([sum(cost.unit_cost(u) for u in space.block_units(block, c, s)) for s in states])
                            for c in candidates])
        rated = np.asarray([scores[str(c)] for c in candidates])
        for index in pareto_mask(costs, rated):
            used.update(candidates[index].ops)
    return used


def evolve(run: RunDir, settings: EvolveSettings, show_progress: bool = True, device: str = "cpu") -> dict[str, Any]:
    """Run or resume the rounds; returns the record (also in ``RUN/evolve/evolution.json``)."""
    start, added = _check(run, settings)
    open_teacher(run)  # FileNotFoundError says how to make one, before anything is written
    record_path = evolve_folder(run) / "evolution.json"
    wanted = json.loads(json.dumps(asdict(settings)))
    record: dict[str, Any] = {"base": run.space.name, "settings": wanted, "rounds": []}
    if record_path.exists():
        record = read_json(record_path, "evolution record")
        if record.get("settings") != wanted:
            raise ValueError(f"{record_path} records an evolution with other settings ({record.get('settings')}); give "
                             f"the same settings to resume, or move {evolve_folder(run)} away to start a new one")
    kept = parse_ops(record["rounds"][-1]["kept"]) if record["rounds"] else start
    config = DistillConfig(epochs=settings.epochs, lr=settings.lr)
    cost = counted_cost(run.space, settings.objective)
    previous = round_run(run, f"round{len(record['rounds'])}", get_space(record["rounds"][-1]["space"])) \
        if record["rounds"] else None  # the last finished round's run: its space is what it trained, before pruning
    for number in range(len(record["rounds"]) + 1, settings.rounds + 1):
        ops = sorted(set(kept) | set(added[number - 1]))
        space = derive_space(run.space, ops)
        current = round_run(run, f"round{number}", space)
        copied = inherit(previous, current, config) if previous is not None else [0] * space.num_blocks
        if show_progress:
            log.info("evolve round %d/%d: %d ops (%s), %d candidate architectures", number, settings.rounds,
                     len(ops), ", ".join(map(str, ops)), space.count())
        distill(current, config=config, show_progress=show_progress, device=device)
        rate(current, show_progress=show_progress, device=device)
        on_front = front_ops(space, load_ratings(current, seeds=False), cost)
        kept = [op for op in ops if op in on_front] or [ops[-1]]
        record["rounds"].append({"round": number, "space": space.name, "ops": [str(o) for o in ops],
                                 "added": [str(o) for o in added[number - 1]], "kept": [str(o) for o in kept],
                                 "pruned": [str(o) for o in ops if o not in kept], "inherited_tensors": copied,
                                 "architectures": space.count()})
        atomic_write_json(record_path, record)
        previous = current
    return finish(run, record, previous)


def finish(run: RunDir, record: dict[str, Any], last: RunDir) -> dict[str, Any]:
    """Write the evolved space's file and its searchable run (the last round's ratings, restricted to it)."""
    final = derive_space(run.space, parse_ops(record["rounds"][-1]["kept"]))
    final_run = round_run(run, "final", final)
    rated = read_json(last.ratings_file, "ratings")
    blocks = []
    for block, entry in enumerate(rated["blocks"]):
        keep = {str(c) for c in final.block_candidates(block)}
        blocks.append(entry | {"ratings": {k: v for k, v in entry["ratings"].items() if k in keep}})
    atomic_write_json(final_run.ratings_file, rated | {"space": final.name, "space_hash": final.definition_hash(),
                                                        "blocks": blocks, "evolved_from": str(last.path)})
    space_file = evolve_folder(run) / "space.json"
    atomic_write_json(space_file, {"space": final.name, "base": base_name(run.space.name),
                                   "ops": [str(o) for o in final.ops], "rounds": len(record["rounds"]),
                                   "run": str(final_run.path)})
    record |= {"space": final.name, "space_file": str(space_file), "final_run": str(final_run.path)}
    return record
