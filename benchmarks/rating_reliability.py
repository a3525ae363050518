"""Benchmark: does weighting each block by how well its rating reproduces across distillation seeds rank better?

The same teacher's block supernets distilled with several seeds (``ranking.py --rating-seeds 3`` leaves them in
``WORK/run``, ``WORK/run-seed1``, ``WORK/run-seed2``) rate every candidate of every block once per seed. A block whose
candidates the seeds order alike measures the candidates; one they order differently measures the seed.
``hwnas.supernet.reliability.reliability_weighted`` averages the seeds and scales each block by that
reproducibility (the mean pairwise Kendall tau of its candidates' ratings, clipped at 0). Scored, with no child
trained again, against the seed-averaged stand-alone accuracies of earlier ranking results: the rating stored in the result
(from the supernets its own run distilled), the first seed's plain sum (hwnas's score), the mean of the seeds, the
reliability-weighted mean, and MACs. ``ranking`` and ``ranking_wide`` share 20 architectures;
``ranking_full`` is a separate set.

Results and their history: ``benchmarks/docs/rating_reliability.md``.

    python benchmarks/rating_reliability.py --runs runs/bench-ranking-lr/run runs/bench-ranking-lr/run-seed1 \
        runs/bench-ranking-lr/run-seed2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from _common import RESULTS, ROOT, finish_tau_plot, print_table, refuse, result_path, shown_path, write_result
from ranking import rating_of
from scipy.stats import kendalltau

WORK = ROOT / "runs" / "bench-ranking-lr"
DEFAULT_RESULTS = [RESULTS / "ranking" / f"{name}.json"
                   for name in ("ranking_full_s4", "ranking_full_s3", "ranking_full", "ranking_wide", "ranking")]


def plot(path: Path, taus: dict[str, dict[str, float]], ceilings: dict[str, float | None]) -> None:
    """Grouped bars: one group per ranking result, one bar per score, the result's noise ceiling dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results, scores = list(taus), list(next(iter(taus.values())))
    width = 0.8 / len(scores)
    figure, axis = plt.subplots(figsize=(2.6 * len(results) + 4.5, 4))
    for index, score in enumerate(scores):
        axis.bar([r + index * width for r in range(len(results))], [taus[n][score] for n in results], width,
                 label=score)
    finish_tau_plot(figure, axis, path, "block ratings weighted by their reproducibility across distillation seeds\n"
                    "(black dashes: noise ceiling; grey: the 0.65 target)", results, width,
                    [ceilings[name] for name in results], fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def parse_arguments() -> argparse.Namespace:
    """The command line, checked before any work (a bad argument exits 2 with what is accepted)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, nargs="+",
                        default=[WORK / "run", WORK / "run-seed1", WORK / "run-seed2"],
                        help="rated hwnas runs of one teacher, one per distillation seed (>= 2)")
    parser.add_argument("--results", type=Path, nargs="+", default=DEFAULT_RESULTS,
                        help="ranking benchmark results: their architectures and stand-alone accuracies")
    parser.add_argument("--name", default="rating_reliability")
    args = parser.parse_args()
    if len(args.runs) < 2:
        parser.error(f"--runs needs >= 2 rated runs (one per distillation seed), got {len(args.runs)}")
    for path in args.runs:
        if not (path / "ratings.json").exists():
            parser.error(f"{path} has no ratings.json; make the seeds' runs with 'benchmarks/ranking.py "
                         "--rating-seeds 3' (WORK/run, WORK/run-seed1, ...) or rate them with 'hwnas rate --run'")
    for path in args.results:
        if not path.exists():
            parser.error(f"no ranking result at {path}; run benchmarks/ranking.py first or pass --results")
    return args


def result_taus(path: Path, space: Any, seeds: list[Any]) -> tuple[dict[str, float], list[float], float | None]:
    """Against one ranking result's accuracies: the Kendall tau of its own rating, of one seed's (as it is and
    twins pooled), of the seeds' mean and reliability-weighted combination and of MACs; each seed's tau twins
    pooled; and the result's noise ceiling. Exits 2 when ``path`` is not a ranking result of ``space``."""
    from hwnas.supernet.reliability import mean_ratings, reliability_weighted
    from hwnas.supernet.twins import pool_equivalent
    from profilers.files import read_json

    result = read_json(path, "ranking result")
    for key in ("archs", "test_accuracy", "ratings", "macs", "space"):
        if key not in result:
            refuse(f"{path} has no {key!r}: it is not a ranking benchmark result")
    if result["space"] != space.name:
        refuse(f"{path} ranks {result['space']}, the runs rate {space.name}")
    accuracies = result["test_accuracy"]
    parsed = [space.parse(a) for a in result["archs"]]
    pooled_seeds = [pool_equivalent(space, ratings) for ratings in seeds]
    scores = {"result's own rating": [-r for r in result["ratings"]],
              **{name: [-rating_of(space, ratings, a) for a in parsed] for name, ratings in (
                  ("one seed", seeds[0]), ("one seed, twins pooled (hwnas)", pooled_seeds[0]),
                  (f"mean of {len(seeds)} seeds", mean_ratings(seeds)),
                  ("reliability-weighted", reliability_weighted(seeds)))},
              "MACs (proxy)": result["macs"]}
    taus = {name: float(kendalltau(values, accuracies).statistic) for name, values in scores.items()}
    each_seed = [float(kendalltau([-rating_of(space, pooled, a) for a in parsed], accuracies).statistic)
                 for pooled in pooled_seeds]
    return taus, each_seed, result.get("noise_ceiling_kendall_tau")


def main() -> None:
    args = parse_arguments()
    from hwnas.run import open_run
    from hwnas.supernet.ratings import load_ratings
    from hwnas.supernet.reliability import block_reliability
    from hwnas.supernet.twins import equivalence_classes
    from profilers.files import read_json

    started = time.perf_counter()
    runs = [open_run(path) for path in args.runs]
    spaces = {run.config.space for run in runs}
    if len(spaces) != 1:
        refuse(f"the runs rate different spaces: {sorted(spaces)}")
    space = runs[0].space
    seeds = [load_ratings(run, pooled=False) for run in runs]
    reliability = block_reliability(seeds)
    distinct = [len(equivalence_classes(space, b)) for b in range(space.num_blocks)]
    print_table([[b, len(space.block_candidates(b)), distinct[b], f"{r:.3f}"] for b, r in enumerate(reliability)],
                ["block", "candidates", "distinct functions", "reproducibility (Kendall tau across seeds)"])
    taus: dict[str, dict[str, float]] = {}
    ceilings: dict[str, float | None] = {}
    each_seed: dict[str, list[float]] = {}
    rows = []
    for path in args.results:
        taus[path.stem], each_seed[path.stem], ceilings[path.stem] = result_taus(path, space, seeds)
        ceiling = ceilings[path.stem]
        rows.append([path.stem, len(read_json(path, "ranking result")["archs"]),
                     *(f"{t:.3f}" for t in taus[path.stem].values()), "-" if ceiling is None else f"{ceiling:.3f}"])
    print_table(rows, ["result", "archs", *next(iter(taus.values())), "noise ceiling"])
    print("each seed, twins pooled: " + "; ".join(f"{name} {', '.join(f'{t:.3f}' for t in values)}"
                                                 for name, values in each_seed.items()))
    png = result_path("rating_reliability", args.name, ".png")
    plot(png, taus, ceilings)
    write_result("rating_reliability", args.name, {
        "runs": [str(p) for p in args.runs], "space": space.name, "block_reliability": reliability,
        "block_candidates": [len(space.block_candidates(b)) for b in range(space.num_blocks)],
        "block_distinct_functions": distinct,
        "block_weights": [max(0.0, r) for r in reliability], "kendall_tau": taus,
        "each_seed_twins_pooled_kendall_tau": each_seed, "noise_ceiling_kendall_tau": ceilings,
        "results": [shown_path(p) for p in args.results],
        "wall_s": time.perf_counter() - started, "plot": str(png.relative_to(ROOT)),
    })


if __name__ == "__main__":
    main()
