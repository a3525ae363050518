"""The SPOS baseline the ranking benchmark compares against: one supernet over the whole network, trained end to end
on labels with uniformly sampled paths, architectures rated by accuracy after BatchNorm re-estimation.

Its layers are the same timm modules as the children and as hwnas's block supernets (keyed by latency unit), so
the comparison isolates the method: one big weight-sharing supernet vs DNA's block-wise distillation."""

from __future__ import annotations

import random
import sys
from collections.abc import Hashable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from hwnas.data import DataBundle, augment_batch
from hwnas.supernet import layer_key
from profilers._files import atomic_torch_save
from search_spaces import SearchSpace


class SPOSSupernet(nn.Module):
    """Every layer of every path of ``space``; ``forward(x, arch)`` runs one path."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.space = space
        self.stem = space.build_unit(space.stem_units()[0])
        self.layers = nn.ModuleDict()
        heads: dict[str, nn.Module] = {}
        for block in range(space.num_blocks):
            for state in space.block_input_states(block):
                for candidate in space.block_candidates(block):
                    for position, unit in enumerate(space.block_units(block, candidate, state)):
                        key = f"b{block}_{layer_key(position, unit)}"
                        if key not in self.layers:
                            self.layers[key] = space.build_unit(unit)
                    out = space.block_output_state(block, candidate)
                    if block == space.num_blocks - 1 and f"s{out}" not in heads:
                        heads[f"s{out}"] = space.build_unit(space.head_units(out)[0])
        self.heads = nn.ModuleDict(heads)

    def path(self, arch: Hashable) -> list[nn.Module]:
        """The modules of one architecture, in order."""
        space, modules, state = self.space, [self.stem], self.space.initial_state()
        for block, candidate in enumerate(space.blocks_of(arch)):
            for position, unit in enumerate(space.block_units(block, candidate, state)):
                modules.append(self.layers[f"b{block}_{layer_key(position, unit)}"])
            state = space.block_output_state(block, candidate)
        return [*modules, self.heads[f"s{state}"]]

    def forward(self, x: torch.Tensor, arch: Hashable) -> torch.Tensor:
        for module in self.path(arch):
            x = module(x)
        return x


@dataclass(frozen=True)
class SPOSConfig:
    """The SPOS recipe: uniform paths, and the optimizer of the stand-alone recipe (AdamW, cosine schedule, label
    smoothing, gradient norm clipped at ``grad_clip``, optional on-the-fly augmentation), so the baseline and the
    children it rates are trained alike.
    (SGD with Nesterov momentum at the SPOS paper's lr scaled to batch 64, 0.05, left the tiny space's supernet at
    17% sampled-path train accuracy after 30 epochs.)"""

    epochs: int = 40
    lr: float = 3e-3
    weight_decay: float = 0.05
    batch_size: int = 64
    label_smoothing: float = 0.1
    seed: int = 0
    augment: bool = False
    grad_clip: float | None = 1.0

    def __post_init__(self) -> None:
        if (self.epochs < 1 or self.lr <= 0 or self.batch_size < 1 or self.weight_decay < 0
                or (self.grad_clip is not None and self.grad_clip <= 0)):
            raise ValueError("bad SPOS settings: epochs >= 1, lr > 0, batch >= 1, weight decay >= 0, grad_clip > 0 "
                             f"or None; got {self}")


# settings added after checkpoints were first written: a checkpoint without one was trained with this value
_LATER_SETTINGS = {"grad_clip": None}


def train_spos(supernet: SPOSSupernet, bundle: DataBundle, config: SPOSConfig, checkpoint: Path | None = None,
               show_progress: bool = True) -> list[dict[str, float]]:
    """Uniform single-path training on labels, a checkpoint per epoch (resumed from ``checkpoint``); returns the
    per-epoch history (mean loss, and train accuracy of the sampled paths)."""
    torch.manual_seed(config.seed)
    optimizer = torch.optim.AdamW(supernet.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    history: list[dict[str, float]] = []
    if checkpoint is not None and Path(checkpoint).exists():
        saved = torch.load(checkpoint, weights_only=False)
        if {**_LATER_SETTINGS, **saved["config"]} != asdict(config):
            raise ValueError(f"{checkpoint} was trained with other settings ({saved['config']}); delete it or use "
                             "the same settings")
        supernet.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        history = saved["history"]
    for epoch in range(len(history), config.epochs):
        rng = random.Random(f"{config.seed}/{epoch}")
        supernet.train()
        total = correct = seen = steps = 0.0
        bar = tqdm(bundle.loader("train", config.batch_size, shuffle=True, seed=config.seed + epoch),
                   desc=f"SPOS epoch {epoch + 1}/{config.epochs}", leave=False, disable=not show_progress,
                   file=sys.stderr)
        augmenter = torch.Generator().manual_seed(1_000_003 * config.seed + epoch)
        for images, labels in bar:
            if config.augment:
                images = augment_batch(images, augmenter)
            logits = supernet(images, supernet.space.sample(rng))
            loss = F.cross_entropy(logits, labels, label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                nn.utils.clip_grad_norm_(supernet.parameters(), config.grad_clip)
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
            correct, seen = correct + int((logits.argmax(1) == labels).sum()), seen + len(labels)
        scheduler.step()
        history.append({"epoch": epoch + 1, "loss": total / steps, "train_accuracy": correct / seen})
        if checkpoint is not None:
            atomic_torch_save({"config": asdict(config), "model": supernet.state_dict(),
                               "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                               "history": history}, Path(checkpoint))
        if show_progress:
            print(f"SPOS epoch {epoch + 1}/{config.epochs}: loss {history[-1]['loss']:.4f}, sampled-path train "
                  f"accuracy {history[-1]['train_accuracy']:.4f}", file=sys.stderr)
    return history


@torch.no_grad()
def spos_accuracy(supernet: SPOSSupernet, arch: Hashable, bundle: DataBundle, calibration_batches: int = 4) -> float:
    """Validation accuracy of one path after re-estimating its BatchNorm statistics on training batches."""
    modules = supernet.path(arch)
    norms = [m for module in modules for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    supernet.train()
    for index, (images, _) in enumerate(bundle.loader("train", 64, shuffle=True, seed=1)):
        if index >= calibration_batches:
            break
        supernet(images, arch)
    supernet.eval()
    correct = total = 0
    for images, labels in bundle.loader("val", 256):
        correct += int((supernet(images, arch).argmax(1) == labels).sum())
        total += len(labels)
    for norm in norms:
        norm.momentum = 0.1
    return correct / total
