"""The SPOS baseline the ranking benchmark compares against: one supernet over the whole network, trained end to end
on labels with uniformly sampled paths, architectures rated by accuracy after BatchNorm re-estimation.

Its layers are the same timm modules as the children and as hwnas's block supernets, so the comparison isolates the
method: one big weight-sharing supernet vs DNA's block-wise distillation. Two ways to share weights:

- ``"separate"``: the SPOS paper's choice blocks: every op of every layer (keyed by latency unit) has its own weights.
  On the tiny MBConv space that left the supernet at 21% sampled-path train accuracy after 40 epochs of
  digits-distorted-4: with six unrelated ops in each of up to 11 layers, the shared layers downstream never see the
  same features twice, and ~3,000 steps are far too few for the ops to co-adapt (on plain digits one fixed path
  reaches 87% train accuracy in 3 epochs; random ops in just one block cut that to 42-70%, in every block to chance).
- ``"entangled"`` (default): one weight tensor per layer position at the largest choice, and every choice a slice of
  it (a narrower width or expansion takes the leading channels, a smaller kernel the centre of the 7x7), as
  Once-for-All and AutoFormer share weights. From a random start that alone did not help (17% after 6 epochs of
  digits); after ``SPOSConfig.warmup_epochs`` on the largest path every slice starts from trained features, and the
  supernet reaches 98.8% sampled-path train accuracy on digits-distorted-4 in 40 epochs (separate ops with the same
  warm-up: back to chance once uniform sampling starts).
"""

from __future__ import annotations

import copy
import random
import sys
from collections.abc import Hashable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from tqdm import tqdm

from hwnas.data import DataBundle, augment_batch
from hwnas.devices import load_checkpoint, resolve_device
from hwnas.supernet.blocks import layer_key
from profilers.files import atomic_torch_save
from search_spaces import LatencyUnit, SearchSpace

SHARINGS = ("entangled", "separate")


def _slice_index(big: torch.Size, small: torch.Size) -> tuple[slice, ...]:
    """Index of the ``small``-shaped slice of a ``big`` tensor: leading channels; the centre of a conv kernel."""
    if len(big) != len(small) or any(s > b for b, s in zip(big, small)):
        raise ValueError(f"a {tuple(small)} weight is not a slice of the shared {tuple(big)} one")
    index = []
    for dim, (b, s) in enumerate(zip(big, small)):
        start = (b - s) // 2 if len(big) == 4 and dim >= 2 else 0
        index.append(slice(start, start + s))
    return tuple(index)


class SPOSSupernet(nn.Module):
    """Every layer of every path of ``space``; ``forward(x, arch)`` runs one path.

    ``sharing`` says how the choices of one layer share weights (see the module docstring)."""

    def __init__(self, space: SearchSpace, sharing: str = "entangled") -> None:
        super().__init__()
        if sharing not in SHARINGS:
            raise ValueError(f"unknown SPOS weight sharing {sharing!r}: use one of {', '.join(SHARINGS)}")
        self.space, self.sharing = space, sharing
        stem = space.stem_units()[0]
        slots: dict[str, dict[str, LatencyUnit]] = {"stem": {stem.key: stem}, "head": {}}
        names = {stem.key: "stem"}  # unit -> module name under "separate" (as checkpoints have always named them)
        for block in range(space.num_blocks):
            for state in space.block_input_states(block):
                for candidate in space.block_candidates(block):
                    for position, unit in enumerate(space.block_units(block, candidate, state)):
                        slots.setdefault(f"b{block}_l{position}", {})[unit.key] = unit
                        names[unit.key] = f"layers.b{block}_{layer_key(position, unit)}"
                    if block == space.num_blocks - 1:
                        out = space.block_output_state(block, candidate)
                        head = space.head_units(out)[0]
                        slots["head"][head.key] = head
                        names[head.key] = f"heads.s{out}"
        self._units: dict[str, nn.Module] = {}  # entangled: each choice's own module on the meta device (structure)
        self._slices: dict[str, list[tuple[str, tuple[slice, ...]]]] = {}
        self._names = names
        if sharing == "separate":
            self.stem = space.build_unit(stem)
            self.layers, self.heads = nn.ModuleDict(), nn.ModuleDict()
            for units in slots.values():
                for key, unit in units.items():
                    if key != stem.key:
                        group, name = names[key].split(".")
                        getattr(self, group)[name] = space.build_unit(unit)
            return
        self.shared = nn.ModuleDict()
        for slot, units in slots.items():
            modules = {key: space.build_unit(unit) for key, unit in units.items()}
            largest = max(modules, key=lambda k: sum(p.numel() for p in modules[k].parameters()))
            self.shared[slot] = copy.deepcopy(modules[largest])
            shared = self._tensors(self.shared[slot])
            for key, module in modules.items():
                own = self._tensors(module)
                if own.keys() != shared.keys():
                    raise ValueError(f"{key} and {largest} differ in structure: they cannot share weights; build the "
                                     "supernet with sharing='separate'")
                try:
                    self._slices[key] = [(name, _slice_index(shared[name].shape, t.shape)) for name, t in own.items()]
                except ValueError as error:
                    raise ValueError(f"{key} cannot share {largest}'s weights ({error}); build the supernet with "
                                     "sharing='separate'") from error
                self._units[key] = module.to("meta")
                self._names[key] = f"shared.{slot}"

    @staticmethod
    def _tensors(module: nn.Module) -> dict[str, torch.Tensor]:
        return dict(module.named_parameters()) | dict(module.named_buffers())

    def path_units(self, arch: Hashable) -> list[LatencyUnit]:
        """The latency units of one architecture, in order (stem, every layer, head)."""
        space, units, state = self.space, list(self.space.stem_units()), self.space.initial_state()
        for block, candidate in enumerate(space.blocks_of(arch)):
            units.extend(space.block_units(block, candidate, state))
            state = space.block_output_state(block, candidate)
        return [*units, *space.head_units(state)]

    def path_modules(self, arch: Hashable) -> list[nn.Module]:
        """The registered modules whose weights (and BatchNorm statistics) one architecture uses, in order."""
        return [self._module_of(unit) for unit in self.path_units(arch)]

    def _module_of(self, unit: LatencyUnit) -> nn.Module:
        return self.get_submodule(self._names[unit.key])

    def largest_arch(self) -> Hashable:
        """The path with the most weights: in each block the candidate with the largest layers (given the largest
        path so far); under entangled sharing every other path is a slice of it."""
        space, state, chosen = self.space, self.space.initial_state(), []
        for block in range(space.num_blocks):
            def size(candidate: Hashable, block: int = block, state: Hashable = state) -> int:
                return sum(self._unit_size(unit.key) for unit in space.block_units(block, candidate, state))
            chosen.append(max(space.block_candidates(block), key=size))
            state = space.block_output_state(block, chosen[-1])
        return space.assemble(chosen)

    def _unit_size(self, key: str) -> int:
        module = self._units[key] if self.sharing == "entangled" else self.get_submodule(self._names[key])
        return sum(p.numel() for p in module.parameters())

    def path_batchnorms(self, arch: Hashable) -> list[nn.modules.batchnorm._BatchNorm]:
        """The BatchNorm layers one architecture runs: those holding its statistics and, when entangled, the
        choices' own (structure-only) ones whose ``momentum`` the forward pass reads."""
        modules = self.path_modules(arch)
        if self.sharing == "entangled":
            modules += [self._units[unit.key] for unit in self.path_units(arch)]
        return [m for module in modules for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def train(self, mode: bool = True) -> SPOSSupernet:
        super().train(mode)
        for module in self._units.values():
            module.train(mode)
        return self

    def forward(self, x: torch.Tensor, arch: Hashable) -> torch.Tensor:
        for unit in self.path_units(arch):
            module = self._module_of(unit)
            if self.sharing == "separate":
                x = module(x)
                continue
            shared = self._tensors(module)
            # in-place BatchNorm statistics updates land in the shared buffers: the slices are views
            x = functional_call(self._units[unit.key], {name: shared[name][index]
                                                         for name, index in self._slices[unit.key]}, (x,))
        return x


@dataclass(frozen=True)
class SPOSConfig:
    """The SPOS recipe: uniform paths, and the optimizer of the stand-alone recipe (AdamW, cosine schedule, label
    smoothing, gradient norm clipped at ``grad_clip``, optional on-the-fly augmentation), so the baseline and the
    children it rates are trained alike. ``sharing`` is the supernet's weight sharing (``SHARINGS``); the first
    ``warmup_epochs`` train the largest path only (as Once-for-All trains its full network before shrinking it), so
    uniform sampling starts from features every slice shares: from a random start, uniform paths over the tiny MBConv
    space stayed near chance whatever the sharing (entangled: 17% sampled-path train accuracy after 6 epochs of digits,
    vs 81% after 4 warm-up + 10 uniform epochs).
    (With ``"separate"`` ops, SGD with Nesterov momentum at the SPOS paper's lr scaled to batch 64, 0.05, left the
    tiny space's supernet at 17% sampled-path train accuracy after 30 epochs; AdamW at 3e-3, 21% after 40.)"""

    epochs: int = 40
    lr: float = 3e-3
    weight_decay: float = 0.05
    batch_size: int = 64
    label_smoothing: float = 0.1
    seed: int = 0
    augment: bool = False
    grad_clip: float | None = 1.0
    sharing: str = "entangled"
    warmup_epochs: int = 5

    def __post_init__(self) -> None:
        if self.sharing not in SHARINGS:
            raise ValueError(f"bad SPOS settings: sharing must be one of {', '.join(SHARINGS)}, got {self.sharing!r}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ValueError(f"bad SPOS settings: warmup_epochs must be in [0, epochs), got {self.warmup_epochs} of "
                             f"{self.epochs}")
        if (self.epochs < 1 or self.lr <= 0 or self.batch_size < 1 or self.weight_decay < 0
                or (self.grad_clip is not None and self.grad_clip <= 0)):
            raise ValueError("bad SPOS settings: epochs >= 1, lr > 0, batch >= 1, weight decay >= 0, grad_clip > 0 "
                             f"or None; got {self}")


# settings added after checkpoints were first written: a checkpoint without one was trained with this value
_LATER_SETTINGS = {"grad_clip": None, "sharing": "separate", "warmup_epochs": 0}


def train_spos(supernet: SPOSSupernet, bundle: DataBundle, config: SPOSConfig, checkpoint: Path | None = None,
               show_progress: bool = True, device: str | torch.device = "cpu") -> list[dict[str, float]]:
    """Uniform single-path training on labels on ``device``, a checkpoint per epoch (resumed from ``checkpoint``);
    returns the per-epoch history (mean loss, and train accuracy of the sampled paths). The supernet is back on the
    CPU when it returns."""
    if supernet.sharing != config.sharing:
        raise ValueError(f"the supernet shares weights {supernet.sharing!r} but the settings say {config.sharing!r}: "
                         f"build it as SPOSSupernet(space, sharing={config.sharing!r})")
    device = resolve_device(device)
    try:
        return _train_spos(supernet.to(device), bundle, config, checkpoint, show_progress, device)
    finally:
        supernet.to("cpu")


def _train_spos(supernet: SPOSSupernet, bundle: DataBundle, config: SPOSConfig, checkpoint: Path | None,
                show_progress: bool, device: torch.device) -> list[dict[str, float]]:
    torch.manual_seed(config.seed)
    optimizer = torch.optim.AdamW(supernet.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    history: list[dict[str, float]] = []
    largest = supernet.largest_arch()
    if checkpoint is not None and Path(checkpoint).exists():
        saved = load_checkpoint(checkpoint)
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
            images, labels = images.to(device), labels.to(device)
            logits = supernet(images, largest if epoch < config.warmup_epochs else supernet.space.sample(rng))
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
    """Validation accuracy of one path after re-estimating its BatchNorm statistics on training batches (on the
    supernet's device)."""
    device = next(supernet.parameters()).device
    norms = supernet.path_batchnorms(arch)
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    supernet.train()
    for index, (images, _) in enumerate(bundle.loader("train", 64, shuffle=True, seed=1)):
        if index >= calibration_batches:
            break
        supernet(images.to(device), arch)
    supernet.eval()
    correct = total = 0
    for images, labels in bundle.loader("val", 256):
        correct += int((supernet(images.to(device), arch).argmax(1).cpu() == labels).sum())
        total += len(labels)
    for norm in norms:
        norm.momentum = 0.1
    return correct / total
