"""Quantization-aware fine-tuning for int8 export: the trained network learns to give its own answers through the
rounding an int8 runtime applies.

Post-training int8 (ranges calibrated by min/max on training images, as ``onnxruntime.quantization`` and ai-edge-
quantizer do) changes some of a trained child's answers. ``SimulatedInt8`` rounds in PyTorch what those runtimes
round: every Conv2d and Linear weight to int8 per output channel, and every tensor the runtime stores as uint8 (the
input, each module's output, each activation's input, SiLU's sigmoid) per tensor on the range calibration gives it; a
convolution's output that goes straight into a BatchNorm is left alone, as the runtime folds the two.
``finetune_for_int8`` fine-tunes a copy of the weights through that rounding to reproduce the original network's
outputs (distillation on training images, BatchNorm statistics frozen, the ranges calibrated again every 50 steps as
the export will calibrate them) and returns the fine-tuned float network when its simulated int8 agrees better with
the original on the validation split; the runtime then quantizes it as usual. What it gains (not always something):
``benchmarks/docs/int8_trained.md``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from hwnas.data import DataBundle

log = logging.getLogger(__name__)
ACTIVATIONS = (nn.SiLU, nn.ReLU, nn.ReLU6, nn.GELU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.LeakyReLU)


@dataclass(frozen=True)
class Int8Finetune:
    """How ``finetune_for_int8`` fine-tunes: ``steps`` Adam steps of ``lr`` on batches of ``batch_size`` training
    images drawn at random (seeded by ``seed``), ranges calibrated on the first ``calibration_samples`` training
    images (as the export calibrates), the choice made on the first ``check_samples`` validation images;
    ``always_keep`` returns the fine-tuned weights even where they did not help
    (to measure them)."""

    steps: int = 500
    lr: float = 1e-4
    batch_size: int = 64
    calibration_samples: int = 128
    check_samples: int = 4096
    seed: int = 0
    always_keep: bool = False

    def __post_init__(self) -> None:
        if min(self.steps, self.batch_size, self.calibration_samples, self.check_samples) < 1 or not self.lr > 0:
            raise ValueError("int8 fine-tuning needs steps, batch_size, calibration_samples, check_samples >= 1 and "
                             f"lr > 0; got {self}")


class _Range:
    """One tensor's uint8 rounding: records min/max while calibrating, then rounds onto 256 levels spanning them
    (and zero), with the straight-through gradient of ``torch.fake_quantize_per_tensor_affine``."""

    def __init__(self, simulation: SimulatedInt8) -> None:
        self.simulation = simulation
        self.low = 0.0
        self.high = 0.0
        simulation.ranges.append(self)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            return x
        if getattr(x, "_int8_rounded_at", None) == x._version:
            return x  # rounded and unchanged since (a container passing on its last module's output): no new tensor
        if self.simulation.calibrating:
            self.low = min(self.low, float(x.detach().min()))
            self.high = max(self.high, float(x.detach().max()))
            return x
        if not self.simulation.enabled:
            return x
        scale = max(self.high - self.low, 1e-8) / 255.0
        out = torch.fake_quantize_per_tensor_affine(x, scale, round(-self.low / scale), 0, 255)
        out._int8_rounded_at = out._version
        return out

    def on_input(self, _: nn.Module, inputs: tuple[Any, ...]) -> tuple[Any, ...]:
        """Forward pre-hook: round a module's first input."""
        return (self(inputs[0]), *inputs[1:])

    def on_output(self, _: nn.Module, __: Any, output: Any) -> Any:
        """Forward hook: round a module's output."""
        return self(output)


class _PerChannelInt8(nn.Module):
    """A weight rounded to int8 per output channel, symmetric (the runtimes' per-channel weights)."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        scale = weight.detach().abs().amax(dim=tuple(range(1, weight.dim()))).clamp_min(1e-8) / 127.0
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -128, 127)


class _SiLU(nn.Module):
    """SiLU as the runtimes run it in int8: ``x * sigmoid(x)`` with the sigmoid's output rounded too."""

    def __init__(self, simulation: SimulatedInt8) -> None:
        super().__init__()
        self.sigmoid = _Range(simulation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.sigmoid(torch.sigmoid(x))


def _convs_into_batchnorm(model: nn.Module, example: torch.Tensor) -> set[nn.Module]:
    """The Conv2d/Linear modules whose output goes straight into a BatchNorm (found by running ``example``)."""
    outputs: dict[int, nn.Module] = {}
    kept: list[torch.Tensor] = []  # alive until the end, so no id is reused
    found: set[nn.Module] = set()

    def record(module: nn.Module, _: Any, output: Any) -> None:
        outputs[id(output)] = module
        kept.append(output)

    def check(_: nn.Module, inputs: tuple[Any, ...]) -> None:
        if inputs and id(inputs[0]) in outputs:
            found.add(outputs[id(inputs[0])])

    handles = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    handles += [m.register_forward_pre_hook(check) for m in model.modules()
                if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        model(example)
    for handle in handles:
        handle.remove()
    return found


class SimulatedInt8:
    """A copy of ``model`` that computes as an int8 runtime would (see the module docstring); ``calibrate`` first.
    ``model`` is the simulating network, ``enabled`` switches the activation rounding off (weights stay rounded)."""

    def __init__(self, model: nn.Module, example: torch.Tensor) -> None:
        self.calibrating = False
        self.enabled = True
        self.ranges: list[_Range] = []
        self.model = copy.deepcopy(model).eval()
        into_batchnorm = _convs_into_batchnorm(self.model, example)
        for parent in list(self.model.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.SiLU):
                    setattr(parent, name, _SiLU(self))
        self.model.register_forward_pre_hook(_Range(self).on_input)
        modules = list(self.model.modules())  # before the parametrizations add theirs
        for module in modules:
            if isinstance(module, (*ACTIVATIONS, _SiLU)):
                module.register_forward_pre_hook(_Range(self).on_input)
            if module not in into_batchnorm:
                module.register_forward_hook(_Range(self).on_output)
        for module in modules:
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                parametrize.register_parametrization(module, "weight", _PerChannelInt8())

    @torch.no_grad()
    def calibrate(self, images: torch.Tensor, batch_size: int = 64) -> None:
        """Record every tensor's range over ``images`` afresh (the runtimes' min/max calibration)."""
        for tensor_range in self.ranges:
            tensor_range.low = tensor_range.high = 0.0
        self.calibrating = True
        try:
            for start in range(0, len(images), batch_size):
                self.model(images[start:start + batch_size])
        finally:
            self.calibrating = False

    def float_model(self, like: nn.Module) -> nn.Module:
        """A copy of ``like`` (the original network) carrying the simulation's current float weights."""
        state = {key.replace("parametrizations.weight.original", "weight"): value
                 for key, value in self.model.state_dict().items()}
        out = copy.deepcopy(like)
        out.load_state_dict(state)
        return out.eval()


@torch.no_grad()
def agreement(model: nn.Module, reference: nn.Module, batches: Iterable[torch.Tensor]) -> float:
    """Share of the images in ``batches`` (for a tensor of images: ``images.split(256)``) on which ``model`` and
    ``reference`` give the same top-1 class."""
    same = total = 0
    for batch in batches:
        same += int((model(batch).argmax(1) == reference(batch).argmax(1)).sum())
        total += len(batch)
    return same / max(total, 1)


def _checked(bundle: DataBundle, samples: int) -> Iterator[torch.Tensor]:
    """The first ``samples`` validation images, a batch of 256 at a time."""
    for batch, _ in bundle.loader("val", batch_size=256, sampler=range(min(samples, len(bundle.datasets["val"])))):
        yield batch


def finetune_for_int8(model: nn.Module, bundle: DataBundle, settings: Int8Finetune | None = None,
                      progress: Callable[[int, float], None] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Fine-tune a copy of the trained ``model`` through simulated int8 to reproduce ``model``'s outputs; return
    the fine-tuned float network, or ``model`` itself where fine-tuning did not raise the simulated int8 top-1
    agreement with ``model`` on the validation split (it does not on every network), and a summary (the settings,
    that agreement before and after, which weights were kept). ``progress(step, loss)`` is told every 50 steps."""
    settings = settings or Int8Finetune()
    reference = model.eval()
    calibration, _ = bundle.tensors("train", settings.calibration_samples)
    if len(calibration) == 0:
        raise ValueError("int8 fine-tuning needs training images; the data set's train split is empty")
    train_size = len(bundle.datasets["train"])
    torch.manual_seed(settings.seed)
    simulation = SimulatedInt8(reference, calibration[:1])
    simulation.calibrate(calibration)
    before = agreement(simulation.model, reference, _checked(bundle, settings.check_samples))
    optimizer = torch.optim.Adam(simulation.model.parameters(), lr=settings.lr)
    generator = torch.Generator().manual_seed(settings.seed)
    for step in range(1, settings.steps + 1):
        batch, _ = bundle.batch("train", torch.randint(train_size, (settings.batch_size,), generator=generator))
        with torch.no_grad():
            target = F.log_softmax(reference(batch), 1)
        loss = F.kl_div(F.log_softmax(simulation.model(batch), 1), target, log_target=True, reduction="batchmean")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0 or step == settings.steps:
            simulation.calibrate(calibration)  # the ranges the export will calibrate
            if progress is not None:
                progress(step, float(loss))
    after = agreement(simulation.model, reference, _checked(bundle, settings.check_samples))
    kept = "fine-tuned" if after > before or settings.always_keep else "original"
    log.info("int8 fine-tuning: simulated top-1 agreement on the validation split %.4f -> %.4f; %s weights kept",
             before, after, kept)
    summary = {**asdict(settings), "simulated_agreement_before": before, "simulated_agreement_after": after,
               "split": "val", "samples": min(settings.check_samples, len(bundle.datasets["val"])), "kept": kept}
    return (simulation.float_model(reference) if kept == "fine-tuned" else reference), summary
