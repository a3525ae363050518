"""Benchmark: int8 ONNX files with 8-bit and with 7-bit weights on trained children, on this machine's ONNX Runtime.

``--children`` sampled architectures of ``--space`` are trained stand-alone on ``--data`` (``--epochs``, seed 0; kept
in ``--work``, so a rerun only measures) and each is exported to int8 ONNX twice, with 8-bit and with 7-bit weights.
Per file: top-1 agreement with PyTorch and accuracy on the test split, and how far ONNX Runtime's fused int8 graph
is from the same file run op by op in float (``ORT_DISABLE_ALL``: exactly what the file says) on 64 test images
(``fused_against_file``; "parted": the share of images where they differ by over 1% of the largest output).
Where ONNX Runtime's uint8 x int8 kernels saturate (x86 without VNNI: ``profilers.onnxruntime_runtime.
u8s8_saturates``), 8-bit files part from themselves and lose agreement.

    python benchmarks/int8_weight_bits.py --work runs/int8_weight_bits --name NAME     # about 5 minutes
"""

from __future__ import annotations

import argparse
import random
import statistics
from pathlib import Path
from typing import Any

import numpy as np
from _common import print_table, write_result

from hwnas.data import load_data
from hwnas.run import create_or_open_run
from hwnas.ship.child import load_child, train_child
from hwnas.ship.export import Calibration, export_file, parity
from hwnas.training import TrainConfig
from profilers.machine import device_metadata
from profilers.onnxruntime_runtime import u8s8_saturates


def fused_against_file(path: Path, images: np.ndarray) -> dict[str, float]:
    """How far the fused graph's outputs are from the op-by-op ones on ``images``: per image the largest |fused - op
    by op| as a share of the op-by-op output's largest magnitude; the median over images, and the share of images
    where it exceeds 1% (a few exceed it without saturation: a float sum landing on the other side of a rounding
    boundary changes one uint8 step, which later layers carry on)."""
    import onnxruntime as ort

    sessions = []
    for level in (ort.GraphOptimizationLevel.ORT_ENABLE_ALL, ort.GraphOptimizationLevel.ORT_DISABLE_ALL):
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.graph_optimization_level = 1, level
        sessions.append(ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]))
    name = sessions[0].get_inputs()[0].name
    parts = []
    for image in images:
        fused, reference = (s.run(None, {name: image[None]})[0] for s in sessions)
        parts.append(float(np.abs(fused - reference).max() / np.abs(reference).max()))
    return {"median": float(np.median(parts)), "share_over_1pct": float(np.mean(np.array(parts) > 0.01))}


def measure_child(run: Any, arch: Any, args: argparse.Namespace, bundle: Any) -> dict[str, Any]:
    """Train (or read) one child and measure its two int8 ONNX files."""
    trained = train_child(run, str(arch), TrainConfig(epochs=args.epochs, seed=0), show_progress=False)
    model, _ = load_child(run, arch, Path(trained["weights"]))
    images = bundle.tensors("test", 64)[0].numpy()
    row: dict[str, Any] = {"arch": str(arch), "test_accuracy": float(trained["test_accuracy"])}
    for bits in ("8", "7"):
        folder = args.work / "files" / str(arch).replace("|", "_").replace(":", "-").replace(",", "+")
        exported = export_file(model, run.space, "onnx", "int8", folder, f"w{bits}", bundle,
                               Calibration(onnx_weight_bits=bits))
        checked = parity(model, exported, bundle)
        row[f"{bits}_bit"] = {"top1_agreement": checked["top1_agreement"],
                              "accuracy_exported": checked["accuracy_exported"],
                              "fused_vs_file": fused_against_file(exported.path, images)}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="run and children (kept: a rerun only measures)")
    parser.add_argument("--space", default="mbconv-tiny")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--children", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--name", default="digits")
    args = parser.parse_args()
    if args.children < 1 or args.epochs < 1:
        parser.error(f"--children and --epochs must be >= 1, got {args.children} and {args.epochs}")
    run = create_or_open_run(args.work / "run", args.space, args.data)
    bundle = load_data(args.data, run.space.resolution)
    rng = random.Random(7)
    rows = [measure_child(run, run.space.sample(rng), args, bundle) for _ in range(args.children)]
    print_table([[r["arch"], f"{100 * r['test_accuracy']:.2f}"]
                 + [f"{100 * r[b]['top1_agreement']:.1f} / {100 * r[b]['fused_vs_file']['share_over_1pct']:.0f}%"
                    for b in ("8_bit", "7_bit")] for r in rows],
                ["child", "fp32 acc %", "8-bit: agree % / parted", "7-bit: agree % / parted"])
    device = device_metadata()
    write_result("int8_weight_bits", args.name, {
        "space": args.space, "data": args.data, "epochs": args.epochs, "u8s8_saturates": u8s8_saturates(device),
        "children": rows, "mean_top1_agreement": {b: statistics.fmean(r[b]["top1_agreement"] for r in rows)
                                                  for b in ("8_bit", "7_bit")}})


if __name__ == "__main__":
    main()
