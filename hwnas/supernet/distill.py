"""Block-wise distillation (DNA): each block's supernet learns to mimic the teacher's matching stage.

The input of block ``i`` is the teacher's output of the previous stage, so blocks are independent: ``--block i``
trains one alone (blocks run in parallel processes or on separate GPUs), and ``torchrun`` adds data parallelism
inside a block (DDP; gloo on CPU). One uniformly sampled path per step (input width, depth, width and every op),
MSE against the teacher's stage output, Adam with a x0.9 per-epoch decay. A checkpoint per epoch; a killed run
resumes from the last one.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from hwnas.data import load_data
from hwnas.devices import load_checkpoint, rank_world, resolve_device
from hwnas.run import RunDir
from hwnas.supernet import claims
from hwnas.supernet.blocks import BlockSupernet
from hwnas.supernet.features import TeacherFeatures
from hwnas.supernet.seeds import open_seed_run, source_run
from hwnas.supernet.selfsup import SELF_SUPERVISED, check_method
from hwnas.supernet.selfsup_train import check_method_of
from hwnas.supernet.teacher import BlockTeacher, check_teacher, open_teacher
from hwnas.training.depthwise import fast_small_depthwise
from profilers.files import atomic_torch_save, file_digest
from profilers.progress import progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistillConfig:
    """The supernet recipe: DNA's (Adam, x0.9 decay per epoch, batch 64, 20 epochs) with a 10x learning rate (0.02;
    DNA's 0.002 was set for ImageNet's 20,000-step epochs and leaves supernets under-trained on small data sets: see
    ``benchmarks/docs/ranking.md``). ``share_twins`` trains one module for kernels that compute the same on their
    map (``SearchSpace.twin_unit``); checkpoints written before it existed trained each kernel alone and resume with
    ``share_twins=False``. ``separate_depths`` trains each depth of a block as its own cell (DNA's published way)
    instead of sharing a shallow candidate's layers with the deeper candidates that start with them.
    """

    epochs: int = 20
    lr: float = 0.02
    lr_decay: float = 0.9
    batch_size: int = 64
    seed: int = 0
    share_twins: bool = True  # one module per family of kernels that compute the same on their map
    separate_depths: bool = False  # one cell per depth (DNA) instead of depths sharing their prefixes
    method: str = "dna"  # or a teacher-free method of hwnas.supernet.selfsup

    def __post_init__(self) -> None:
        check_method(self.method)
        if self.epochs < 1 or self.lr <= 0 or not 0 < self.lr_decay <= 1 or self.batch_size < 1:
            raise ValueError(f"bad distillation settings: epochs >= 1, lr > 0, 0 < lr_decay <= 1, batch >= 1; got {self}")


def _without_epochs(config: dict[str, Any]) -> dict[str, Any]:
    """A recipe without its length: a run may be extended (the learning rate decays per epoch, not to a horizon).
    Checkpoints from before ``share_twins`` (``separate_depths``) existed trained every twin on its own (shared
    prefixes across depths)."""
    older = {"share_twins": False, "separate_depths": False, "method": "dna"}
    return older | {k: v for k, v in config.items() if k != "epochs"}


def checkpoint_path(run: RunDir, block: int) -> Path:
    """Where block ``block``'s supernet checkpoint lives."""
    return run.supernet_checkpoint(block)




def build_supernet(run: RunDir, teacher: BlockTeacher, block: int, share_twins: bool = True,
                   separate_depths: bool = False) -> BlockSupernet:
    """Block ``block``'s supernet, shaped by the teacher's boundaries at the space's resolution."""
    shapes = check_teacher(teacher, run.space)
    return BlockSupernet(run.space, block, shapes[block], shapes[block + 1], share_twins, separate_depths)


def shares_twins(saved_config: dict[str, Any]) -> bool:
    """Whether a checkpoint's recipe trained twins as one module (absent in checkpoints older than the option)."""
    return bool(saved_config.get("share_twins", False))


def separates_depths(saved_config: dict[str, Any]) -> bool:
    """Whether a checkpoint's recipe trained each depth as its own cell (absent in checkpoints older than the
    option: depths shared their prefixes)."""
    return bool(saved_config.get("separate_depths", False))


def distill_block(
    run: RunDir, block: int, teacher: BlockTeacher, features: TeacherFeatures, config: DistillConfig,
    show_progress: bool = True, device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Train (or resume) one block's supernet on ``device``; returns its loss history and the time per epoch.

    Long because the epoch loop keeps the data-parallel split, the path sampling every rank agrees on, and the
    per-epoch checkpoint a resume starts from in one place, where their order is visible."""
    rank, world = rank_world()
    device = resolve_device(device)
    torch.manual_seed(config.seed + block)
    supernet = build_supernet(run, teacher, block, config.share_twins, config.separate_depths).train().to(device)
    optimizer = torch.optim.Adam(supernet.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.lr_decay)
    path = checkpoint_path(run, block)
    state: dict[str, Any] = {"epoch": 0, "history": []}
    teacher_weights = features.teacher_digest
    if path.exists():
        saved = load_checkpoint(path)
        check_method_of(saved, "dna", path, run)
        check_same_teacher(saved, teacher_weights, path, run)
        if _without_epochs(saved["config"]) != _without_epochs(asdict(config)):
            raise ValueError(f"{path} was trained with other settings ({_without_epochs(saved['config'])}); use the "
                             "same settings to resume (only --epochs may change; --no-share-twins for a supernet "
                             "trained before twins shared a module; --separate-depths for one trained with it), or "
                             "delete it to start over")
        supernet.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = {"epoch": saved["epoch"], "history": saved["history"]}
    model = supernet
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            supernet, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
    total = features.size("train")
    with fast_small_depthwise(supernet):  # the same function, computed faster on small CPU maps
        for epoch in range(state["epoch"], config.epochs):
            order = torch.randperm(total, generator=torch.Generator().manual_seed(config.seed * 1000 + epoch))
            mine = order[rank::world]
            steps = range(0, len(mine), config.batch_size)
            bar = progress(steps, desc=f"block {block} epoch {epoch + 1}/{config.epochs}", leave=False,
                           disable=not show_progress or rank != 0, summary=False)
            losses, started = [], time.perf_counter()
            for step, start in enumerate(bar):
                inputs, targets = features.pair("train", block, mine[start:start + config.batch_size])
                inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
                # the same path on every rank: the generator depends only on (seed, block, epoch, step)
                state_choice, candidate = supernet.sample_path(random.Random(f"{config.seed}/{block}/{epoch}/{step}"))
                loss = F.mse_loss(model(inputs, state_choice, candidate), targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
            scheduler.step()
            seconds = time.perf_counter() - started
            state["history"].append({"epoch": epoch + 1, "loss": sum(losses) / max(len(losses), 1), "seconds": seconds})
            state["epoch"] = epoch + 1
            if rank == 0:
                atomic_torch_save({"config": asdict(config), "model": supernet.state_dict(),
                                   "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                   "teacher": teacher_weights, **state}, path)
                if show_progress:
                    log.info("block %d epoch %d/%d: mse %.5f (%.1f s)", block, epoch + 1, config.epochs,
                             state["history"][-1]["loss"], seconds)
            if world > 1:
                dist.barrier()
    return {"block": block, "history": state["history"]}


def load_supernet(run: RunDir, teacher: BlockTeacher, block: int,
                  teacher_weights: str | None = None) -> tuple[BlockSupernet, dict[str, Any]]:
    """A trained block supernet and its checkpoint record; FileNotFoundError says how to make it. ``teacher_weights``
    is the teacher's digest when the caller has it (``TeacherFeatures.teacher_digest``), else it is computed."""
    path = checkpoint_path(run, block)
    if not path.exists():
        raise FileNotFoundError(f"block {block} has no supernet checkpoint ({path}); run 'hwnas distill --run "
                                f"{run.path} --block {block}' first")
    saved = load_checkpoint(path)
    check_method_of(saved, "dna", path, run)
    check_same_teacher(saved, teacher_weights or teacher.digest(), path, run)
    supernet = build_supernet(run, teacher, block, shares_twins(saved["config"]), separates_depths(saved["config"]))
    supernet.load_state_dict(saved["model"])
    return supernet.eval(), {"epochs": saved["epoch"], "config": saved["config"], "sha256": file_digest(path),
                             "teacher": saved.get("teacher")}


def check_same_teacher(saved: dict[str, Any], teacher_weights: str, path: Path, run: RunDir) -> None:
    """ValueError when a supernet checkpoint was distilled from other teacher weights than the run's teacher now
    (trained again or replaced since): its candidates mimic features the teacher no longer computes. Checkpoints
    written before the digest was recorded are taken as they are."""
    recorded = saved.get("teacher")
    if recorded is not None and recorded != teacher_weights:
        raise ValueError(f"{path} was distilled from other teacher weights ({recorded}) than the run's teacher now "
                         f"({teacher_weights}): the teacher was trained again or replaced since. Distill the "
                         f"supernets from the new teacher: move or delete {path.parent} (ratings follow with "
                         f"'hwnas rate'), or put the old teacher.pt back in {run.path}")


def teacher_features(run: RunDir, teacher: BlockTeacher, cache: bool, show_progress: bool,
              device: torch.device) -> TeacherFeatures:
    bundle = load_data(run.config.data, run.space.resolution)
    return TeacherFeatures(teacher, bundle, source_run(run).cache_folder if cache else None, show_progress=show_progress,
                           device=device)


def block_indices(run: RunDir, block: int | None) -> list[int]:
    count = run.space.num_blocks
    if block is None:
        return list(range(count))
    if not 0 <= block < count:
        raise ValueError(f"--block must be in 0..{count - 1} for {run.space.name}, got {block}")
    return [block]


def block_done(run: RunDir, block: int, config: DistillConfig) -> bool:
    """Whether the block's supernet has its ``config.epochs`` epochs (a checkpoint that cannot be read is not)."""
    path = checkpoint_path(run, block)
    if not path.exists():
        return False
    try:
        return int(load_checkpoint(path).get("epoch", 0)) >= config.epochs
    except ValueError:
        return False


def distill(run: RunDir, block: int | None = None, config: DistillConfig | None = None, cache: bool = True,
            show_progress: bool = True, device: str = "cpu", seeds: int = 1, take_any: bool = False,
            ) -> list[dict[str, Any]]:
    """Train every block's supernet (or one) on ``device``, resuming from checkpoints; returns each trained block's
    history with its seed. ``seeds`` > 1 trains seeds ``config.seed + 1`` ... beside it (``hwnas.supernet.seeds``:
    ``RUN/seeds/seedK``, same teacher and cache). Each block is trained under its claim (``hwnas.supernet.claims``):
    a worker given a block another worker is training waits for it; with ``take_any`` (``--block any``) it trains
    whichever unfinished block of any seed no other worker holds, until all are trained."""
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1 (distillation seeds of the block supernets), got {seeds}")
    rank, world = rank_world()
    if take_any and (block is not None or world > 1):
        raise ValueError("--block any lets separate workers share the blocks; give it without a block number and "
                         "outside torchrun (under torchrun, give --block i: every rank trains that block)")
    blocks, torch_device = block_indices(run, block), resolve_device(device)
    config = config or DistillConfig()
    check_one_method(run, config.method)
    train_job = _teacher_free_job(run, show_progress, torch_device) if config.method in SELF_SUPERVISED else \
        _teacher_job(run, cache, show_progress, torch_device)
    run.update(distill=dict(vars(config)) | {"cache": cache})
    jobs = [(run, config, b) for b in blocks]
    for k in range(1, seeds):
        seed_run, seed_config = open_seed_run(run, k), replace(config, seed=config.seed + k)
        check_one_method(seed_run, config.method)
        seed_run.update(distill=dict(vars(seed_config)) | {"cache": cache})
        jobs += [(seed_run, seed_config, b) for b in blocks]

    def train(index: int) -> dict[str, Any]:
        job_run, job_config, b = jobs[index]
        if show_progress and job_run is not run:
            log.info("distillation seed %d (%s), block %d", job_config.seed, job_run.path, b)
        return train_job(job_run, b, job_config) | {"seed": job_config.seed}

    claimed = [claims.Job(f"block {b} of seed {c.seed}", checkpoint_path(r, b).with_suffix(".lock"),
                          partial(block_done, r, b, c), _ready(r, b, c)) for r, c, b in jobs]
    if take_any:
        return claims.take_any(claimed, train)
    results = []
    for index, job in enumerate(claimed):
        if rank != 0:  # under torchrun every rank trains the same block: rank 0 holds its claim for them
            results.append(train(index))
            continue
        with claims.claim(job.lock, wait=True, what=job.name):
            results.append(train(index))
    return results


def _teacher_job(run: RunDir, cache: bool, show_progress: bool,
                 device: torch.device) -> Callable[[RunDir, int, DistillConfig], dict[str, Any]]:
    """DNA's job: distill a block from the run's teacher (its features computed once, shared by every job)."""
    teacher = open_teacher(run)
    features = teacher_features(run, teacher, cache, show_progress, device)
    return lambda job_run, b, job_config: distill_block(job_run, b, teacher, features, job_config, show_progress,
                                                        device)


def _teacher_free_job(run: RunDir, show_progress: bool,
                      device: torch.device) -> Callable[[RunDir, int, DistillConfig], dict[str, Any]]:
    """A self-supervised method's job (``hwnas.supernet.selfsup_train``): no teacher, the data loaded once."""
    from hwnas.supernet.selfsup import SelfSupSettings
    from hwnas.supernet.selfsup_train import train_block

    bundle = load_data(run.config.data, run.space.resolution)
    return lambda job_run, b, job_config: train_block(job_run, b, job_config, SelfSupSettings(), bundle,
                                                      show_progress, device)


def _ready(run: RunDir, block: int, config: DistillConfig) -> Callable[[], bool]:
    """When a block's job can start: DNA's blocks at once; a teacher-free block once the blocks before it are done."""
    if config.method not in SELF_SUPERVISED:
        return lambda: True
    from hwnas.supernet.selfsup_train import block_ready

    return partial(block_ready, run, block, config.epochs)


def recorded_method(run: RunDir) -> str:
    """The method the run's supernets were distilled with (``dna`` for runs from before methods were recorded)."""
    return (run.config.distill or {}).get("method", "dna")


def check_one_method(run: RunDir, method: str) -> None:
    """ValueError when the run already holds supernets of another method: a run never mixes methods."""
    found = recorded_method(run)
    folder = run.supernet_checkpoint(0).parent
    if found != method and run.config.distill is not None and folder.is_dir() and any(folder.glob("*.pt")):
        raise ValueError(f"run {run.path} holds supernets distilled with --method {found}; distilling with --method "
                         f"{method} would mix the two. Start a new run for {method} (hwnas distill --run NEW --method "
                         f"{method} --space {run.space.name} --data {run.config.data}), or give --method {found}")
