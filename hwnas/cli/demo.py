"""``hwnas demo``: the main job end to end on the embedded default, resumable from its run directory.

On this machine, with scikit-learn's digits and the tiny MBConv space: profile the CPU (ONNX Runtime, 1 thread) into
a calibrated latency table, train the teacher, distill and rate the block supernets, pick a budget inside the
table's range, search (exact combiner + a short Optuna refinement with real measurements), train the winner with
distillation, export it to ONNX and TFLite (fp32 and int8), measure the files, and write report.md (with the plots)
and report.json. Each stage keeps its state in the run directory: a rerun after a kill resumes.

``--ship FORMAT:PRECISION`` is the file the demo ships: it profiles that file's runtime at that precision, searches
on that table and checks the budget on that file (the other files are exported and measured beside it). The default
is ONNX fp32: on the demo's 32 px networks int8 is no faster than fp32 on this project's CPUs (the export measures
the ratio; ``benchmarks/docs/int8_kernels.md``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from hwnas.cli._recipe import add_device_argument
from hwnas.devices import resolve_device
from hwnas.run import create_or_open_run
from hwnas.supernet.distill import DistillConfig
from hwnas.supernet.seeds import describe
from hwnas.training import TrainConfig
from profilers import Protocol
from profilers.files import atomic_write_bytes, atomic_write_json, read_json
from profilers.machine import describe_processor

DEMO_SPACE = "mbconv-tiny"
# short batches and few rounds, but never shorter than Protocol.min_span_s (10 s): on a VM whose speed switches every
# few seconds, 3-6 rounds of the tiny space (about a second) saw one state only (re-measure spread 31-61% vs 2-3%)
PROFILE_PROTOCOL = Protocol(min_rounds=3, max_rounds=6, round_budget_s=0.1)
SEARCH_PROTOCOL = Protocol(min_rounds=3, max_rounds=5, round_budget_s=0.05)
TEACHER = TrainConfig(epochs=15)
DISTILL = DistillConfig(epochs=20)  # digits is small: 6 epochs left deeper candidates rated worse than shallow
DISTILL_SEEDS = 3  # combined by block reliability (benchmarks/docs/seed_combination.md)
CHILD = TrainConfig(epochs=15, distill_weight=0.5)
REFINE_TRIALS = 10
SHIPS = ("onnx:fp32", "onnx:int8", "tflite:fp32", "tflite:int8")  # FORMAT:PRECISION the demo can ship
ALSO_EXPORTED = [("onnx", "fp32"), ("tflite", "fp32"), ("tflite", "int8")]


def shipping(ship: str) -> tuple[str, str]:
    """(format, precision) of ``--ship FORMAT:PRECISION``; ValueError listing what is accepted."""
    if ship not in SHIPS:
        raise ValueError(f"--ship {ship!r} is not one the demo ships; give one of {', '.join(SHIPS)}")
    fmt, precision = ship.split(":")
    return fmt, precision


def table_name(runtime: str, precision: str) -> str:
    """The demo's latency table file for a runtime and precision (ONNX Runtime fp32 keeps its first name, so a run
    folder from before ``--ship`` resumes)."""
    return "latency_table.json" if (runtime, precision) == ("onnxruntime", "fp32") else \
        f"latency_table_{runtime}_{precision}.json"


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``demo`` to the CLI."""
    demo = commands.add_parser("demo", help="run the end-to-end demo on the embedded default", description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="run directory (default runs/demo)")
    demo.add_argument("--json", action="store_true", help="print report.json at the end")
    demo.add_argument("--ship", default="onnx:fp32", metavar="FORMAT:PRECISION",
                      help=f"the file shipped, whose runtime and precision are profiled, searched on and checked "
                           f"against the budget: {', '.join(SHIPS)} (default onnx:fp32)")
    add_device_argument(demo)
    demo.set_defaults(handler=run_demo)


def _stage(number: int, title: str) -> float:
    print(f"\n[{number}/8] {title}", file=sys.stderr, flush=True)
    return time.perf_counter()


def run_demo(args: argparse.Namespace) -> int:
    """Run (or resume) every stage, then write the report."""
    from hwnas.search.budgeted import SearchSettings, search
    from hwnas.ship.child import ExportSettings, export_child, train_child
    from hwnas.ship.export import measuring_runtime
    from hwnas.supernet.distill import distill
    from hwnas.supernet.ratings import rate
    from hwnas.supernet.teacher import teacher_path, train_teacher
    from profilers.profile import profile_space
    from profilers.table import LatencyTable

    shipped_format, precision = shipping(args.ship)
    device = str(resolve_device(args.device))
    run = create_or_open_run(args.out, DEMO_SPACE, "digits")
    space = run.space
    runtime = measuring_runtime(shipped_format, precision)
    timings: dict[str, float] = {}
    started = time.perf_counter()

    t = _stage(1, f"profile this machine: {space.name} on {runtime.name} {runtime.version()}, 1 thread, {precision}")
    table_path = run.path / table_name(runtime.name, precision)
    if not table_path.exists():
        profile_space(space, runtime, table_path, PROFILE_PROTOCOL, calibrate=10, validate=20, jobs=1)
    table = LatencyTable.load(table_path, space)
    if table.validation and table.validation.get("warning"):
        print(f"warning: {_table_warning(table.validation, table_path)}", file=sys.stderr)
    timings["profile"] = time.perf_counter() - t

    t = _stage(2, "train the teacher on digits (the largest member of the space)")
    teacher = read_json(run.path / "teacher_result.json", "teacher result") if (run.path / "teacher_result.json"
                                                                                  ).exists() else None
    if teacher is None or not teacher_path(run).exists():
        teacher = train_teacher(run, config=TEACHER, device=device)
        atomic_write_json(run.path / "teacher_result.json", teacher)
    timings["teacher"] = time.perf_counter() - t

    t = _stage(3, f"distill the {space.num_blocks} block supernets ({DISTILL.epochs} epochs each, {DISTILL_SEEDS} "
                  "seeds, teacher cache)")
    distill(run, config=_distill_config(run), cache=True, device=device, seeds=DISTILL_SEEDS)
    timings["distill"] = time.perf_counter() - t

    t = _stage(4, "rate every candidate of every block")
    rate(run, device=device)
    timings["rate"] = time.perf_counter() - t

    t = _stage(5, "search: exact combiner, then Optuna with real measurements")
    budget = _pick_budget(run, table_path)
    found = search(run, table_path, budget, SearchSettings(refine_trials=REFINE_TRIALS, protocol=SEARCH_PROTOCOL))
    result, arch = found.to_dict(), str(found.chosen.arch)
    timings["search"] = time.perf_counter() - t

    t = _stage(6, f"train the winner with distillation ({CHILD.epochs} epochs): {arch}")
    child = train_child(run, arch, CHILD, distill=True, init_supernet=True, device=device)
    timings["train"] = time.perf_counter() - t

    t = _stage(7, f"export to ONNX and TFLite (fp32, int8), check parity, measure; the budget on the {args.ship} file")
    formats = list(dict.fromkeys([(shipped_format, precision), *ALSO_EXPORTED]))
    shipped = export_child(run, arch, formats, run.path / "export", Path(child["weights"]),
                           ExportSettings(tables=(table_path,), budget_ms=budget, protocol=PROFILE_PROTOCOL,
                                          budget_runtime=runtime.name, budget_precision=precision)).to_dict()
    timings["export"] = time.perf_counter() - t

    _stage(8, "write the report")
    timings["total"] = time.perf_counter() - started
    report = _report(run.path, table, teacher, result, child, shipped, timings) | {"ships": args.ship}
    report["supernets"] = _supernet_check(run)
    report["training_device"] = device
    _copy_plots(run.path, result, child)
    atomic_write_json(run.path / "report.json", report)
    atomic_write_bytes(run.path / "report.md", _markdown(report).encode())
    print(f"\nreport: {run.path / 'report.md'}", file=sys.stderr)
    print(json.dumps(report, indent=2) if args.json else _summary(report))
    return 0


def _distill_config(run: Any) -> DistillConfig:
    """The demo's recipe; a run folder whose supernets were trained before twins shared a module keeps them."""
    from hwnas.devices import load_checkpoint
    from hwnas.supernet.distill import checkpoint_path, shares_twins

    path = checkpoint_path(run, 0)
    if path.exists() and not shares_twins(load_checkpoint(path)["config"]):
        print(f"note: {run.path}'s supernets were trained with every kernel as its own module (an older hwnas); "
              "resuming them so (delete its supernet/ and ratings/ to train twins as one module)", file=sys.stderr)
        return replace(DISTILL, share_twins=False)
    return DISTILL


def _pick_budget(run: Any, table_path: Path) -> float:
    """A budget inside the table's range: 40% of the way from the fastest to the slowest front point."""
    from hwnas.search.combiner import Combiner
    from hwnas.search.costs import latency_cost
    from hwnas.supernet.ratings import load_ratings
    from profilers.predictor import LatencyPredictor
    from profilers.table import LatencyTable

    space = run.space
    predictor = LatencyPredictor(LatencyTable.load(table_path, space), space)
    cost = latency_cost(predictor)
    front = Combiner(space, load_ratings(run), cost.unit_cost, cost.base).front
    low, high = front[0].cost, front[-1].cost
    return round(low + 0.4 * (high - low), 4)


def _copy_plots(folder: Path, result: dict[str, Any], child: dict[str, Any]) -> None:
    shutil.copyfile(result["files"]["plot"], folder / "pareto_front.png")
    shutil.copyfile(Path(child["weights"]).parent / "training.png", folder / "training_curves.png")


def _supernet_check(run: Any) -> dict[str, Any]:
    """The distillation recipe and the under-training check recorded with the ratings."""
    from hwnas.supernet.ratings import ratings_path

    ratings = read_json(ratings_path(run), "ratings")
    return {"distill": ratings.get("distill"), "deeper_worse": [b.get("deeper_worse") for b in ratings["blocks"]],
            "undertrained": ratings.get("undertrained")}


def _report(folder: Path, table: Any, teacher: dict[str, Any], result: dict[str, Any], child: dict[str, Any],
            shipped: dict[str, Any], timings: dict[str, float]) -> dict[str, Any]:
    meta = table.metadata
    validation = {k: v for k, v in (table.validation or {}).items() if not isinstance(v, list)}
    return {
        "space": meta["space"],
        "device": {k: meta.get(k) for k in ("device_name", "cpu_model", "cpu_id", "cpu_features", "os", "logical_cores")},
        "runtime": {k: meta[k] for k in ("runtime", "runtime_version", "accelerator", "threads", "precision", "batch",
                                         "input_shape", "statistic")},
        "latency_table": {"file": meta.get("path"), "units": len(table.units),
                          "validation": validation},
        "teacher": {"arch": teacher["teacher"]["name"], "test_accuracy": teacher.get("test_accuracy")},
        "search": {"budget_ms": result["budget"], "chosen": result["chosen"], "refinement": result["refinement"],
                   "front_size": result["front_size"], "params": result["params"], "macs": result["macs"],
                   "rating_families": result.get("rating_families"), "rating_seeds": result.get("rating_seeds")},
        "child": {"arch": child["arch"], "test_accuracy": child["test_accuracy"], "epochs": len(child["history"]),
                  "layers_from_supernet": child["layers_from_supernet"]},
        "exports": [{k: e.get(k) for k in ("format", "precision", "file", "size_bytes", "parity", "accuracy_change",
                                           "predicted_ms", "prediction_error_pct", "within_budget",
                                           "over_budget_pct", "int8_vs_fp32")}
                    | {"measured_ms": (e.get("latency") or {}).get("measured_ms")} for e in shipped["exports"]],
        "plots": {"predicted_vs_measured": "latency_table.validation.png", "pareto_front": "pareto_front.png",
                  "training_curves": "training_curves.png"},
        "wall_s": {k: round(v, 1) for k, v in timings.items()},
    }


def _supernet_line(check: dict[str, Any]) -> str:
    recipe = check.get("distill") or {}
    pairs = [p for p in check["deeper_worse"] if p and p[1]]
    counted = (f"deeper candidates rate worse than their own shorter prefix in {sum(w for w, _ in pairs)} of "
               f"{sum(n for _, n in pairs)} pairs" if pairs else "no prefix pairs were checked")
    verdict = f"**Warning:** {check['undertrained']}." if check.get("undertrained") else "The supernets look trained."
    return (f"Supernets: {recipe.get('epochs')} epochs per block, Adam lr {recipe.get('lr')} (x{recipe.get('lr_decay')} "
            f"per epoch); {counted}. {verdict}")


def _families_line(families: list[dict[str, int]] | None) -> list[str]:
    """The report's note on candidates that compute the same functions (none: no line)."""
    twins = [f"block {b}: {f['rated']} candidates, {f['functions']} functions" for b, f in enumerate(families or [])
             if f["functions"] < f["rated"]]
    if not twins:
        return []
    return ["", "Candidates that compute the same functions at this resolution (a depthwise kernel wider than its map "
            "only reads padding) share their mean rating, so the search takes whichever the latency table says is fastest: "
            + "; ".join(twins) + "."]


def _table_warning(validation: dict[str, Any], table_file: Path | str) -> str:
    """The latency table's drift warning with what to do about it in the demo."""
    return f"{validation['warning']}; here: delete {table_file} and rerun 'hwnas demo'"


def _markdown(report: dict[str, Any]) -> str:
    v = report["latency_table"]["validation"]
    runtime, device, search = report["runtime"], report["device"], report["search"]
    chosen = search["chosen"]
    lines = [
        f"# hwnas demo report: {report['space']} on digits",
        "",
        f"Device: {device['device_name']} ({describe_processor(device)}, {device['logical_cores']} logical cores), "
        f"{device['os']}. Runtime: {runtime['runtime']} {runtime['runtime_version']} ({runtime['accelerator']}), "
        f"{runtime['threads']} thread, {runtime['precision']}, batch {runtime['batch']}, input {runtime['input_shape']}, "
        f"statistic {runtime['statistic']}.",
        "",
        "## 1. Latency table and predictor",
        f"{report['latency_table']['units']} latency units. On {v['n']} held-out networks: mean abs error "
        f"{v['mean_abs_pct_error']:.2f}% (re-measuring the same networks: {v['remeasure_mean_abs_pct']:.2f}%), "
        f"{100 * v['within_5pct']:.0f}% within 5%, {100 * v['within_10pct']:.0f}% within 10%, Kendall tau "
        f"{v['kendall_tau']:.3f}."
        + (f" **Warning:** {_table_warning(v, report['latency_table']['file'])}." if v.get("warning") else ""),
        "",
        f"![predicted vs measured]({report['plots']['predicted_vs_measured']})",
        "",
        "## 2. Teacher, supernets, ratings",
        f"Teacher `{report['teacher']['arch']}`: test accuracy {report['teacher']['test_accuracy']:.4f}. Every "
        "candidate of every block was rated (DNA's l1 score relative to the teacher's spread) with "
        f"{describe(report['search'].get('rating_seeds'))}.",
        "",
        _supernet_line(report["supernets"]),
        "",
        "## 3. Search",
        f"Budget {search['budget_ms']:g} ms (inside the table's range). Exact front: {search['front_size']} "
        f"architectures. Chosen ({chosen['source']}): `{chosen['arch']}`; rating {chosen['rating']:.4f}; "
        f"predicted {chosen['predicted_ms']:.4f} ms, measured {chosen['measured_ms']:.4f} ms "
        f"({'within' if chosen['within_budget'] else 'OVER'} budget); {search['params']:,} params, "
        f"{search['macs']:,} MACs." + (f" **Warning:** {chosen['measurement_warning']}."
                                       if chosen.get("measurement_warning") else ""),
        *_families_line(search.get("rating_families")),
        "",
        f"![Pareto front]({report['plots']['pareto_front']})",
        "",
        "## 4. Training the winner",
        f"{report['child']['epochs']} epochs with distillation from the teacher, "
        f"{report['child']['layers_from_supernet']} layers initialised from the supernet: test accuracy "
        f"{report['child']['test_accuracy']:.4f}.",
        "",
        f"![training curves]({report['plots']['training_curves']})",
        "",
        "## 5. Export",
        "| format | precision | size (KiB) | max abs diff | top-1 agreement | accuracy change | predicted ms "
        "| measured ms | vs fp32 | budget |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in report["exports"]:
        predicted = "" if e["predicted_ms"] is None else f"{e['predicted_ms']:.4f}"
        ratio = "" if e.get("int8_vs_fp32") is None else f"{e['int8_vs_fp32']:.2f}x"
        lines.append(f"| {e['format']} | {e['precision']} | {e['size_bytes'] / 1024:.0f} | "
                     f"{e['parity']['max_abs_diff']:.2e} | {100 * e['parity']['top1_agreement']:.1f}% | "
                     f"{e['accuracy_change']:+.4f} | {predicted} | {e['measured_ms']:.4f} | {ratio} | "
                     f"{_budget_cell(e)} |")
    lines += _export_budget_notes(report) + _int8_notes(report["exports"])
    lines += ["", "Wall time (s): " + ", ".join(f"{k} {v}" for k, v in report["wall_s"].items()), ""]
    return "\n".join(lines)


def _int8_notes(exports: list[dict[str, Any]]) -> list[str]:
    """A warning for each int8 file measured slower than its fp32 file."""
    slower = [e for e in exports if (e.get("int8_vs_fp32") or 0) > 1]
    return ["", *(f"int8 {e['format']} is {e['int8_vs_fp32']:.2f}x the fp32 file's latency here: int8 does not pay on "
                  f"this network and runtime; ship fp32 where latency counts more than size." for e in slower)
            ] if slower else []


def _budget_cell(export: dict[str, Any]) -> str:
    if export.get("within_budget") is None:
        return "not checked"
    verdict = "met" if export["within_budget"] else "OVER"
    return verdict + (f" ({export['over_budget_pct']:+.1f}%)" if export.get("over_budget_pct") is not None else "")


def _export_budget_notes(report: dict[str, Any]) -> list[str]:
    """Explain the budget column: where it was checked, and a second pass that reads over a budget the search met."""
    runtime = f"{report['runtime']['runtime']} {report['runtime'].get('precision', 'fp32')}"
    notes = ["", f"The budget ({report['search']['budget_ms']:g} ms) is the {runtime} latency table's: it is checked on "
                 f"the {runtime} file only ({report.get('ships', 'onnx:fp32')}, the file the demo ships)."]
    chosen = report["search"]["chosen"]
    over = [e for e in report["exports"] if e.get("within_budget") is False]
    if over and chosen.get("within_budget"):
        worst = max(over, key=lambda e: e["over_budget_pct"])
        notes.append(f"The search measured the winner at {chosen['measured_ms']:.4f} ms, within the budget; this "
                     f"separate pass reads {worst['measured_ms']:.4f} ms ({worst['over_budget_pct']:+.1f}%). The "
                     "winner is the best-rated architecture that fits, so it sits at the budget's edge, where two "
                     "passes on a shared machine differ by their noise; for a margin, search under a lower budget.")
    return notes


def _summary(report: dict[str, Any]) -> str:
    chosen = report["search"]["chosen"]
    over = "" if chosen.get("within_budget", True) else (
        " (OVER budget: no finalist, nor a cheaper architecture stepped down to, measured within it on this pass, so "
        "the fastest was taken; rerun the demo on a quieter machine: every finished stage is reused)")
    return (f"chosen {chosen['arch']}: measured {chosen['measured_ms']:.4f} ms for a {report['search']['budget_ms']:g} "
            f"ms budget{over}; trained test accuracy {report['child']['test_accuracy']:.4f}; total "
            f"{report['wall_s']['total']:.0f} s"
            + (f"\nwarning: {chosen['measurement_warning']}" if chosen.get("measurement_warning") else ""))
