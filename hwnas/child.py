"""Searched children: stand-alone training (optionally distilled from the run's teacher and initialised from the
supernet), and export with parity and latency checks. Everything lives in ``runs/NAME/children/ARCH_ID/``."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hwnas.data import load_data
from hwnas.devices import load_checkpoint
from hwnas.distill import checkpoint_path, separates_depths, shares_twins
from hwnas.run import RunDir
from hwnas.supernet import layer_key
from hwnas.training import TrainConfig, train_classifier
from profilers._files import atomic_torch_save, atomic_write_json, read_json


def child_dir(run: RunDir, arch: Hashable) -> Path:
    """The folder of one child of the run."""
    folder = run.path / "children" / hashlib.sha1(str(arch).encode()).hexdigest()[:12]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "arch.txt").write_text(str(arch) + "\n")
    return folder


def _child_layers(model: nn.Module) -> list[nn.Module]:
    """The child's searchable layers in order (timm EfficientNet: blocks[1:]; ViT: blocks)."""
    from timm.models.efficientnet import EfficientNet

    if isinstance(model, EfficientNet):
        return [layer for stage in list(model.blocks)[1:] for layer in stage]
    return list(model.blocks)


@torch.no_grad()
def init_from_supernet(run: RunDir, model: nn.Module, arch: Hashable) -> int:
    """Copy each layer's weights from its block supernet (same module, same key; a wide kernel from the narrow
    twin it shared a module with); returns layers copied."""
    space = run.space
    layers = iter(_child_layers(model))
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
            weights = {k[len(prefix):]: v for k, v in checkpoint["model"].items() if k.startswith(prefix)}
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
                show_progress: bool = True, device: str = "cpu") -> dict[str, Any]:
    """Train a child stand-alone on the run's data on ``device`` (resumable); returns history, test accuracy and the
    weights."""
    space = run.space
    arch = space.parse(arch_text)
    model = space.build(arch).train()
    folder = child_dir(run, arch)
    _check_same_start(folder, init_supernet)
    copied = init_from_supernet(run, model, arch) if init_supernet else 0
    teacher = None
    if distill:
        from hwnas.stages import open_teacher

        teacher = open_teacher(run)
    bundle = load_data(run.config["data"], space.resolution)
    result = train_classifier(model, bundle, config, folder / "train.pt", teacher=teacher,
                              show_progress=show_progress, label="child", device=device)
    weights = folder / "weights.pt"
    atomic_torch_save({"arch": str(arch), "space": space.name, "state_dict": model.state_dict()}, weights)
    report = {"arch": str(arch), "weights": str(weights), "layers_from_supernet": copied, "distilled": distill,
              "config": vars(config), **result}
    atomic_write_json(folder / "train_result.json", report)
    plot_training(result["history"], folder / "training.png", str(arch))
    if show_progress:
        print(f"child test accuracy {result['test_accuracy']:.4f}", file=sys.stderr)
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
    from hwnas.export import calibrate_batchnorm

    bundle = load_data(run.config["data"], space.resolution)
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


def export_child(run: RunDir, arch_text: str, formats: list[tuple[str, str]], out_dir: Path,
                 weights: Path | None = None, tables: list[Path] | None = None, budget_ms: float | None = None,
                 target_url: str | None = None, token: str | None = None, protocol: Any = None,
                 measure: bool = True, parity_limit: int | None = None,
                 budget_runtime: str | None = None) -> dict[str, Any]:
    """Export to each (format, precision), check parity on the test split, measure, write the report.

    ``tables``: latency tables; each format is predicted from the one of its runtime (when given), and that
    table's units are measured beside the file to check how fast the machine runs right now. ``budget_ms`` is
    checked against every format's measured latency, or, with ``budget_runtime`` (the runtime the search's table
    measured), only against the formats that run on it: the others get ``within_budget`` None.
    ``over_budget_pct`` says by how much (negative: the margin left)."""
    from hwnas.export import FORMATS, export_file, measure_file, parity, predicted_latency, write_report
    from profilers import Protocol

    space = run.space
    arch = space.parse(arch_text)
    model, weights_note = load_child(run, arch, weights)
    bundle = load_data(run.config["data"], space.resolution)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = hashlib.sha1(str(arch).encode()).hexdigest()[:12]
    protocol = protocol or Protocol()
    exports = []
    for fmt, precision in formats:
        exported = export_file(model, space, fmt, precision, out_dir, stem, bundle)
        item: dict[str, Any] = {"format": fmt, "precision": precision, "file": str(exported.path),
                                "size_bytes": exported.path.stat().st_size,
                                "parity": parity(model, exported, bundle, limit=parity_limit)}
        item["accuracy_change"] = item["parity"]["accuracy_exported"] - item["parity"]["accuracy_torch"]
        if measure:
            from profilers.table import LatencyTable

            runtime_name = FORMATS[fmt][0]
            table = next((Path(t) for t in tables or [] if LatencyTable.load(t).metadata.get("runtime") == runtime_name),
                         None)
            reference = (space, table) if table is not None else None
            item["latency"] = measure_file(exported.path, fmt, precision, target_url, token, protocol, reference)
            if table is not None and precision == "fp32":
                item["predicted_ms"] = predicted_latency(table, space, arch)
                item["prediction_error_pct"] = 100 * (item["latency"]["measured_ms"] / item["predicted_ms"] - 1)
                item["table"] = str(table)
            if budget_ms is not None:
                applies = budget_runtime is None or runtime_name == budget_runtime
                measured_ms = item["latency"]["measured_ms"]
                item["within_budget"] = measured_ms <= budget_ms if applies else None
                item["over_budget_pct"] = 100 * (measured_ms / budget_ms - 1) if applies else None
        exports.append(item)
    report = {"arch": str(arch), "space": space.name, "weights": weights_note, "budget_ms": budget_ms,
              "budget_runtime": budget_runtime if budget_ms is not None else None, "exports": exports}
    json_path, md_path = write_report(report, out_dir, stem)
    report["report_files"] = [str(json_path), str(md_path)]
    return report
