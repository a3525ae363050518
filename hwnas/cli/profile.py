"""``hwnas profile``, ``hwnas measure``, ``hwnas predict``: latency tables, end-to-end measurement, prediction."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from hwnas.cli._args import at_least, check_output_file, target
from hwnas.cli._output import emit, table
from profilers import Protocol, get_runtime, list_runtimes
from profilers.predictor import LatencyPredictor
from profilers.profile import profile_space
from profilers.table import LatencyTable
from profilers.targets import open_target
from search_spaces import get_space


def _add_runtime_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--space", required=True, help="search space (see 'hwnas space list')")
    parser.add_argument("--runtime", default="onnxruntime", choices=list_runtimes(), help="runtime to measure")
    parser.add_argument("--threads", type=at_least(1), default=1, help="runtime threads (default 1)")
    parser.add_argument("--precision", default="fp32", help="fp32 (default), fp16 or int8 where the runtime has it")
    parser.add_argument("--target", default=None, type=target,
                        help="URL of an 'hwnas agent serve', or adb:SERIAL for an Android phone "
                        "timed by TFLite's benchmark_model (default: this machine)")
    parser.add_argument("--token", default=os.environ.get("HWNAS_AGENT_TOKEN"),
                        help="agent token (default: $HWNAS_AGENT_TOKEN)")
    parser.add_argument("--quick", action="store_true", help="short, noisier protocol (smoke tests)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``profile``, ``measure`` and ``predict`` to the CLI."""
    profile = commands.add_parser("profile", help="measure every latency unit of a space into a table",
                                  description=profile_space.__doc__)
    _add_runtime_options(profile)
    profile.add_argument("--out", required=True, type=Path, help="latency table to write (JSON)")
    profile.add_argument("--calibrate", type=at_least(0), default=0, metavar="N",
                         help="fit the calibration on N random networks measured end to end")
    profile.add_argument("--validate", type=at_least(0), default=0, metavar="M",
                         help="report the predictor's error on M held-out networks, each measured twice")
    profile.add_argument("--jobs", type=at_least(1), default=min(2, os.cpu_count() or 1),
                         help="parallel model conversions before measuring (default: up to 2)")
    profile.add_argument("--device-name", default=None, help="name recorded for the device (default: host name)")
    profile.add_argument("--seed", type=int, default=0, help="seed of the calibration/validation networks")
    profile.set_defaults(handler=run_profile)

    measure = commands.add_parser("measure", help="measure one whole architecture end to end")
    _add_runtime_options(measure)
    measure.add_argument("--arch", required=True, help="architecture string")
    measure.set_defaults(handler=run_measure)

    predict = commands.add_parser("predict", help="predict an architecture's latency from a table")
    predict.add_argument("--table", required=True, type=Path, help="latency table (JSON)")
    predict.add_argument("--arch", required=True, help="architecture string")
    predict.add_argument("--json", action="store_true", help="machine-readable output")
    predict.set_defaults(handler=run_predict)


def _protocol(args: argparse.Namespace) -> Protocol:
    return Protocol.quick() if args.quick else Protocol()


def run_profile(args: argparse.Namespace) -> int:
    """Profile a space and print a summary of the table."""
    check_output_file(args.out, "--out")
    space = get_space(args.space)
    runtime = get_runtime(args.runtime, args.threads, args.precision)
    open_target(runtime, args.target, args.token)  # a target that cannot measure fails before any unit is converted
    result = profile_space(
        space, runtime, args.out, _protocol(args), target_url=args.target, token=args.token,
        calibrate=args.calibrate, validate=args.validate, jobs=args.jobs, device_name=args.device_name,
        seed=args.seed,
    )
    summary = {"table": str(args.out), "units": len(result.units), "metadata": result.metadata,
               "calibration": result.calibration and {k: result.calibration.get(k)
                                                      for k in ("kind", "intercept", "slope", "per_layer", "n")},
               "validation": result.validation and {k: v for k, v in result.validation.items()
                                                     if not isinstance(v, list)}}
    lines = [f"wrote {args.out}: {len(result.units)} units of {space.name} on {runtime.name} "
             f"{runtime.version()} ({runtime.threads} thread(s), {runtime.precision})"]
    if result.validation:
        v = result.validation
        lines.append(f"held-out networks: {v['n']}, mean abs error {v['mean_abs_pct_error']:.1f}%, within 10% "
                     f"{100 * v['within_10pct']:.0f}%, Kendall tau {v['kendall_tau']:.2f}; re-measure spread "
                     f"{v['remeasure_mean_abs_pct']:.1f}%")
        if v.get("warning"):
            lines.append(f"warning: {v['warning']}")
    emit(summary, args.json, "\n".join(lines))
    return 0


def run_measure(args: argparse.Namespace) -> int:
    """Measure one architecture end to end under the protocol."""
    space = get_space(args.space)
    arch = space.parse(args.arch)
    runtime = get_runtime(args.runtime, args.threads, args.precision)
    target = open_target(runtime, args.target, args.token)
    protocol = _protocol(args)
    with tempfile.TemporaryDirectory() as tmp:
        items = {str(arch): (space.build(arch), space.example_input())}
        stats = target.measure_modules(items, protocol, Path(tmp))[str(arch)]
    payload = {"arch": str(arch), "space": space.name, "latency_ms": stats.to_dict(), "statistic": protocol.statistic,
               "runtime": runtime.metadata(), "device": target.device(), "batch": 1,
               "input_shape": [1, *space.input_shape]}
    text = table([[k, f"{v:.4f}" if isinstance(v, float) else v] for k, v in stats.to_dict().items()],
                 ["statistic", "ms"])
    emit(payload, args.json, f"{space.name} {arch} on {runtime.name} ({runtime.threads} thread(s))\n{text}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    """Predict latency from a table (calibrated when the table carries a calibration)."""
    latency_table = LatencyTable.load(args.table)
    space = get_space(str(latency_table.metadata.get("space")))
    latency_table.check_compatible(space)
    latency_table.check_complete(space)
    arch = space.parse(args.arch)
    predictor = LatencyPredictor(latency_table, space)
    payload = {"arch": str(arch), "space": space.name, "predicted_ms": predictor.predict(arch),
               "raw_sum_ms": predictor.raw(arch), "calibrated": bool(latency_table.calibration),
               "statistic": latency_table.statistic, "table": str(args.table),
               "validation": latency_table.validation and {k: v for k, v in latency_table.validation.items()
                                                            if not isinstance(v, list)}}
    emit(payload, args.json, f"{payload['predicted_ms']:.3f} ms predicted ({latency_table.statistic}, "
                             f"{'calibrated' if payload['calibrated'] else 'uncalibrated'}) for {arch}")
    return 0


