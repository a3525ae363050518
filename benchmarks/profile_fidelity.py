"""Benchmark: whole-space profiling time and latency-prediction fidelity on >= 50 held-out networks.

For each runtime: profile every unit of the space (wall time), fit the calibration on N networks measured end to
end, then predict and measure M held-out networks twice (independent measurements) and report the predictor's error
next to the re-measure spread. Writes the table to latency_tables/ and the numbers to benchmarks/results/profile_fidelity/.

    python benchmarks/profile_fidelity.py --space mbconv --runtime onnxruntime --calibrate 20 --validate 50
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

from _common import ROOT, result_path, write_result

from profilers import Protocol, get_runtime
from profilers.machine import describe_processor
from profilers.predictor import plot_validation
from profilers.profile import calibrate_table, profile_space, refit_calibration
from profilers.table import LatencyTable
from profilers.targets import LocalTarget
from search_spaces import get_space


def parse_arguments() -> argparse.Namespace:
    """The command line, checked before any work (a bad argument exits 2 with what is accepted)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="mbconv")
    parser.add_argument("--runtime", default="onnxruntime")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--precision", default="fp32", help="fp32 (default), or int8 where the runtime has it")
    parser.add_argument("--calibrate", type=int, default=20)
    parser.add_argument("--validate", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--table", type=Path, default=None, help="reuse this table's units (skip profiling)")
    parser.add_argument("--report-only", action="store_true",
                        help="with --table: report the table's stored calibration and validation, measure nothing")
    parser.add_argument("--refit", action="store_true",
                        help="with --table: refit the calibration (per-layer term) on the networks the table already "
                             "measured and re-predict its stored held-out measurements; measure nothing")
    parser.add_argument("--name", default=None,
                        help="name of the table and the result (default SPACE-RESOLUTION_RUNTIME-cpu_THREADSt, and "
                             "_PRECISION when not fp32); tables are per machine: name another machine's apart")
    args = parser.parse_args()
    if args.name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", args.name):
        parser.error(f"--name {args.name!r}: a file name of letters, digits, '.', '-' and '_', not a path")
    if (args.report_only or args.refit) and args.table is None:
        parser.error("--report-only and --refit read an existing table: pass it with --table")
    if args.table is not None and not args.table.is_file():
        parser.error(f"no latency table at {args.table}")
    if args.calibrate < 4 or args.validate < 2 or args.jobs < 1:
        parser.error(f"needs --calibrate >= 4 networks to fit, --validate >= 2 and --jobs >= 1, got "
                     f"{args.calibrate}, {args.validate} and {args.jobs}")
    return args


def fidelity(args: argparse.Namespace, space: Any, runtime: Any, out: Path
             ) -> tuple[LatencyTable, Path, float | None, float | None]:
    """Profile the space (unless ``--table``), then fit and validate the predictor on networks measured end to end
    (or refit it on the table's stored measurements, or neither with ``--report-only``); the table, where it is, and
    the profiling and the fitting's wall seconds (None when not done now)."""
    protocol = Protocol()
    profile_s = fidelity_s = None
    if args.table is None:
        start = time.perf_counter()
        profile_space(space, runtime, out, protocol, jobs=args.jobs)
        profile_s = time.perf_counter() - start
    else:
        out = args.table.resolve()
    table = LatencyTable.load(out, space)
    if args.refit:
        refit_calibration(table, space)
    elif not args.report_only:
        start = time.perf_counter()
        work = out.parent / f"{out.name}.bench"
        calibrate_table(table, space, LocalTarget(runtime), protocol, work, None, args.calibrate, args.validate,
                        jobs=args.jobs)
        shutil.rmtree(work, ignore_errors=True)
        fidelity_s = time.perf_counter() - start
    if not args.report_only:
        table.save(out)
        plot_validation(table.validation, f"{space.name} on {runtime.name}, {runtime.threads} thread",
                        out.with_suffix(".validation.png"))
    return table, out, profile_s, fidelity_s


def print_fidelity(space: Any, runtime: Any, table: LatencyTable, report: dict[str, Any], profile_s: float | None
                   ) -> None:
    """The fidelity numbers, with what measured them."""
    rows = [
        ("units profiled", len(table.units)),
        ("profile wall time (s)", "reused" if profile_s is None else f"{profile_s:.0f}"),
        ("held-out networks", report["n"]),
        ("mean abs % error", f"{report['mean_abs_pct_error']:.2f}"),
        ("within +-5%", f"{100 * report['within_5pct']:.0f}%"),
        ("within +-10%", f"{100 * report['within_10pct']:.0f}%"),
        ("Kendall tau", f"{report['kendall_tau']:.3f}"),
        ("re-measure mean abs %", f"{report['remeasure_mean_abs_pct']:.2f}"),
    ]
    print(f"\n{space.name} @ {space.resolution}px, {runtime.name} {runtime.version()}, {runtime.threads} thread, "
          f"{describe_processor(table.metadata)}")
    for label, value in rows:
        print(f"  {label:<24} {value}")


def main() -> None:
    args = parse_arguments()
    space = get_space(args.space)
    runtime = get_runtime(args.runtime, args.threads, args.precision)
    name = args.name or (f"{space.name}-{space.resolution}_{runtime.name}-cpu_{runtime.threads}t"
                         + ("" if args.precision == "fp32" else f"_{args.precision}"))
    table, out, profile_s, fidelity_s = fidelity(args, space, runtime, ROOT / "latency_tables" / f"{name}.json")
    shown = str(out.relative_to(ROOT)) if out.is_relative_to(ROOT) else str(out)
    path = result_path("profile_fidelity", f"profile_fidelity_{name}")
    earlier = json.loads(path.read_text()) if args.table is not None and path.exists() else {}
    if earlier.get("table") == shown:  # the same table, not profiled now: keep the wall times of the run that did
        profile_s = earlier.get("profile_wall_s")
        if fidelity_s is None:
            fidelity_s = earlier.get("calibrate_and_validate_wall_s")
    report = {k: v for k, v in table.validation.items() if not isinstance(v, list)}
    print_fidelity(space, runtime, table, report, profile_s)
    write_result("profile_fidelity", f"profile_fidelity_{name}", {
        "space": space.name,
        "table": shown, "runtime": runtime.metadata(),
        "device": {k: table.metadata.get(k) for k in ("device_name", "cpu_model", "cpu_id", "cpu_features", "os")},
        "units": len(table.units), "profile_wall_s": profile_s, "calibrate_and_validate_wall_s": fidelity_s,
        "calibration": {k: table.calibration.get(k) for k in ("kind", "intercept", "slope", "per_layer", "n")},
        "validation": report, "refit_from_stored_measurements": args.refit,
        "targets": {"within_10pct>=0.95": report["within_10pct"] >= 0.95, "kendall_tau>=0.9": report["kendall_tau"] >= 0.9,
                    "error<=remeasure_spread": report["mean_abs_pct_error"] <= report["remeasure_mean_abs_pct"],
                    "profile<=300s": profile_s is None or profile_s <= 300},
    })


if __name__ == "__main__":
    main()
