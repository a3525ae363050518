"""The SPOS baseline the ranking benchmark compares against: one supernet over the whole network, trained end to end
on labels with uniformly sampled paths, architectures rated by accuracy after BatchNorm re-estimation.

Its layers are the same timm modules as the children and as hwnas's block supernets (keyed by latency unit), so
the comparison isolates the method: one big weight-sharing supernet vs DNA's block-wise distillation."""

from __future__ import annotations

import random
import sys
from collections.abc import Hashable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from hwnas.data import DataBundle
from hwnas.supernet import layer_key
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
                    if block == space.num_blocks - 1:
                        out = space.block_output_state(block, candidate)
                        heads.setdefault(f"s{out}", space.build_unit(space.head_units(out)[0]))
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


def train_spos(supernet: SPOSSupernet, bundle: DataBundle, epochs: int, lr: float = 3e-3, seed: int = 0,
               show_progress: bool = True) -> list[float]:
    """Uniform single-path training on labels; returns the mean loss per epoch."""
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(supernet.parameters(), lr=lr, weight_decay=0.05)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    losses = []
    for epoch in range(epochs):
        supernet.train()
        total, steps = 0.0, 0
        bar = tqdm(bundle.loader("train", 64, shuffle=True, seed=seed + epoch), desc=f"SPOS epoch {epoch + 1}",
                   leave=False, disable=not show_progress, file=sys.stderr)
        for images, labels in bar:
            loss = F.cross_entropy(supernet(images, supernet.space.sample(rng)), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
        scheduler.step()
        losses.append(total / steps)
    return losses


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
