"""``hwnas demo``: the main job on the embedded default, stage by stage, resumable from its run directory.

Stages so far: profile this machine (ONNX Runtime, 1 thread, the tiny MBConv space) with calibration and a
held-out validation, then write a report (Markdown with the predicted-vs-measured plot, and report.json).
Supernet distillation, search and export join as they land (issues 4-7).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from profilers import Protocol, get_runtime
from profilers._files import atomic_write_bytes, atomic_write_json
from profilers.profile import profile_space
from profilers.table import LatencyTable
from search_spaces import get_space

DEMO_SPACE = "mbconv-tiny"


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``demo`` to the CLI."""
    demo = commands.add_parser("demo", help="run the end-to-end demo on the embedded default", description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="run directory (default runs/demo)")
    demo.add_argument("--json", action="store_true", help="print report.json instead of the summary")
    demo.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """Run (or resume) every stage, then write the report."""
    run = Path(args.out)
    run.mkdir(parents=True, exist_ok=True)
    space = get_space(DEMO_SPACE)
    runtime = get_runtime("onnxruntime", threads=1)
    table_path = run / "latency_table.json"
    started = time.perf_counter()
    if table_path.exists():
        print(f"[1/2] latency table already in {table_path}; reusing it")
    else:
        print(f"[1/2] profiling {space.name} on this machine: {runtime.name} {runtime.version()}, 1 thread")
        protocol = Protocol(min_rounds=3, max_rounds=6, round_budget_s=0.1)
        profile_space(space, runtime, table_path, protocol, calibrate=10, validate=20, jobs=1)
    table = LatencyTable.load(table_path, space)
    print("[2/2] writing the report")
    report = _report(table, table_path, time.perf_counter() - started)
    atomic_write_json(run / "report.json", report)
    atomic_write_bytes(run / "report.md", _markdown(report).encode())
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        v = report["latency_predictor"]
        print(f"report: {run / 'report.md'}\n  predictor on {v['n']} held-out networks: mean abs error "
              f"{v['mean_abs_pct_error']:.1f}% (re-measure spread {v['remeasure_mean_abs_pct']:.1f}%), within 10%: "
              f"{100 * v['within_10pct']:.0f}%, Kendall tau {v['kendall_tau']:.2f}")
    return 0


def _report(table: LatencyTable, table_path: Path, wall_s: float) -> dict[str, object]:
    meta = table.metadata
    return {
        "space": meta["space"],
        "device": {k: meta[k] for k in ("device_name", "cpu_model", "os", "logical_cores")},
        "runtime": {k: meta[k] for k in ("runtime", "runtime_version", "accelerator", "threads", "precision", "batch",
                                         "input_shape", "statistic")},
        "latency_table": str(table_path),
        "units": len(table.units),
        "calibration": {k: table.calibration[k] for k in ("intercept", "slope", "n")} if table.calibration else None,
        "latency_predictor": {k: v for k, v in (table.validation or {}).items() if not isinstance(v, list)},
        "validation_plot": str(table_path.with_suffix(".validation.png").name),
        "stages_not_yet_built": ["teacher training", "supernet distillation and rating", "search", "export"],
        "wall_s": round(wall_s, 1),
    }


def _markdown(report: dict[str, object]) -> str:
    v = report["latency_predictor"]
    runtime = report["runtime"]
    device = report["device"]
    return "\n".join([
        f"# hwnas demo report: {report['space']}",
        "",
        f"Device: {device['device_name']} ({device['cpu_model']}, {device['logical_cores']} logical cores), "
        f"{device['os']}.",
        f"Runtime: {runtime['runtime']} {runtime['runtime_version']} ({runtime['accelerator']}), "
        f"{runtime['threads']} thread, {runtime['precision']}, batch {runtime['batch']}, input {runtime['input_shape']};"
        f" statistic {runtime['statistic']}.",
        "",
        "## Latency table and predictor",
        f"{report['units']} latency units measured into `{report['latency_table']}`.",
        "",
        "| held-out networks | mean abs error | within 5% | within 10% | Kendall tau | re-measure spread |",
        "|---|---|---|---|---|---|",
        f"| {v['n']} | {v['mean_abs_pct_error']:.2f}% | {100 * v['within_5pct']:.0f}% | {100 * v['within_10pct']:.0f}% "
        f"| {v['kendall_tau']:.3f} | {v['remeasure_mean_abs_pct']:.2f}% |",
        "",
        f"![predicted vs measured]({report['validation_plot']})",
        "",
        f"Stages not built yet: {', '.join(report['stages_not_yet_built'])}.",
        f"Wall time: {report['wall_s']} s.",
        "",
    ])
