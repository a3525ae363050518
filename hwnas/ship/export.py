"""Ship to the edge: export a child to ONNX, TFLite (fp32 or int8) or a TensorRT engine, check parity, measure.

ONNX: torch's exporter, ``onnx.checker`` (full check), outputs compared with PyTorch in ONNX Runtime on real test
images. TFLite: litert-torch, run in the LiteRT interpreter and compared the same way; int8 by post-training static
quantization (ai-edge-quantizer) calibrated on training images, with the accuracy change reported; ONNX int8 by
static QDQ quantization (``onnxruntime.quantization``), calibrated the same way. TensorRT: an
engine from the ONNX model (lazily imported; a clear error where it is missing). Then the exported file is measured
on its runtime under the profilers' protocol and a deployment report is written (JSON and Markdown).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.data import DataBundle
from profilers import LatencyStats, Protocol, Runtime, get_runtime
from profilers.files import atomic_write_bytes
from profilers.int8_stem import StemDecision, decide_stem
from profilers.machine import device_metadata
from profilers.onnx_export import export_onnx
from profilers.runtime import ModelRef
from profilers.table import LatencyTable
from profilers.targets import LocalTarget, Target
from search_spaces import SearchSpace

log = logging.getLogger(__name__)

FORMATS = {"onnx": ("onnxruntime", ".onnx"), "tflite": ("litert", ".tflite"), "tensorrt": ("tensorrt", ".engine")}
PRECISIONS = {"onnx": ("fp32", "int8"), "tflite": ("fp32", "int8"), "tensorrt": ("fp32", "fp16", "int8")}


@dataclass(frozen=True)
class Calibration:
    """How int8 files are calibrated: on the first ``samples`` training images; an int8 ONNX file's activation ranges
    by ``onnx_method`` (``profilers.onnxruntime_runtime.CALIBRATIONS``: ``minmax`` or ``percentile``); LiteRT's
    quantizer and TensorRT keep their own methods. ``stem`` (``profilers.int8_stem.STEM_CHOICES``) says whether an
    int8 ONNX or TFLite file keeps the image stem in float: ``auto`` where its channels' ranges are uneven enough for
    one uint8 range to erase some. ``onnx_weight_bits`` (``profilers.onnxruntime_runtime.WEIGHT_BITS``) gives an int8
    ONNX file 7-bit weights where the target's kernels would saturate 8-bit ones (``auto``: this machine's)."""

    samples: int = 128
    onnx_method: str = "minmax"
    stem: str = "auto"
    onnx_weight_bits: str = "auto"


@dataclass
class Exported:
    """An exported file and a function running it on a batch-1 input (numpy in, logits out)."""

    path: Path
    run: Callable[[np.ndarray], np.ndarray]
    stem: StemDecision | None = None
    weight_bits: int | None = None


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, bundle: DataBundle, batches: int = 8, batch_size: int = 64) -> nn.Module:
    """Re-estimate BatchNorm statistics on training images (for exports without trained weights)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.train()
    for index, (images, _) in enumerate(bundle.loader("train", batch_size, shuffle=True)):
        if index >= batches:
            break
        model(images)
    for norm in norms:
        norm.momentum = 0.1
    return model.eval()


def _onnx(model: nn.Module, example: torch.Tensor, path: Path, precision: str, bundle: DataBundle | None,
          calibration: Calibration) -> Exported:
    import onnx

    from profilers.onnxruntime_runtime import quantize_onnx, weight_bits

    data, stem, bits = export_onnx(model, example), None, None
    if precision == "int8":
        images = _calibration_images(bundle, calibration.samples, "int8 export")
        stem = decide_stem(model, example, images, calibration.stem)
        bits = weight_bits(calibration.onnx_weight_bits, device_metadata())
        data = quantize_onnx(data, images, calibration.onnx_method, float_stem=stem.in_float, bits=bits)
    atomic_write_bytes(path, data)
    onnx.checker.check_model(str(path), full_check=True)
    return Exported(path, get_runtime("onnxruntime").infer(path), stem, bits)


def _calibration_images(bundle: DataBundle | None, samples: int, what: str) -> list[np.ndarray]:
    """Up to ``samples`` training images, one batch-1 array each, to calibrate an int8 model's ranges."""
    if bundle is None:
        raise ValueError(f"{what} needs calibration data: give the run's data (post-training quantization calibrates "
                         "on training images)")
    images, _ = bundle.tensors("train", samples)
    if len(images) == 0:
        raise ValueError("int8 quantization needs calibration images; the data set's train split is empty")
    return [images[i:i + 1].numpy() for i in range(len(images))]


def _tflite(model: nn.Module, example: torch.Tensor, path: Path, precision: str, bundle: DataBundle | None,
            calibration: Calibration) -> Exported:
    from profilers.litert_runtime import convert_tflite, float_layers, quantize_tflite

    data, stem = convert_tflite(model, example), None
    if precision == "int8":
        images = _calibration_images(bundle, calibration.samples, "int8 export")
        stem = decide_stem(model, example, images, calibration.stem)
        data = quantize_tflite(data, images, float_layers(model), stem.float_layers)
    atomic_write_bytes(path, data)
    return Exported(path, get_runtime("litert").infer(path), stem)


def _tensorrt(model: nn.Module, example: torch.Tensor, path: Path, precision: str, bundle: DataBundle | None,
              calibration: Calibration) -> Exported:
    from profilers.tensorrt_runtime import build_engine, engine_runner, import_tensorrt, int8_calibrator

    import_tensorrt()
    calibrator = None
    if precision == "int8":
        images = np.concatenate(_calibration_images(bundle, calibration.samples, "an int8 TensorRT engine"))
        calibrator = int8_calibrator(images, path.with_suffix(".calib"))
    atomic_write_bytes(path, build_engine(export_onnx(model, example), precision, calibrator))
    return Exported(path, engine_runner(path))


def export_file(model: nn.Module, space: SearchSpace, fmt: str, precision: str, out_dir: Path, stem: str,
                bundle: DataBundle | None, calibration: Calibration = Calibration()) -> Exported:
    """Write the model in ``fmt``/``precision`` (int8 calibrated on ``bundle``'s training images as ``calibration``
    says) and return a runner for parity checks."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if precision not in PRECISIONS[fmt]:
        raise ValueError(f"{fmt} export supports precision {', '.join(PRECISIONS[fmt])}, not {precision!r}")
    path = Path(out_dir) / f"{stem}_{precision}{FORMATS[fmt][1]}"
    example = space.example_input()
    model = model.eval()
    if fmt == "onnx":
        return _onnx(model, example, path, precision, bundle, calibration)
    if fmt == "tflite":
        return _tflite(model, example, path, precision, bundle, calibration)
    return _tensorrt(model, example, path, precision, bundle, calibration)


@torch.no_grad()
def parity(model: nn.Module, exported: Exported, bundle: DataBundle, split: str = "test",
           limit: int | None = None, target: Target | None = None) -> dict[str, Any]:
    """Max abs logit difference, top-1 agreement and both accuracies on real images of ``split``; agreement also
    apart on the images PyTorch classifies right and on those it gets wrong (None where there are none), since a
    lookalike that fp32 itself misreads is where rounding flips a prediction most easily.

    The exported file runs on ``target`` where it is another device that returns outputs (an agent: its own kernels
    decide the rounding), else here; ``run_on`` names where."""
    images, labels = bundle.tensors(split, limit)
    reference = model.eval()(images).numpy()
    exported_logits, run_on = None, "this machine"
    if target is not None and not isinstance(target, LocalTarget):
        exported_logits = target.outputs(exported.path, images.numpy())
        device = target.device()
        run_on = str(device.get("agent_url") or device.get("device_name")) if exported_logits is not None else (
            f"this machine ({device.get('device_name')} returns no outputs)")
    if exported_logits is None:
        exported_logits = np.concatenate([exported.run(images[i:i + 1].numpy()) for i in range(len(images))])
    ours, theirs = reference.argmax(1), exported_logits.argmax(1)
    agree, right = ours == theirs, ours == labels.numpy()
    return {
        "samples": int(len(images)), "split": split, "run_on": run_on,
        "max_abs_diff": float(np.abs(reference - exported_logits).max()),
        "top1_agreement": float(agree.mean()),
        "top1_agreement_where_torch_right": float(agree[right].mean()) if right.any() else None,
        "top1_agreement_where_torch_wrong": float(agree[~right].mean()) if (~right).any() else None,
        "accuracy_torch": float(right.mean()),
        "accuracy_exported": float((theirs == labels.numpy()).mean()),
    }


def measuring_runtime(fmt: str, precision: str, runtime: str | None = None) -> Runtime:
    """The runtime that measures a file of ``fmt`` and ``precision`` (1 thread): the format's own, or ``runtime``
    (``litert-builtin`` for a TFLite file run with LiteRT's built-in kernels)."""
    return get_runtime(runtime or FORMATS[fmt][0], 1, precision)


def measure_file(path: Path, target: Target, protocol: Protocol,
                 reference: tuple[SearchSpace, LatencyTable] | None = None) -> dict[str, Any]:
    """Latency of an exported file on ``target`` (``profilers.targets``: this machine, an agent or a phone), which
    measures with the file's runtime (``measuring_runtime``).

    With ``reference`` (the space and a latency table of the same runtime), three of the table's units are measured
    in the same interleaved pass: their ratio to the table is the pass's drift (``profilers.drift``); a perturbed
    pass is repeated after a pause and the least perturbed is kept. The drift is reported as ``machine_drift``; a
    table profiled on another kind of processor than the target's is named in ``table_from_other_machine`` (and
    logged), since its ratio is then the two machines' difference, not drift.
    """
    import tempfile

    from profilers import drift as drift_policy

    runtime, measuring = target.runtime, target
    files = {"model": Path(path)}
    table = (reference[1] if reference is not None and reference[1].metadata.get("runtime") == runtime.name
             and reference[1].metadata.get("precision", "fp32") == runtime.precision else None)
    with tempfile.TemporaryDirectory() as tmp:
        if table is not None:
            space = reference[0]
            units = sorted(space.all_units(), key=lambda u: -table.entry(u.key))[:3]
            refs = runtime.export({u.key: (space.build_unit(u), space.unit_input(u)) for u in units}, Path(tmp))
            files.update({key: ref.path for key, ref in refs.items()})

        def one_pass() -> tuple[LatencyStats, float | None]:
            stats = measuring.measure_files({k: ModelRef(p, "main") for k, p in files.items()}, protocol)
            units = [k for k in files if k != "model"]
            ratio = (drift_policy.drift([stats[k].get(protocol.statistic) for k in units],
                                        [table.entry(k) for k in units]) if table is not None else None)
            return stats["model"], ratio

        stats, ratios = drift_policy.measure_until_quiet(one_pass)
    drift = drift_policy.least_perturbed(ratios) if ratios else None
    device = measuring.device()
    other_machine = table.machine_warning(device) if table is not None else None
    if other_machine:
        log.warning("%s", other_machine)
    return {"runtime": runtime.metadata(), "device": device, "statistic": protocol.statistic,
            "latency_ms": stats.to_dict(), "measured_ms": stats.get(protocol.statistic),
            "machine_drift": drift, "passes": max(len(ratios), 1), "table_from_other_machine": other_machine}
