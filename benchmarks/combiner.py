"""Benchmark: the exact combiner on the full mbconv space, and its optimality against brute force.

(a) Wall time to build the exact front for every budget over the full ``mbconv`` space (1.7e21 architectures),
    costed by the shipped ONNX Runtime table; ratings are synthetic (random, fixed seed): the combiner's work does
    not depend on where ratings come from. Per-block cost tables and the front merge are timed separately.
(b) Optimality: on a reduced space small enough to enumerate, the combiner's answer equals brute force for 50 budgets.

    python benchmarks/combiner.py
"""

from __future__ import annotations

import random
import resource

from _common import ROOT, print_table, write_result

from hwnas.search.combiner import Combiner
from profilers.predictor import LatencyPredictor
from profilers.table import LatencyTable
from search_spaces import DNA_OPS, MBConvSpace, SearchSpace, StageSpec, get_space


def synthetic_ratings(space: SearchSpace, seed: int) -> list[dict[str, float]]:
    rng = random.Random(seed)
    return [{str(c): rng.random() for c in space.block_candidates(b)} for b in range(space.num_blocks)]


def full_space() -> dict:
    space = get_space("mbconv")
    predictor = LatencyPredictor(LatencyTable.load(ROOT / "latency_tables" / "mbconv-224_onnxruntime-cpu_1t.json",
                                                   space), space)
    ratings = synthetic_ratings(space, 0)
    combiner = Combiner(space, ratings, lambda u: predictor.calibrated_unit_cost(u.key), predictor.calibrated_base)
    tables_s, merge_s = combiner.timings["cost_tables_s"], combiner.timings["merge_s"]
    return {"space": space.name, "architectures": space.count(), "front_points": len(combiner.front),
            "cost_tables_s": tables_s, "front_merge_s": merge_s, "total_s": tables_s + merge_s,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "fastest_ms": combiner.front[0].cost, "slowest_front_ms": combiner.front[-1].cost}


def brute_force_check() -> dict:
    space = MBConvSpace("reduced", stages=(StageSpec((16, 24), 2, (1, 2)), StageSpec((24, 32), 2, (1, 2)),
                                           StageSpec((40, 48), 1, (1, 2))), ops=DNA_OPS[:3], resolution=32)
    cost = {u.key: random.Random(u.key).uniform(0.05, 1.0) for u in space.all_units()}
    ratings = synthetic_ratings(space, 1)
    combiner = Combiner(space, ratings, lambda u: cost[u.key])
    everything = []
    for arch in space.enumerate():
        everything.append((sum(cost[u.key] for u in space.units(arch)),
                           sum(ratings[b][str(c)] for b, c in enumerate(space.blocks_of(arch)))))
    costs = sorted(c for c, _ in everything)
    budgets = [costs[int(q * (len(costs) - 1))] for q in [i / 49 for i in range(50)]]
    mismatches = 0
    for budget in budgets:
        best = min(r for c, r in everything if c <= budget + 1e-12)
        if abs(combiner.best_under(budget + 1e-12).rating - best) > 1e-9:
            mismatches += 1
    return {"architectures": space.count(), "budgets": len(budgets), "mismatches": mismatches}


def main() -> None:
    full = full_space()
    check = brute_force_check()
    print_table([
        ["full mbconv space", f"{full['architectures']:.3e} archs", f"front {full['front_points']} points"],
        ["per-block cost tables", f"{full['cost_tables_s']:.2f} s", ""],
        ["front merge (every budget)", f"{full['front_merge_s']:.3f} s", f"peak RSS {full['peak_rss_mb']:.0f} MB"],
        ["brute force check", f"{check['architectures']} archs", f"{check['mismatches']} mismatches / "
                                                                  f"{check['budgets']} budgets"],
    ], ["what", "value", "note"])
    write_result("combiner", "combiner", {"full_space": full, "brute_force": check,
                              "targets": {"front_merge<1s": full["front_merge_s"] < 1.0,
                                          "exact": check["mismatches"] == 0}})


if __name__ == "__main__":
    main()
