"""Benchmark: is the budget honoured when measured? A sweep of budgets over the mbconv@224 table's range.

For each of >= 10 budgets across the range of the shipped ONNX Runtime table (1 thread): the exact combiner picks
the best architecture under the predicted budget, its five best front neighbours below the budget join it as
finalists, all finalists are measured end to end in one interleaved pass (as 'hwnas search' does), and the
best-rated finalist measured within budget is chosen. Reported: the chosen architecture's measured latency against
its budget, and whether it is within the budget (strictly, and within the measurement's own noise band, the
re-measure spread recorded in the table). Ratings are synthetic (random, fixed seed; no ImageNet supernet here):
what is measured is whether the *latency* side keeps its promise.

    python benchmarks/budget_sweep.py --budgets 12
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

from _common import ROOT, print_table, write_result

from hwnas.search.combiner import Combiner
from hwnas.search.costs import latency_cost
from hwnas.search.remeasure import remeasure_together
from profilers import Protocol, get_runtime
from profilers.predictor import LatencyPredictor
from profilers.table import LatencyTable
from profilers.targets import LocalTarget
from search_spaces import get_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", type=int, default=12)
    parser.add_argument("--table", type=Path, default=ROOT / "latency_tables" / "mbconv-224_onnxruntime-cpu_1t.json")
    parser.add_argument("--finalists", type=int, default=6)
    args = parser.parse_args()
    if args.budgets < 1 or args.finalists < 1:
        parser.error(f"--budgets and --finalists must be >= 1, got {args.budgets} and {args.finalists}")
    if not args.table.is_file():
        parser.error(f"no latency table at {args.table}; profile one with 'hwnas profile' or pass --table")

    space = get_space("mbconv")
    table = LatencyTable.load(args.table, space)
    predictor = LatencyPredictor(table, space)
    cost = latency_cost(predictor)
    rng = random.Random(0)
    ratings = [{str(c): rng.random() for c in space.block_candidates(b)} for b in range(space.num_blocks)]
    combiner = Combiner(space, ratings, cost.unit_cost, cost.base)
    low, high = combiner.front[0].cost, combiner.front[-1].cost
    budgets = [round(low + (high - low) * (i + 0.5) / args.budgets, 2) for i in range(args.budgets)]
    band = table.validation["remeasure_mean_abs_pct"] / 100 if table.validation else 0.02
    target = LocalTarget(get_runtime(table.metadata["runtime"], int(table.metadata["threads"])))
    protocol = Protocol()
    rows, results = [], []
    for budget in budgets:
        near = [p.arch for p in combiner.near(budget, args.finalists)]
        with tempfile.TemporaryDirectory() as tmp:
            measured, ratios = remeasure_together(space, near, target, protocol, predictor.predict, Path(tmp))
        feasible = [a for a in near if measured[a] <= budget]
        rank = {a: i for i, a in enumerate(near)}
        chosen = min(feasible, key=rank.get) if feasible else min(near, key=measured.get)
        result = {"budget_ms": budget, "arch": str(chosen), "predicted_ms": predictor.predict(chosen),
                  "measured_ms": measured[chosen], "combiner_best_measured_ms": measured[near[0]],
                  "within_budget": measured[chosen] <= budget,
                  "within_noise_band": measured[chosen] <= budget * (1 + band), "pass_ratios": ratios,
                  "chosen_rank_on_front": rank[chosen]}
        results.append(result)
        rows.append([f"{budget:.2f}", f"{result['predicted_ms']:.2f}", f"{result['measured_ms']:.2f}",
                     f"{result['combiner_best_measured_ms']:.2f}", rank[chosen],
                     "yes" if result["within_budget"] else "NO"])
    print_table(rows, ["budget ms", "predicted", "measured", "combiner best measured", "front rank", "within"])
    honoured = sum(r["within_budget"] for r in results) / len(results)
    banded = sum(r["within_noise_band"] for r in results) / len(results)
    print(f"budget honoured: {100 * honoured:.0f}% strictly, {100 * banded:.0f}% within the noise band "
          f"({100 * band:.1f}%)")
    write_result("budget_sweep", "budget_sweep", {"table": str(args.table.relative_to(ROOT)),
                                                  "runtime": table.metadata["runtime"],
                                  "threads": table.metadata["threads"], "noise_band": band, "budgets": results,
                                  "honoured_strict": honoured, "honoured_within_noise_band": banded,
                                  "targets": {"honoured>=0.95": banded >= 0.95}})


if __name__ == "__main__":
    main()
