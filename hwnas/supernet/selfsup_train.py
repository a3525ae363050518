"""Training and rating the teacher-free block supernets (``--method dnapp|pinas``; the method: ``selfsup``).

Each block is a job of its own with DNA's run layout: ``supernet/block_i.pt`` holds the online network, its
momentum copy, the optimizer and (Pi-NAS) the queue, written atomically after every epoch; a killed run resumes
from the last one. Block ``i`` learns on the frozen prefix of blocks ``0..i-1`` (``build_prefix``) and records the
prefix's digest: when an earlier block is trained again, a later block refuses to resume or be rated and says what
to do. Under ``torchrun`` every rank takes the same paths and its share of each batch; gradients are averaged
across ranks before each step (and Pi-NAS's keys gathered), so the momentum copies stay equal.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from hwnas.data import DataBundle, augment_batch, load_data
from hwnas.devices import load_checkpoint, rank_world
from hwnas.run import RunDir
from hwnas.supernet.blocks import BlockSupernet
from hwnas.supernet.rating import recalibrate_and_run
from hwnas.supernet.selfsup import (
    RATING_PATHS,
    EmbeddingSupernet,
    SelfSupBlock,
    SelfSupSettings,
    byol_loss,
    ensemble_target,
    info_nce,
    make_target,
    momentum_update,
    momentum_update_paths,
    other_path,
    path_network,
    prefix_digest,
    reference_path,
    reference_shapes,
    variance_floor,
)
from profilers.files import atomic_torch_save, file_digest
from profilers.progress import progress

log = logging.getLogger(__name__)

PREFIX_CALIBRATION = 512  # training images whose statistics the frozen prefix's BatchNorms take


def build_block(run: RunDir, block: int, method: str, settings: SelfSupSettings, share_twins: bool,
                separate_depths: bool, supernet_class: type[BlockSupernet] = BlockSupernet) -> SelfSupBlock:
    """Block ``block``'s online network (fresh weights; block 0 with the space's stem)."""
    shapes, stem = reference_shapes(run.space)
    supernet = supernet_class(run.space, block, shapes[block], shapes[block + 1], share_twins, separate_depths)
    return SelfSupBlock(supernet, stem if block == 0 else None, settings, predictor=method == "dnapp")


def _saved_block(run: RunDir, block: int, method: str, key: str = "ema",
                 supernet_class: type[BlockSupernet] = BlockSupernet) -> tuple[SelfSupBlock, dict[str, Any]]:
    """A trained block's ``key`` network (``ema`` or ``model``) and its checkpoint; FileNotFoundError says how to
    make it, ValueError when it was trained by another method."""
    saved = _block_checkpoint(run, block, method)
    return _network_of(run, block, method, saved, key, supernet_class), saved


def _block_checkpoint(run: RunDir, block: int, method: str) -> dict[str, Any]:
    """Block ``block``'s checkpoint, read once; FileNotFoundError says how to make it, ValueError when another
    method trained it."""
    path = run.supernet_checkpoint(block)
    if not path.exists():
        raise FileNotFoundError(f"block {block} has no supernet checkpoint ({path}); run 'hwnas distill --run "
                                f"{run.path} --method {method} --block {block}' first")
    saved = load_checkpoint(path)
    check_method_of(saved, method, path, run)
    return saved


def _network_of(run: RunDir, block: int, method: str, saved: dict[str, Any], key: str,
                supernet_class: type[BlockSupernet] = BlockSupernet) -> SelfSupBlock:
    """The ``key`` network (``ema`` or ``model``) of a loaded block checkpoint, in eval mode."""
    config = saved["config"]
    network = build_block(run, block, method, SelfSupSettings(**saved["selfsup"]), config["share_twins"],
                          config["separate_depths"], supernet_class)
    network.load_state_dict(saved[key])
    return network.eval()


def check_method_of(saved: dict[str, Any], method: str, path: Path, run: RunDir) -> None:
    """ValueError when a checkpoint was trained by another method than ``method``."""
    found = saved.get("config", {}).get("method", "dna")
    if found != method:
        raise ValueError(f"{path} was distilled with --method {found}, not {method}; a run never mixes methods: give "
                         f"--method {found}, or start a new run for {method} (hwnas distill --run NEW --method "
                         f"{method} --space {run.space.name} --data {run.config.data})")


def build_prefix(run: RunDir, block: int, method: str, bundle: DataBundle,
                 device: torch.device) -> nn.Module | None:
    """The frozen network whose output is block ``block``'s input (None for block 0, which takes images): the
    stem and the momentum copies of blocks ``0..block-1`` along their reference paths, BatchNorm re-estimated on
    ``PREFIX_CALIBRATION`` training images."""
    if block == 0:
        return None
    parts: list[nn.Module] = []
    for earlier in range(block):
        network, saved = _saved_block(run, earlier, method)
        if saved.get("epoch", 0) < saved["config"]["epochs"]:
            raise ValueError(f"block {earlier} is not fully distilled yet ({saved.get('epoch', 0)}/"
                             f"{saved['config']['epochs']} epochs) and block {block} learns on its output: finish it "
                             f"first (hwnas distill --run {run.path} --method {method} --block {earlier})")
        state, candidate = reference_path(run.space, earlier)
        supernet = network.supernet
        if network.stem is not None:
            parts.append(network.stem)
        parts += [supernet.adapters_in[supernet._state_key(state)], *supernet.candidate_layers(candidate, state),
                  supernet.output_adapter(candidate)]
    prefix = nn.Sequential(*parts).to(device)
    dataset = bundle.datasets["train"]
    images = torch.stack([dataset[i][0] for i in range(min(PREFIX_CALIBRATION, len(dataset)))]).to(device)
    recalibrate_and_run(prefix, images, images[:1])
    for parameter in prefix.parameters():
        parameter.requires_grad_(False)
    return prefix.eval()


def _images(bundle: DataBundle, split: str, indices: torch.Tensor) -> torch.Tensor:
    dataset = bundle.datasets[split]
    return torch.stack([dataset[int(i)][0] for i in indices])


class _Trainer:
    """One block's online network, momentum copy, optimizer, queue and the step of its method."""

    def __init__(self, network: SelfSupBlock, method: str, settings: SelfSupSettings, config: Any,
                 device: torch.device) -> None:
        self.network, self.method, self.settings = network.to(device).train(), method, settings
        self.target = make_target(self.network).train()
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=config.lr)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma=config.lr_decay)
        self.queue = F.normalize(torch.randn(settings.queue, settings.dim, generator=torch.Generator().manual_seed(
            config.seed)), dim=1).to(device)
        self.queue_at = 0

    def state(self) -> dict[str, Any]:
        return {"model": self.network.state_dict(), "ema": self.target.state_dict(), "queue": self.queue.cpu(),
                "queue_at": self.queue_at, "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict()}

    def load(self, saved: dict[str, Any]) -> None:
        self.network.load_state_dict(saved["model"])
        self.target.load_state_dict(saved["ema"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.queue = saved["queue"].to(self.queue.device)
        self.queue_at = int(saved["queue_at"])

    def step(self, view1: torch.Tensor, view2: torch.Tensor, rng: random.Random) -> float:
        """One optimisation step on a batch's two views; returns the loss."""
        supernet = self.network.supernet
        first = supernet.sample_path(rng)
        if self.method == "dnapp":
            paths = [first]
            ensemble = [supernet.sample_path(rng) for _ in range(self.settings.ensemble)]
            z1, q1 = self.network(view1, *first)
            z2, q2 = self.network(view2, *first)
            loss = (byol_loss(q1, ensemble_target(self.target, view2, ensemble))
                    + byol_loss(q2, ensemble_target(self.target, view1, ensemble))
                    + self.settings.variance_weight * (variance_floor(z1) + variance_floor(z2)))
        else:
            second = other_path(supernet, first, rng)
            paths = [first, second]
            query_a = F.normalize(self.network(view1, *first)[0], dim=1)
            query_b = F.normalize(self.network(view2, *second)[0], dim=1)
            with torch.no_grad():
                key_b = F.normalize(self.target.embed(view2, *second), dim=1)
                key_a = F.normalize(self.target.embed(view1, *first), dim=1)
            loss = (info_nce(query_a, key_b, self.queue, self.settings.temperature)
                    + info_nce(query_b, key_a, self.queue, self.settings.temperature))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        _average_gradients(self.network)
        self.optimizer.step()
        if self.method == "dnapp":
            momentum_update(self.network, self.target, self.settings.momentum)
        else:
            self._enqueue(torch.cat([key_a, key_b]))  # after the backward pass, which reads the queue
            momentum_update_paths(self.network, self.target, paths, self.settings.momentum)
        return float(loss.item())

    def _enqueue(self, keys: torch.Tensor) -> None:
        keys = _gather(keys)
        size = len(self.queue)
        keys = keys[-size:]
        at = (self.queue_at + torch.arange(len(keys), device=keys.device)) % size
        self.queue[at] = keys
        self.queue_at = int((self.queue_at + len(keys)) % size)


def _average_gradients(network: nn.Module) -> None:
    """Data parallelism without DDP's single-forward rule: each rank's gradients summed and divided by the ranks
    (every rank runs the same paths, so the same parameters have gradients)."""
    _, world = rank_world()
    if world == 1:
        return
    for parameter in network.parameters():
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad)
            parameter.grad /= world


def _gather(keys: torch.Tensor) -> torch.Tensor:
    _, world = rank_world()
    if world == 1:
        return keys
    gathered = [torch.empty_like(keys) for _ in range(world)]
    dist.all_gather(gathered, keys.contiguous())
    return torch.cat(gathered)


def train_block(run: RunDir, block: int, config: Any, settings: SelfSupSettings, bundle: DataBundle,
                show_progress: bool = True, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Train (or resume) one block's online network and momentum copy; returns its loss history.

    Long because the epoch loop keeps the rank split, the views' augmentation, the path sampling every rank agrees
    on and the per-epoch checkpoint in one place, where their order is visible."""
    rank, world = rank_world()
    method, path, device = config.method, run.supernet_checkpoint(block), torch.device(device)
    prefix = build_prefix(run, block, method, bundle, device)
    inputs = prefix_digest(prefix)
    torch.manual_seed(config.seed + block)
    trainer = _Trainer(build_block(run, block, method, settings, config.share_twins, config.separate_depths),
                       method, settings, config, device)
    state: dict[str, Any] = {"epoch": 0, "history": []}
    if path.exists():
        saved = load_checkpoint(path)
        check_resumable(saved, config, settings, inputs, path, run)
        trainer.load(saved)
        state = {"epoch": saved["epoch"], "history": saved["history"]}
    total = len(bundle.datasets["train"])
    for epoch in range(state["epoch"], config.epochs):
        order = torch.randperm(total, generator=torch.Generator().manual_seed(config.seed * 1000 + epoch))
        mine = order[rank::world]
        views = torch.Generator().manual_seed(1_000_003 * (config.seed + 1) + 7919 * block + epoch + 1000 * rank)
        steps = [s for s in range(0, len(mine), config.batch_size) if len(mine[s:s + config.batch_size]) > 1]
        bar = progress(steps, desc=f"block {block} epoch {epoch + 1}/{config.epochs} ({method})", leave=False,
                       disable=not show_progress or rank != 0, summary=False)
        losses, started = [], time.perf_counter()
        for step, start in enumerate(bar):
            images = _images(bundle, "train", mine[start:start + config.batch_size])
            with torch.no_grad():
                view1, view2 = (augment_batch(images, views, strength=settings.augment_strength).to(device)
                                for _ in range(2))
                if prefix is not None:
                    view1, view2 = prefix(view1), prefix(view2)
            losses.append(trainer.step(view1, view2, random.Random(f"{config.seed}/{block}/{epoch}/{step}")))
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        trainer.scheduler.step()
        seconds = time.perf_counter() - started
        state["history"].append({"epoch": epoch + 1, "loss": sum(losses) / max(len(losses), 1), "seconds": seconds})
        state["epoch"] = epoch + 1
        if rank == 0:
            atomic_torch_save({"config": dict(vars(config)), "selfsup": settings.record(), "inputs": inputs,
                               **trainer.state(), **state}, path)
            if show_progress:
                log.info("block %d epoch %d/%d (%s): loss %.4f (%.1f s)", block, epoch + 1, config.epochs, method,
                         state["history"][-1]["loss"], seconds)
        if world > 1:
            dist.barrier()
    return {"block": block, "history": state["history"]}


def check_resumable(saved: dict[str, Any], config: Any, settings: SelfSupSettings, inputs: str, path: Path,
                    run: RunDir) -> None:
    """ValueError when a checkpoint cannot be resumed with these settings, or learned on another prefix."""
    check_method_of(saved, config.method, path, run)
    theirs = {k: v for k, v in saved["config"].items() if k != "epochs"}
    mine = {k: v for k, v in vars(config).items() if k != "epochs"}
    if theirs != mine or saved.get("selfsup") != settings.record():
        raise ValueError(f"{path} was trained with other settings ({theirs}, {saved.get('selfsup')}); use the same "
                         "settings to resume (only --epochs may change), or delete it to start over")
    check_same_inputs(saved, inputs, path, run)


def check_same_inputs(saved: dict[str, Any], inputs: str, path: Path, run: RunDir) -> None:
    """ValueError when a block learned on another prefix than the earlier blocks compute now."""
    if saved.get("inputs") != inputs:
        raise ValueError(f"{path} learned on other inputs than blocks before it compute now (they were trained "
                         f"again since): distill it again (move or delete {path}, then 'hwnas distill --run "
                         f"{run.path} --method {saved['config'].get('method')} --block {path.stem.split('_')[-1]}')")


def block_ready(run: RunDir, block: int, epochs: int) -> bool:
    """Whether every block before ``block`` has its ``epochs`` epochs (block ``block`` learns on their output)."""
    for earlier in range(block):
        path = run.supernet_checkpoint(earlier)
        try:
            if not path.exists() or int(load_checkpoint(path).get("epoch", 0)) < epochs:
                return False
        except ValueError:
            return False
    return True


@torch.no_grad()
def rating_inputs(run: RunDir, block: int, method: str, calibration: torch.Tensor, held_out: torch.Tensor,
                  device: torch.device) -> tuple[EmbeddingSupernet, dict[str, Any], list[torch.Tensor]]:
    """What ``rate_block`` needs for a teacher-free block: the online supernet rated in its embedding space, its
    checkpoint record, and (calibration inputs, held-out inputs, held-out targets). The target is the mean
    normalized momentum embedding over ``RATING_PATHS`` fixed paths, each path's BatchNorm statistics re-estimated
    on the calibration images first (as every rated candidate's are)."""
    bundle = load_data(run.config.data, run.space.resolution)
    prefix = build_prefix(run, block, method, bundle, device)
    saved = _block_checkpoint(run, block, method)
    check_same_inputs(saved, prefix_digest(prefix), run.supernet_checkpoint(block), run)
    online = _network_of(run, block, method, saved, "model", EmbeddingSupernet)
    target = _network_of(run, block, method, saved, "ema")
    online, target = online.to(device), target.to(device)
    inputs = []
    for split, indices in (("train", calibration), ("val", held_out)):
        images = _images(bundle, split, indices).to(device)
        inputs.append(prefix(images) if prefix is not None else images)
    rng = random.Random(f"rate/{block}")
    total = 0
    for _ in range(RATING_PATHS):
        embedded = recalibrate_and_run(path_network(target, *target.supernet.sample_path(rng)), *inputs)[1]
        total = total + F.normalize(embedded, dim=1)
    targets = F.normalize(total / RATING_PATHS, dim=1)
    supernet = online.supernet
    assert isinstance(supernet, EmbeddingSupernet)
    supernet.head = online.rating_head()
    record = {"epochs": saved["epoch"], "config": saved["config"], "sha256": file_digest(run.supernet_checkpoint(block)),
              "inputs": saved.get("inputs"), "method": method}
    return supernet.eval(), record, [online.block_input(inputs[0]), online.block_input(inputs[1]), targets]
