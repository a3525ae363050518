"""Benchmark: int8 on trained children: top-1 agreement with PyTorch and int8/fp32 latency, ONNX Runtime and LiteRT.

Takes children the ranking ground truth trained stand-alone (``ground_truth.py``: ``mbconv-tiny-64`` on ``glyphs``,
weights kept in its ``--work`` folder), one per MACs band where there is one, and ships each as ``hwnas export``
does: fp32 and int8 ONNX and TFLite, int8 calibrated on 128 training images with the project's recipes. Agreement,
both accuracies and the largest logit difference are on the glyphs' test split (2,976 images); latency is measured
for every file in one interleaved pass per runtime (1 thread, batch 1, p10; run it alone).

    python benchmarks/int8_trained.py --children 5

With ``--int8-finetune STEPS`` the int8 files are made from weights fine-tuned for int8 first (``hwnas export
--int8-finetune``, but kept even where the export would keep the original) and agreement is against the original
network; ``--no-latency`` leaves the latency out (the files' graphs are the same as without fine-tuning), so it can
run beside other work.

    python benchmarks/int8_trained.py --children 5 --int8-finetune 500 --no-latency --name glyphs_children_finetuned
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from _common import RESULTS, print_table, write_result
from int8_kernels import measure_cases
from ranking import child_name, space_for

from hwnas.ship.export import Calibration
from profilers.int8_stem import STEM_CHOICES
from profilers.onnxruntime_runtime import CALIBRATIONS

ROOT = Path(__file__).resolve().parent.parent
FORMATS = (("onnx", "onnxruntime"), ("tflite", "litert"))


def trained_children(truth: dict[str, Any], work: Path, count: int, seed: int = 0) -> list[tuple[dict[str, Any], Path]]:
    """Up to ``count`` (architecture record, weights file) pairs of children of training seed ``seed`` whose weights
    are in ``work``, taken band by band (the smallest band first) so that sizes spread."""
    recipe = truth["recipe"]
    found: dict[int, list[tuple[dict[str, Any], Path]]] = {}
    for record in truth["archs"]:
        name = child_name(record["arch"], seed, recipe["epochs"], recipe["augment"], recipe["augment_strength"],
                          recipe["grad_clip"])
        weights = work / "children" / f"{name}_weights.pt"
        if weights.exists():
            found.setdefault(record["band"], []).append((record, weights))
    picked: list[tuple[dict[str, Any], Path]] = []
    while len(picked) < count and any(found.values()):
        for band in sorted(found):
            if found[band] and len(picked) < count:
                picked.append(found[band].pop(0))
    return picked


def agreement(model: torch.nn.Module, space: Any, bundle: Any, int8_model: torch.nn.Module | None = None,
              calibration: Calibration | None = None) -> dict[str, dict[str, Any]]:
    """Parity with PyTorch of the fp32 and int8 files of both formats, written as ``hwnas export`` writes them (the
    int8 files from ``int8_model`` when given, calibrated as ``calibration`` says, with their stem decision and an
    int8 ONNX file's weight bits; parity is always against ``model``)."""
    from hwnas.ship.export import export_file, parity

    calibration, out = calibration or Calibration(), {}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, _ in FORMATS:
            for precision in ("fp32", "int8"):
                source = int8_model if precision == "int8" and int8_model is not None else model
                exported = export_file(source, space, fmt, precision, Path(tmp), "child", bundle, calibration)
                out[f"{fmt} {precision}"] = parity(model, exported, bundle) | (
                    {"int8_stem": exported.stem.to_dict()} if exported.stem else {}) | (
                    {"int8_weight_bits": exported.weight_bits} if exported.weight_bits else {})
    return out


def parse_arguments() -> tuple[argparse.Namespace, dict[str, Any], list[tuple[dict[str, Any], Path]]]:
    """The command line, checked before any work (exit 2 with what is accepted): the options, the ground truth and
    the trained children to ship."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--truth", type=Path, default=RESULTS / "ground_truth" / "glyphs.json")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-ground-truth",
                        help="the ground truth's --work folder (its children's weights)")
    parser.add_argument("--children", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="take the children of this training seed")
    parser.add_argument("--name", default="glyphs_children")
    parser.add_argument("--int8-finetune", type=int, default=0, metavar="STEPS",
                        help="fine-tune the int8 files' weights for int8 first (0: post-training only)")
    parser.add_argument("--no-latency", action="store_true", help="agreement only")
    parser.add_argument("--onnx-calibration", choices=tuple(CALIBRATIONS), default="minmax",
                        help="how the int8 ONNX files' activation ranges are calibrated (hwnas export "
                             "--int8-calibration)")
    parser.add_argument("--int8-stem", choices=tuple(STEM_CHOICES), default="auto",
                        help="whether the int8 files keep the image stem in float (hwnas export --int8-stem)")
    args = parser.parse_args()
    if not args.truth.exists():
        parser.error(f"--truth {args.truth} does not exist; make one with benchmarks/ground_truth.py")
    if args.children < 1 or args.seed < 0:
        parser.error("--children must be >= 1 and --seed >= 0")
    if args.int8_finetune < 0:
        parser.error("--int8-finetune must be >= 0 steps")
    truth = json.loads(args.truth.read_text())
    children = trained_children(truth, args.work, args.children, args.seed)
    if not children:
        parser.error(f"no trained children of seed {args.seed} with weights in {args.work}/children; run "
                     "benchmarks/ground_truth.py first")
    return args, truth, children


def ship_children(children: list[tuple[dict[str, Any], Path]], space: Any, bundle: Any, finetune_steps: int,
                  calibration: Calibration | None = None
                  ) -> tuple[dict[str, dict[str, Any]], dict[str, tuple[torch.nn.Module, torch.Tensor]]]:
    """Every child exported fp32 and int8 in both formats (int8 from weights fine-tuned for int8 first when
    ``finetune_steps``; int8 calibrated as ``calibration`` says), with its parity, by label; and the networks to
    time, by the same labels."""
    from hwnas.devices import load_checkpoint
    from hwnas.ship.int8_finetune import Int8Finetune, finetune_for_int8

    results, cases = {}, {}
    for record, weights in children:
        model = space.build(space.parse(record["arch"]))
        model.load_state_dict(load_checkpoint(weights))
        model.eval()
        label = f"band {record['band']}, {record['macs'] / 1e6:.1f} M MACs"
        label += f" ({sum(k.startswith(label) for k in results) + 1})" if label in results else ""  # two alike
        tuned, finetune = (finetune_for_int8(model, bundle, Int8Finetune(steps=finetune_steps, always_keep=True))
                           if finetune_steps else (None, None))
        results[label] = {"arch": record["arch"], "macs": record["macs"], "int8_finetune": finetune,
                          "parity": agreement(model, space, bundle, tuned, calibration)}
        cases[label] = (model, space.example_input())
        print(f"{label}: " + ", ".join(f"{k} {100 * v['top1_agreement']:.2f}%" for k, v in results[label]["parity"]
                                       .items() if "int8" in k), flush=True)
    return results, cases


def print_children(results: dict[str, dict[str, Any]], latency: dict[str, dict[str, float]]) -> None:
    """Per child and format: int8's top-1 agreement, its accuracy change and (when measured) int8/fp32 latency."""
    rows = []
    for label, result in results.items():
        row = [label]
        for fmt, runtime in FORMATS:
            p = result["parity"][f"{fmt} int8"]
            ratio = (f"{latency[label][f'{runtime} int8'] / latency[label][f'{runtime} fp32']:.2f}x" if latency
                     else "-")
            row += [f"{100 * p['top1_agreement']:.2f}% ({100 * p['top1_agreement_where_torch_right']:.2f}%)",
                    f"{100 * (p['accuracy_exported'] - p['accuracy_torch']):+.2f}", ratio]
        rows.append(row)
    print_table(rows, ["child", "ONNX int8 agree (fp32 right)", "acc change pts", "int8/fp32",
                       "TFLite int8 agree (fp32 right)", "acc change pts", "int8/fp32"])


def main() -> None:
    args, truth, children = parse_arguments()
    from hwnas.data import load_data
    from profilers import Protocol, get_runtime
    from search_spaces import get_space

    torch.set_num_threads(1)
    space = get_space(space_for(truth["data"]))
    bundle = load_data(truth["data"], space.resolution)
    results, cases = ship_children(children, space, bundle, args.int8_finetune,
                                   Calibration(onnx_method=args.onnx_calibration, stem=args.int8_stem))
    latency = {} if args.no_latency else measure_cases(cases, Protocol(min_span_s=2.0))
    for label, result in results.items():
        result["latency_ms"] = latency.get(label)
    print_children(results, latency)
    agreements = [r["parity"][f"{fmt} int8"]["top1_agreement"] for r in results.values() for fmt, _ in FORMATS]
    write_result("int8_trained", args.name, {
        "children": results, "space": space.name, "data": truth["data"], "threads": 1, "batch": 1,
        "protocol": None if args.no_latency else Protocol(min_span_s=2.0).to_dict(), "calibration_images": 128,
        "int8_finetune_steps": args.int8_finetune, "training_seed": args.seed,
        "onnx_calibration": args.onnx_calibration, "int8_stem": args.int8_stem,
        "quantization": {runtime: get_runtime(runtime, 1, "int8").quantization for _, runtime in FORMATS},
        "targets": {"int8_top1_agreement>=98%": min(agreements) >= 0.98},
    })


if __name__ == "__main__":
    main()
