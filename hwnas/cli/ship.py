"""``hwnas train`` and ``hwnas export``: train the searched child, then ship it with parity and latency checked."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from hwnas.cli._args import at_least, check_output_folder, positive_float, target
from hwnas.cli._output import emit, table
from hwnas.cli._recipe import add_device_argument, add_recipe_arguments, recipe_settings
from hwnas.run import open_run
from hwnas.training import TrainConfig
from profilers import Protocol
from profilers.int8_stem import STEM_CHOICES
from profilers.onnxruntime_runtime import CALIBRATIONS, WEIGHT_BITS


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``train`` and ``export`` to the CLI."""
    train = commands.add_parser("train", help="train a searched child stand-alone on the run's data")
    train.add_argument("--run", required=True, help="run name or path")
    train.add_argument("--arch", required=True, help="architecture string")
    train.add_argument("--epochs", type=at_least(1), default=30)
    train.add_argument("--lr", type=positive_float, default=3e-3)
    train.add_argument("--batch-size", type=at_least(1), default=64)
    train.add_argument("--distill", action="store_true", help="knowledge distillation from the run's teacher")
    train.add_argument("--init-supernet", action="store_true", help="start from the supernet's layer weights")
    train.add_argument("--seed", type=int, default=0)
    add_recipe_arguments(train)
    add_device_argument(train)
    train.add_argument("--json", action="store_true", help="machine-readable output")
    train.set_defaults(handler=run_train)

    export = commands.add_parser("export", help="export to ONNX / TFLite / TensorRT, check parity, measure")
    export.add_argument("--run", required=True, help="run name or path")
    export.add_argument("--arch", required=True, help="architecture string")
    export.add_argument("--weights", type=Path, default=None,
                        help="weights from 'hwnas train' (default: random init with BatchNorm re-estimated on data)")
    export.add_argument("--format", action="append", required=True, choices=("onnx", "tflite", "tensorrt"),
                        help="repeat for several formats")
    export.add_argument("--precision", default="fp32",
                        help="fp32 (default), fp16 (tensorrt) or int8 (onnx, tflite, tensorrt; measured beside fp32)")
    export.add_argument("--out", type=Path, required=True, help="output folder")
    export.add_argument("--table", type=Path, action="append", default=None,
                        help="latency table(s); each format is predicted from its runtime's (repeatable)")
    export.add_argument("--budget-ms", type=positive_float, default=None, help="report whether the budget holds")
    export.add_argument("--budget-runtime", default=None, choices=("onnxruntime", "litert", "litert-builtin", "tensorrt"),
                        help="check --budget-ms only on the formats of this runtime (the one the search's table "
                             "measured); default: every format")
    export.add_argument("--budget-precision", default=None, choices=("fp32", "fp16", "int8"),
                        help="check --budget-ms only on the files of this precision (the search's table's); default: "
                             "every precision")
    export.add_argument("--target", default=None, type=target,
                        help="where to measure: http://HOST:PORT (an 'hwnas agent serve', which also computes the "
                             "outputs parity is checked on), adb:SERIAL (a phone; TFLite files), or this machine "
                             "(default)")
    export.add_argument("--token", default=os.environ.get("HWNAS_AGENT_TOKEN"), help="agent token")
    export.add_argument("--int8-finetune", type=at_least(1), default=None, metavar="STEPS",
                        help="fine-tune the int8 files' weights through simulated int8 for STEPS steps first (about "
                             "500; agreement with the original network rises)")
    export.add_argument("--int8-calibration", choices=tuple(CALIBRATIONS), default="minmax",
                        help="how an int8 ONNX file's activation ranges are calibrated: minmax (default) or "
                             "percentile (99.99th, outliers clipped: higher agreement on trained glyphs children); "
                             "TFLite and TensorRT keep their quantizers' own")
    export.add_argument("--int8-stem", choices=tuple(STEM_CHOICES), default="auto",
                        help="keep an int8 ONNX or TFLite file's image stem in float: auto (default: only where its "
                             "channels' ranges are so uneven that int8 would erase some), float (agreement first), "
                             "int8 (speed first)")
    export.add_argument("--int8-weight-bits", choices=tuple(WEIGHT_BITS), default="auto",
                        help="an int8 ONNX file's weight bits: auto (default: 7 where the target is an x86 CPU without "
                             "VNNI, whose ONNX Runtime kernels saturate on 8-bit weights; else 8), 8 or 7")
    export.add_argument("--no-measure", action="store_true", help="skip the latency measurement")
    export.add_argument("--quick", action="store_true", help="short, noisier measurement protocol")
    export.add_argument("--json", action="store_true", help="machine-readable output")
    export.set_defaults(handler=run_export)


def run_train(args: argparse.Namespace) -> int:
    """Train one child."""
    from hwnas.ship.child import train_child

    run = open_run(args.run)
    config = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                         distill_weight=0.5 if args.distill else 0.0, seed=args.seed, **recipe_settings(args))
    result = train_child(run, args.arch, config, distill=args.distill, init_supernet=args.init_supernet,
                         device=args.device)
    emit(result, args.json, f"test accuracy {result['test_accuracy']:.4f}; weights {result['weights']}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Export, check and measure."""
    from hwnas.ship.child import ExportSettings, export_child
    from hwnas.ship.export import Calibration
    from hwnas.ship.int8_finetune import Int8Finetune

    check_output_folder(args.out, "--out")
    run = open_run(args.run)
    settings = ExportSettings(tables=tuple(args.table or ()), budget_ms=args.budget_ms,
                              budget_runtime=args.budget_runtime, budget_precision=args.budget_precision,
                              target=args.target, token=args.token,
                              protocol=Protocol.quick() if args.quick else Protocol(), measure=not args.no_measure,
                              int8_finetune=Int8Finetune(steps=args.int8_finetune) if args.int8_finetune else None,
                              calibration=Calibration(onnx_method=args.int8_calibration, stem=args.int8_stem,
                                                      onnx_weight_bits=args.int8_weight_bits))
    report = export_child(run, args.arch, [(f, args.precision) for f in args.format], args.out, args.weights, settings)
    rows = [[e.format, e.precision, f"{e.parity['max_abs_diff']:.2e}", f"{100 * e.parity['top1_agreement']:.1f}%",
             f"{e.accuracy_change:+.4f}", f"{e.measured_ms:.3f}" if e.measured_ms is not None else "-",
             f"{e.predicted_ms:.3f}" if e.predicted_ms is not None else "-",
             f"{e.vs_fp32:.2f}x" if e.vs_fp32 is not None else "-",
             ", ".join(f"{k} {v:.3f}" for k, v in e.other_kernels.items()) or "-"] for e in report.exports]
    text = table(rows, ["format", "precision", "max abs diff", "top-1 agree", "acc change", "measured ms",
                        "predicted ms", "vs fp32", "other kernels (ms)"])
    emit(report.to_dict(), args.json, f"{text}\nreport: {report.report_files[1]}")
    return 0
