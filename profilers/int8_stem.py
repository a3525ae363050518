"""Whether an int8 file keeps an image network's stem in float.

The stem (the first convolution, its activation and the convolution reading it) can spread what it computes over
channels of very different ranges; int8 gives the whole activation one uint8 range, so a channel whose own range is a
few steps of it is erased. A float stem costs latency where the stem runs at high resolution, so by default (``auto``)
it is kept in float only when, on the calibration inputs, the stem activation's narrowest live channel spans fewer
than ``MIN_STEPS`` uint8 steps of the activation's range. Both int8 recipes (ONNX Runtime and LiteRT) take the
decision from the PyTorch module, on the same tensor. Why 8 and what it costs: ``benchmarks/docs/int8_trained.md``,
``benchmarks/docs/int8_kernels.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

MIN_STEPS = 8.0
STEM_CHOICES = {"auto": f"in float only where its narrowest channel would get fewer than {MIN_STEPS:g} uint8 steps",
                "float": "always in float (agreement first)", "int8": "always quantized (speed first)"}
LEVELS = 255


def image_stem_layers(module: nn.Module, example: torch.Tensor) -> list[str]:
    """Paths of the layers of ``module``'s stem when it reads an image (``example`` has 3 channels): its first
    convolution and the layers run after it up to and including the next convolution (the stem's activation and the
    convolution reading it). Empty for any other input."""
    if example.dim() != 4 or example.shape[1] != 3:
        return []
    order: list[str] = []
    names = {layer: name for name, layer in module.named_modules()}
    leaves = [layer for layer in module.modules() if not list(layer.children())]
    handles = [layer.register_forward_hook(lambda layer, _, __: order.append(names[layer])) for layer in leaves]
    training = module.training
    try:
        with torch.no_grad():
            module.eval()(example)
    finally:
        module.train(training)
        for handle in handles:
            handle.remove()
    convs = [i for i, name in enumerate(order) if isinstance(module.get_submodule(name), nn.Conv2d)]
    if not convs:
        return []
    end = convs[1] if len(convs) > 1 else convs[0]
    return list(dict.fromkeys(order[convs[0]:end + 1]))


def narrowest_channel_steps(values: torch.Tensor) -> float:
    """Of an activation ``values`` (batch, channels, ...), how many uint8 steps of the whole tensor's range the
    narrowest channel spans (channels that never vary carry nothing and are left out); inf when none varies."""
    flat = values.transpose(0, 1).reshape(values.shape[1], -1)
    spans = flat.amax(1) - flat.amin(1)
    total = float(flat.max() - flat.min())
    live = spans[spans > 0]
    if total <= 0 or len(live) == 0:
        return float("inf")
    return float(live.min()) / total * LEVELS


def stem_activation(module: nn.Module, layers: Sequence[str], calibration: Sequence[np.ndarray],
                    batch: int = 16) -> torch.Tensor:
    """The stem's activation on ``calibration`` (batch-1 inputs): what the convolution reading it receives, or the
    last stem layer's output when nothing reads it inside ``module``."""
    seen: list[torch.Tensor] = []
    last = module.get_submodule(layers[-1])
    reads = len(layers) > 1 and isinstance(last, nn.Conv2d)
    handle = (last.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach())) if reads
              else last.register_forward_hook(lambda _, __, out: seen.append(out.detach())))
    training = module.training
    inputs = torch.from_numpy(np.concatenate([np.asarray(x, np.float32) for x in calibration]))
    try:
        with torch.no_grad():
            module.eval()
            for start in range(0, len(inputs), batch):
                module(inputs[start:start + batch])
    finally:
        module.train(training)
        handle.remove()
    return torch.cat(seen)


@dataclass(frozen=True)
class StemDecision:
    """Whether an int8 file's image stem stays in float: the ``choice`` asked for (``STEM_CHOICES``), the stem's
    layers (empty: no image stem), its narrowest channel in uint8 steps (None unless measured) and the outcome."""

    choice: str
    layers: tuple[str, ...]
    narrowest_steps: float | None
    in_float: bool

    @property
    def float_layers(self) -> tuple[str, ...]:
        """The layers an int8 file keeps in float for it: the stem's when it stays in float, else none."""
        return self.layers if self.in_float else ()

    def to_dict(self) -> dict[str, Any]:
        """The decision as JSON values."""
        return {"choice": self.choice, "layers": list(self.layers), "narrowest_channel_steps": self.narrowest_steps,
                "min_steps": MIN_STEPS, "in_float": self.in_float, "description": self.describe()}

    def describe(self) -> str:
        """One line for a report."""
        if not self.layers:
            return "no image stem"
        where = "kept in float" if self.in_float else "quantized"
        why = (f" (its narrowest channel spans {self.narrowest_steps:.1f} uint8 steps; under {MIN_STEPS:g} keeps it "
               "in float)" if self.narrowest_steps is not None else f" ({self.choice})")
        return f"image stem {where}{why}"


def decide_stem(module: nn.Module, example: torch.Tensor, calibration: Sequence[np.ndarray],
                choice: str = "auto") -> StemDecision:
    """The stem decision for ``module`` under ``choice``, measured on ``calibration`` when ``auto``."""
    if choice not in STEM_CHOICES:
        raise ValueError(f"unknown int8 stem choice {choice!r}; choose one of: {', '.join(STEM_CHOICES)}")
    layers = tuple(image_stem_layers(module, example))
    if not layers:
        return StemDecision(choice, (), None, False)
    if choice != "auto":
        return StemDecision(choice, layers, None, choice == "float")
    steps = narrowest_channel_steps(stem_activation(module, layers, calibration))
    return StemDecision(choice, layers, steps, steps < MIN_STEPS)
