"""Searched children: stand-alone training (optionally distilled from the run's teacher and initialised from the
supernet), and export with parity and latency checks. Everything lives in ``runs/NAME/children/ARCH_ID/``."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Hashable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hwnas.data import DataBundle, load_data
from hwnas.devices import load_checkpoint
from hwnas.run import RunDir
from hwnas.ship.export import Calibration
from hwnas.ship.int8_finetune import Int8Finetune
from hwnas.ship.report import ExportReport, ShippedFile
from hwnas.supernet.blocks import layer_key
from hwnas.supernet.distill import checkpoint_path, separates_depths, shares_twins
from hwnas.training import TrainConfig, train_classifier
from profilers import Protocol
from profilers.files import atomic_torch_save, atomic_write_json, read_json
from profilers.machine import device_metadata
from profilers.predictor import LatencyPredictor
from profilers.table import LatencyTable
from profilers.targets import Target, open_target
from search_spaces import SearchSpace

log = logging.getLogger(__name__)


def child_dir(run: RunDir, arch: Hashable, folder: Path | None = None) -> Path:
    """The folder of one child of the run (``folder``, or the run's own for that architecture), made."""
    folder = folder or run.child_folder(arch)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "arch.txt").write_text(str(arch) + "\n")
    return folder


@torch.no_grad()
def _supernet_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The block supernet's weights in a checkpoint: the whole model (DNA), or the ``supernet.`` part of a
    teacher-free method's online network (its stem, projector and predictor are not the child's)."""
    model = checkpoint["model"]
    if checkpoint["config"].get("method", "dna") == "dna":
        return model
    return {k[len("supernet."):]: v for k, v in model.items() if k.startswith("supernet.")}


def init_from_supernet(run: RunDir, model: nn.Module, arch: Hashable) -> int:
    """Copy each layer's weights from its block supernet (same module, same key; a wide kernel from the narrow
    twin it shared a module with); returns layers copied."""
    space = run.space
    layers = iter(run.space.searchable_layers(model))
    copied, state = 0, space.initial_state()
    for block, candidate in enumerate(space.blocks_of(arch)):
        path = checkpoint_path(run, block)
        checkpoint = load_checkpoint(path) if path.exists() else None
        units = space.block_units(block, candidate, state)
        for position, unit in enumerate(units):
            layer = next(layers)
            if checkpoint is None:
                continue
            module_unit = space.twin_unit(unit) if shares_twins(checkpoint["config"]) else unit
            depth = len(units) if separates_depths(checkpoint["config"]) else None
            prefix = f"layers.{layer_key(position, module_unit, depth)}."
            weights = {k[len(prefix):]: v for k, v in _supernet_state(checkpoint).items() if k.startswith(prefix)}
            if weights:
                own = layer.state_dict()
                layer.load_state_dict({name: _fit_kernel(value, own[name]) for name, value in weights.items()})
                copied += 1
        state = space.block_output_state(block, candidate)
    return copied


def _fit_kernel(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``source`` shaped as ``target``: a narrower convolution kernel (a twin's module) centred in zeros. The taps
    it lacks only ever read padding, so the wide layer computes what the narrow one did."""
    if source.shape == target.shape:
        return source
    if source.dim() != 4 or source.shape[:2] != target.shape[:2] or any(
            (t - s) % 2 or t < s for s, t in zip(source.shape[2:], target.shape[2:])):
        raise ValueError(f"supernet weights of shape {tuple(source.shape)} do not fit a layer of shape "
                         f"{tuple(target.shape)}")
    fitted = torch.zeros_like(target)
    top, left = (target.shape[2] - source.shape[2]) // 2, (target.shape[3] - source.shape[3]) // 2
    fitted[..., top:top + source.shape[2], left:left + source.shape[3]] = source
    return fitted


def train_child(run: RunDir, arch_text: str, config: TrainConfig, distill: bool = False, init_supernet: bool = False,
                show_progress: bool = True, device: str = "cpu", folder: Path | None = None) -> dict[str, Any]:
    """Train a child stand-alone on the run's data on ``device`` (resumable) in ``folder`` (default: the run's
    folder of that child); returns history, test accuracy and the weights."""
    space = run.space
    arch = space.parse(arch_text)
    model = space.build(arch).train()
    folder = child_dir(run, arch, folder)
    _check_same_start(folder, init_supernet)
    copied = init_from_supernet(run, model, arch) if init_supernet else 0
    teacher = None
    if distill:
        from hwnas.supernet.teacher import open_teacher

        teacher = open_teacher(run)
    bundle = load_data(run.config.data, space.resolution)
    result = train_classifier(model, bundle, config, folder / "train.pt", teacher=teacher,
                              show_progress=show_progress, label="child", device=device)
    weights = folder / "weights.pt"
    atomic_torch_save({"arch": str(arch), "space": space.name, "state_dict": model.state_dict()}, weights)
    report = {"arch": str(arch), "weights": str(weights), "layers_from_supernet": copied, "distilled": distill,
              "config": vars(config), **result}
    atomic_write_json(folder / "train_result.json", report)
    plot_training(result["history"], folder / "training.png", str(arch))
    if show_progress:
        log.info("child test accuracy %.4f", result["test_accuracy"])
    return report


def _check_same_start(folder: Path, init_supernet: bool) -> None:
    """A child's training resumes only from the start it began with (``--init-supernet`` or not): ValueError says
    what to do otherwise, instead of resuming the other start's weights and reporting this one's. Trainings from
    before the start was recorded are taken as they are."""
    start = folder / "start.json"
    wanted = {"init_supernet": init_supernet}
    if (folder / "train.pt").exists() and start.exists():
        recorded = read_json(start, "child start")
        if recorded != wanted:
            flag = "with" if recorded.get("init_supernet") else "without"
            raise ValueError(f"{folder / 'train.pt'} was started {flag} --init-supernet; train it {flag} the flag to "
                             f"resume it, or move {folder} away to train it from the other start")
    atomic_write_json(start, wanted)


def load_child(run: RunDir, arch: Hashable, weights: Path | None) -> tuple[nn.Module, str]:
    """The child with trained weights, or with BatchNorm re-estimated on data when no weights are given."""
    space = run.space
    model = space.build(arch)
    if weights is not None:
        weights = Path(weights)
        if not weights.exists():
            raise FileNotFoundError(f"no weights at {weights}; train the child with 'hwnas train --run {run.path} "
                                    f"--arch ...' or leave --weights out")
        saved = load_checkpoint(weights)
        if saved.get("arch") != str(arch):
            raise ValueError(f"{weights} holds weights of {saved.get('arch')}, not {arch}")
        model.load_state_dict(saved["state_dict"])
        return model.eval(), str(weights)
    from hwnas.ship.export import calibrate_batchnorm

    bundle = load_data(run.config.data, space.resolution)
    return calibrate_batchnorm(model, bundle), "random initialisation, BatchNorm re-estimated on training images"


def plot_training(history: list[dict[str, Any]], path: Path, title: str) -> None:
    """Loss and validation accuracy per epoch, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3))
    left.plot(epochs, [h["loss"] for h in history], marker="o", markersize=3)
    left.set_xlabel("epoch")
    left.set_ylabel("training loss")
    right.plot(epochs, [h["val_accuracy"] for h in history], marker="o", markersize=3, color="tab:green")
    right.set_xlabel("epoch")
    right.set_ylabel("validation accuracy")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@dataclass(frozen=True)
class ExportSettings:
    """How an export is checked: ``tables`` (latency tables; each format is predicted from the one of its runtime,
    and three of that table's units are measured beside the file to read the machine's drift), ``budget_ms`` checked
    on every file's measured latency or, with ``budget_runtime`` (the runtime the search's table measured), only on
    the files that run on it, and with ``budget_precision`` only on that precision's files; ``target`` where to
    measure (None: this machine, a URL or ``adb:SERIAL``) with ``token`` for an agent; the measurement ``protocol``;
    ``measure=False`` skips measuring; ``parity_limit`` caps the test images compared; ``int8_finetune`` fine-tunes
    the weights the int8 files are made from through simulated int8 first (``hwnas.ship.int8_finetune``; parity is
    still against the original network); ``calibration`` how the int8 files are calibrated."""

    tables: tuple[Path, ...] = ()
    budget_ms: float | None = None
    budget_runtime: str | None = None
    budget_precision: str | None = None
    target: None | str | Target = None
    token: str | None = None
    protocol: Protocol = field(default_factory=Protocol)
    measure: bool = True
    parity_limit: int | None = None
    int8_finetune: Int8Finetune | None = None
    calibration: Calibration = field(default_factory=Calibration)


def export_child(run: RunDir, arch: Hashable | str, formats: list[tuple[str, str]], out_dir: Path,
                 weights: Path | None = None, settings: ExportSettings | None = None) -> ExportReport:
    """Export to each (format, precision), check parity on the test split, measure, write the report.

    Parity runs each file where it is measured when that is an agent (its kernels, its rounding), else here.

    When measuring, an int8 ONNX or TFLite file is measured beside the fp32 file of its format (exported too when not
    asked for), so the report gives the int8/fp32 latency ratio, and a warning says when int8 is slower. A TFLite file
    is also measured with LiteRT's built-in kernels (XNNPACK off), which run some int8 layers much faster."""
    from hwnas.ship.export import FORMATS, export_file, parity

    settings = settings or ExportSettings()
    space = run.space
    arch = space.parse(arch) if isinstance(arch, str) else arch
    tables = [LatencyTable.load(t, space) for t in settings.tables]  # each loaded once, checked against the space
    if settings.measure:
        formats = with_fp32_beside_int8(formats)
    targets = _open_targets(formats, settings) if settings.measure else {}  # a bad target fails before exporting
    model, weights_note = load_child(run, arch, weights)
    bundle = load_data(run.config.data, space.resolution)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = hashlib.sha1(str(arch).encode()).hexdigest()[:12]
    exports = []
    int8_model, finetuned = _int8_weights(model, bundle, formats, settings.int8_finetune)
    calibration = _for_target(settings.calibration, targets.get(("onnx", "int8")))
    for fmt, precision in formats:
        exported = export_file(int8_model if precision == "int8" else model, space, fmt, precision, out_dir, stem,
                               bundle, calibration)
        item = ShippedFile(fmt, precision, exported.path, exported.path.stat().st_size,
                           parity(model, exported, bundle, limit=settings.parity_limit,
                                  target=targets.get((fmt, precision))),
                           int8_stem=exported.stem and exported.stem.to_dict(), int8_weight_bits=exported.weight_bits)
        if settings.measure:
            runtime_name = FORMATS[fmt][0]
            index = next((i for i, t in enumerate(tables) if t.metadata.get("runtime") == runtime_name
                          and t.metadata.get("precision", "fp32") == precision), None)
            _measure_item(item, space, arch, tables[index] if index is not None else None,
                          settings.tables[index] if index is not None else None, settings, targets[fmt, precision])
            if fmt == "tflite":
                item.other_kernels = _measure_builtin_kernels(item, settings)
        exports.append(item)
    _compare_int8(exports)
    checked = settings.budget_ms is not None
    report = ExportReport(arch, space.name, weights_note, settings.budget_ms,
                          settings.budget_runtime if checked else None, exports,
                          budget_precision=settings.budget_precision if checked else None, int8_finetune=finetuned,
                          onnx_calibration=settings.calibration.onnx_method if ("onnx", "int8") in formats else None)
    report.write(out_dir, stem)
    return report


def _for_target(calibration: Calibration, target: Target | None) -> Calibration:
    """``calibration`` with an int8 ONNX file's weight bits decided for the machine that runs it: the measuring
    target's processor (this machine when not measuring)."""
    if calibration.onnx_weight_bits != "auto":
        return calibration
    from profilers.onnxruntime_runtime import weight_bits

    bits = weight_bits("auto", target.device() if target is not None else device_metadata())
    return replace(calibration, onnx_weight_bits=str(bits))


def _int8_weights(model: nn.Module, bundle: DataBundle, formats: list[tuple[str, str]],
                  settings: Int8Finetune | None) -> tuple[nn.Module, dict[str, Any] | None]:
    """The network int8 files are made from: ``model``, or with ``settings`` a copy fine-tuned for int8 (and the
    fine-tuning's summary)."""
    if settings is None or all(precision != "int8" for _, precision in formats):
        return model, None
    from hwnas.ship.int8_finetune import finetune_for_int8

    log.info("fine-tuning for int8 (%d steps)", settings.steps)
    return finetune_for_int8(model, bundle, settings,
                             lambda step, loss: log.info("int8 fine-tuning step %d/%d: loss %.4f", step,
                                                         settings.steps, loss))


def with_fp32_beside_int8(formats: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``formats`` with (FORMAT, fp32) before each (FORMAT, int8) of ONNX or TFLite that lacks it."""
    out: list[tuple[str, str]] = []
    for fmt, precision in formats:
        if precision == "int8" and fmt in ("onnx", "tflite") and (fmt, "fp32") not in formats + out:
            out.append((fmt, "fp32"))
        if (fmt, precision) not in out:
            out.append((fmt, precision))
    return out


def _measure_builtin_kernels(item: ShippedFile, settings: ExportSettings) -> dict[str, float]:
    """The TFLite file measured with LiteRT's built-in kernels (``litert-builtin``) where it is measured."""
    from hwnas.ship.export import measure_file, measuring_runtime

    try:
        target = open_target(measuring_runtime("tflite", item.precision, "litert-builtin"), settings.target,
                             settings.token)
        return {"litert-builtin": measure_file(item.file, target, settings.protocol)["measured_ms"]}
    except (OSError, RuntimeError, ValueError) as error:  # an older agent or a phone without the option
        log.warning("could not measure %s with LiteRT's built-in kernels: %s", item.file.name, error)
        return {}


def _compare_int8(exports: list[ShippedFile]) -> None:
    """Set each measured int8 file's latency ratio to the fp32 file of its format; warn when int8 is slower."""
    fp32 = {e.format: e for e in exports if e.precision == "fp32" and e.measured_ms is not None}
    for item in exports:
        reference = fp32.get(item.format)
        if item.precision != "int8" or item.measured_ms is None or reference is None:
            continue
        item.vs_fp32 = item.measured_ms / reference.measured_ms
        best = min(item.other_kernels.items(), key=lambda kv: kv[1], default=None)
        if item.vs_fp32 > 1:
            hint = (f"; with {best[0]} it measured {best[1]:.4g} ms ({best[1] / reference.measured_ms:.2f}x fp32)"
                    if best is not None else "")
            log.warning("int8 %s is slower than fp32 here: %.4g ms against %.4g ms (%.2fx)%s; ship fp32 or see "
                        "benchmarks/docs/int8_kernels.md", item.format, item.measured_ms, reference.measured_ms,
                        item.vs_fp32, hint)


def _open_targets(formats: list[tuple[str, str]], settings: ExportSettings) -> dict[tuple[str, str], Target]:
    """Where each (format, precision) is measured: its runtime on ``settings.target``."""
    from hwnas.ship.export import measuring_runtime

    return {(fmt, precision): open_target(measuring_runtime(fmt, precision), settings.target, settings.token)
            for fmt, precision in formats}


def _measure_item(item: ShippedFile, space: SearchSpace, arch: Hashable, table: LatencyTable | None,
                  table_path: Path | None, settings: ExportSettings, target: Target) -> None:
    """Measure one exported file; predict it from its runtime's table of its precision; check the budget where it
    applies."""
    from hwnas.ship.export import measure_file

    runtime_name = target.runtime.name
    reference = (space, table) if table is not None else None
    item.latency = measure_file(item.file, target, settings.protocol, reference)
    if table is not None:
        item.predicted_ms = LatencyPredictor(table, space).predict(arch)
        item.table = str(table_path)
    if settings.budget_ms is not None:
        applies = ((settings.budget_runtime is None or runtime_name == settings.budget_runtime)
                   and (settings.budget_precision is None or item.precision == settings.budget_precision))
        measured_ms = item.latency["measured_ms"]
        item.within_budget = measured_ms <= settings.budget_ms if applies else None
        item.over_budget_pct = 100 * (measured_ms / settings.budget_ms - 1) if applies else None
