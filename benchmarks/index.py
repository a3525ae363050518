"""The results index: ``benchmarks/results/README.md``, generated from the result JSONs (one row per result).

Each row names the benchmark and result, the machine it ran on, its headline numbers and which of its targets it
met. ``write_result`` regenerates it after every result; ``python benchmarks/index.py --check`` exits 1 when the
committed index is not what the JSONs give (a test runs it).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
INDEX = RESULTS / "README.md"


def _methods(result: dict[str, Any]) -> str:
    taus = []
    for name, label in (("hwnas (DNA block-wise)", "hwnas"), ("SPOS baseline", "SPOS"), ("MACs (proxy)", "MACs")):
        tau = (result.get("methods", {}).get(name) or {}).get("kendall_tau")
        if tau is not None:
            taus.append(f"{label} {tau:.3f}")
    ceiling = result.get("noise_ceiling_kendall_tau")
    archs = len(result.get("archs", []))
    seeds = len(result.get("test_accuracy_per_seed", []))
    head = f"{archs} archs x {seeds} seeds; tau " + ", ".join(taus)
    return head + (f"; ceiling {ceiling:.3f}" if ceiling is not None else "")


def _fidelity(result: dict[str, Any]) -> str:
    v = result["validation"]
    return (f"{result['space']} on {result['runtime']['runtime']}: {v['mean_abs_pct_error']:.1f}% mean error, "
            f"{100 * v['within_10pct']:.0f}% within 10%, tau {v['kendall_tau']:.3f} (re-measure "
            f"{v['remeasure_mean_abs_pct']:.1f}%)")


def _combiner(result: dict[str, Any]) -> str:
    full = result["full_space"]
    return (f"{full['architectures']:.3g} archs, front of {full['front_points']} in {full['total_s']:.1f} s; "
            f"{result['brute_force']['mismatches']} mismatches against brute force")


def _seed_combination(result: dict[str, Any]) -> str:
    return f"combined seeds over their average: {result['mean_gain_over_single_average']:+.3f} tau"


def _training_speed(result: dict[str, Any]) -> str:
    return f"children {result['children_speedup']:.2f}x faster per step"


def _ground_truth(result: dict[str, Any]) -> str:
    summary = result["summary"]
    text = f"{result['trainings_done']}/{result['trainings_planned']} trainings"
    if summary.get("spread_over_noise") is not None:
        text += f"; arch spread {summary['spread_over_noise']:.2f}x seed noise"
    if summary.get("noise_ceiling_kendall_tau") is not None:
        text += f"; ceiling {summary['noise_ceiling_kendall_tau']:.3f}"
    return text


def _int8_kernels(result: dict[str, Any]) -> str:
    ratios = [f"{name.split(' (')[0]} {values['litert int8'] / values['litert fp32']:.2f}x / "
              f"{values['litert-builtin int8'] / values['litert-builtin fp32']:.2f}x / "
              f"{values['onnxruntime int8'] / values['onnxruntime fp32']:.2f}x"
              for name, values in result["networks"].items() if "timm" in name]
    return "int8/fp32 (XNNPACK / LiteRT built-in / ONNX Runtime): " + "; ".join(ratios) if ratios else "ops only"


def _int8_trained(result: dict[str, Any]) -> str:
    parts = []
    for fmt, runtime in (("onnx", "onnxruntime"), ("tflite", "litert")):
        agree = [c["parity"][f"{fmt} int8"]["top1_agreement"] for c in result["children"].values()]
        part = f"{fmt} int8 top-1 agree {100 * min(agree):.1f}-{100 * max(agree):.1f}%"
        if all(c.get("latency_ms") for c in result["children"].values()):
            ratio = [c["latency_ms"][f"{runtime} int8"] / c["latency_ms"][f"{runtime} fp32"]
                     for c in result["children"].values()]
            part += f", int8/fp32 {min(ratio):.2f}-{max(ratio):.2f}x"
        parts.append(part)
    steps = result.get("int8_finetune_steps")
    tuned = f" (int8 weights fine-tuned {steps} steps)" if steps else ""
    return f"{len(result['children'])} trained {result['space']} children{tuned}: " + "; ".join(parts)


def _rank_scores(result: dict[str, Any]) -> str:
    taus = ", ".join(f"{name.replace(' (size)', '').replace(' (proxy)', '')} {v['kendall_tau']:.3f} "
                     f"({v['partial_tau_given_macs']:+.3f} beyond MACs)" for name, v in result["scores"].items())
    return f"{result['archs_scored']}/{result['archs_planned']} archs; tau: {taus}"


def _mixed_kernels(result: dict[str, Any]) -> str:
    return "; ".join(f"{name}: mixed/k5 {r['median_ratios']['mixed/k5']:.2f}, mixed/k7 {r['median_ratios']['mixed/k7']:.2f}"
                     for name, r in result["runtimes"].items())


def _evolve_space(result: dict[str, Any]) -> str:
    gains = ", ".join(f"{b['budget_mmacs']:g} M: {100 * (b['evolved']['test_accuracy'] - b['fixed']['test_accuracy']):+.2f}"
                      for b in result["budgets"])
    return f"{result['evolved_space']}; evolved - fixed pick, test pts: {gains}"


def _progressive(result: dict[str, Any]) -> str:
    rounds = "; ".join(f"round {r['round']}: teacher val {r['teacher']['val_accuracy']:.4f}, searched val "
                       f"{r['searched']['val_accuracy']:.4f}" + (" (promoted)" if r["promoted"] else "")
                       for r in result["rounds"])
    return f"{result['data']}, {result['budget_mmacs']:g} M MACs: {rounds}"


HEADLINES: dict[str, Callable[[dict[str, Any]], str]] = {
    "ranking": _methods, "profile_fidelity": _fidelity, "combiner": _combiner, "seed_combination": _seed_combination,
    "training_speed": _training_speed, "ground_truth": _ground_truth, "int8_kernels": _int8_kernels,
    "int8_trained": _int8_trained,
    "rank_scores": _rank_scores, "mixed_kernels": _mixed_kernels, "evolve_space": _evolve_space,
    "progressive": _progressive,
}


def _targets(result: dict[str, Any]) -> str:
    targets = result.get("targets") or {}
    if not targets:
        return ""
    met = [k for k, v in targets.items() if v]
    missed = [k for k, v in targets.items() if not v]
    return f"{len(met)}/{len(targets)} met" + (f"; missed: {', '.join(missed)}" if missed else "")


def _machine(result: dict[str, Any]) -> str:
    machine = result.get("machine") or result.get("device") or {}
    features = machine.get("cpu_features") or []
    widest = next((f for f in ("amx_int8", "avx512_vnni", "avx_vnni", "avx512f", "avx2", "i8mm", "asimddp", "asimd")
                   if f in features), None)
    return str(machine.get("cpu_model", "?")) + (f" ({widest})" if widest else "")


def _headline(benchmark: str, result: dict[str, Any]) -> str:
    try:
        return HEADLINES[benchmark](result) if benchmark in HEADLINES else ""
    except (KeyError, TypeError, ValueError, IndexError):
        return "(an older layout: see the JSON)"


def render(results: Path = RESULTS) -> str:
    """The index's Markdown."""
    lines = ["# Benchmark results", "",
             "Generated by `benchmarks/index.py` from the JSONs beside it; do not edit by hand. What each benchmark "
             "measures and the history of its results: `benchmarks/docs/BENCHMARK.md`.", ""]
    for folder in sorted(p for p in results.iterdir() if p.is_dir()):
        lines += [f"## {folder.name}", "", "| result | machine | headline | targets |", "|---|---|---|---|"]
        for path in sorted(folder.glob("*.json")):
            result = json.loads(path.read_text())
            lines.append(f"| [{path.stem}]({folder.name}/{path.name}) | {_machine(result)} | "
                         f"{_headline(folder.name, result)} | {_targets(result)} |")
        lines.append("")
    return "\n".join(lines)


def write_index(results: Path = RESULTS) -> Path:
    """Write the index (atomically)."""
    path = results / "README.md"
    temporary = path.with_suffix(".md.tmp")
    temporary.write_text(render(results))
    temporary.replace(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 when the committed index is out of date")
    args = parser.parse_args()
    if args.check:
        if not INDEX.exists() or INDEX.read_text() != render():
            print(f"{INDEX} is out of date: run python benchmarks/index.py", file=sys.stderr)
            sys.exit(1)
        return
    print(f"wrote {write_index()}")


if __name__ == "__main__":
    main()
