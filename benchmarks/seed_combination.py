"""Benchmark: do distillation seeds combined by block reliability rank better than one seed?

``hwnas distill --seeds N`` trains N seeds of the block supernets and ``hwnas rate`` combines them
(``hwnas.supernet.seeds``): the seeds' mean rating, each block scaled by the mean Kendall tau of its candidates' order
between seeds. This scores, against a ranking result's stand-alone accuracies (``ranking.py``; default
``ranking_100``: 100 archs x 4 seeds), each triple of seeds given: every seed alone, the seeds' plain mean rating, and
the combination, with the paired bootstrap interval (2000 draws of the architectures, ``rank_noise``) of the
combination minus its first seed alone. All scores are the search's pooled ratings. No child is trained.

A triple is ``NAME=RUN`` (a run distilled with ``hwnas distill --seeds``: its seeds are read from ``RUN/seeds/``) or
``NAME=RUN0,RUN1,RUN2`` (separate runs of one teacher, as ``ranking.py --rating-seeds`` makes them). ``run_all.sh``
has the commands that made the four triples of ``seed_combination.json``.

    python benchmarks/seed_combination.py --triple twins=runs/twins-seeds --triple bench=runs/a,runs/b,runs/c
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from _common import RESULTS, print_table, write_result
from ranking import rating_of
from scipy.stats import kendalltau


def triple_ratings(spec: str) -> tuple[str, list[Any]]:
    """(name, unpooled per-block ratings of each seed) of one ``NAME=RUN`` or ``NAME=RUN0,RUN1,...`` spec."""
    from hwnas.run import open_run
    from hwnas.supernet.ratings import load_ratings
    from hwnas.supernet.seeds import seed_runs

    name, _, paths = spec.partition("=")
    if not name or not paths:
        raise ValueError(f"--triple wants NAME=RUN or NAME=RUN0,RUN1,...; got {spec!r}")
    runs = [open_run(p) for p in paths.split(",")]
    if len(runs) == 1:
        runs += seed_runs(runs[0])
    if len(runs) < 2:
        raise ValueError(f"{spec}: {runs[0].path} has no extra distillation seeds ('hwnas distill --seeds 3' makes "
                         "them); give several runs separated by commas instead")
    return name, [load_ratings(run, pooled=False, seeds=False) for run in runs]


def score_triple(space: Any, archs: list[Any], seeds: list[Any], accuracies: list[float],
                 per_seed: list[list[float]]) -> dict[str, Any]:
    """Kendall taus of each seed, the plain mean and the reliability-weighted combination (pooled, as searched)."""
    from rank_noise import difference_interval

    from hwnas.supernet.reliability import block_reliability, mean_ratings, reliability_weighted
    from hwnas.supernet.twins import pool_equivalent

    def score(ratings: Any) -> list[float]:
        pooled = pool_equivalent(space, ratings)
        return [-rating_of(space, pooled, a) for a in archs]

    def tau(values: list[float]) -> float:
        return float(kendalltau(values, accuracies).statistic)

    singles = [score(s) for s in seeds]
    combined = score(reliability_weighted(seeds))
    low, high = difference_interval(combined, singles[0], per_seed)
    single_taus, combined_tau = [tau(s) for s in singles], tau(combined)
    return {"seeds": len(seeds), "single": single_taus, "mean_rating": tau(score(mean_ratings(seeds))),
            "combined": combined_tau, "combined_minus_single_mean": combined_tau - statistics.fmean(single_taus),
            "combined_minus_first_interval": [low, high], "block_reliability": block_reliability(seeds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--result", default=str(RESULTS / "ranking" / "ranking_100.json"), help="a ranking.py result")
    parser.add_argument("--triple", action="append", required=True, help="NAME=RUN or NAME=RUN0,RUN1,RUN2")
    parser.add_argument("--name", default="seed_combination")
    args = parser.parse_args()

    from profilers.files import read_json
    from search_spaces import get_space

    started = time.perf_counter()
    if not Path(args.result).exists():
        parser.error(f"no ranking result at {args.result}; make one with benchmarks/ranking.py")
    result = read_json(Path(args.result), "ranking result")
    if "test_accuracy_per_seed" not in result:
        parser.error(f"{args.result} has no per-seed accuracies (test_accuracy_per_seed): use a ranking.py result")
    try:
        triples = dict(triple_ratings(spec) for spec in args.triple)
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    space = get_space(result["space"])
    archs = [space.parse(a) for a in result["archs"]]
    per_seed = result["test_accuracy_per_seed"]
    scored = {name: score_triple(space, archs, seeds, result["test_accuracy"], per_seed)
              for name, seeds in triples.items()}
    rows = [[name, ", ".join(f"{t:.3f}" for t in s["single"]), f"{s['mean_rating']:.3f}", f"{s['combined']:.3f}",
             f"{s['combined_minus_single_mean']:+.3f}",
             "[{:+.3f}, {:+.3f}]".format(*s["combined_minus_first_interval"])] for name, s in scored.items()]
    print_table(rows, ["seeds", "each alone", "plain mean", "combined", "combined - their average",
                       "combined - first, 95%"])
    gains = [s["combined_minus_single_mean"] for s in scored.values()]
    print(f"combined minus the seeds' average: mean {statistics.fmean(gains):+.3f} over {len(gains)} triple(s); "
          f"against {Path(args.result).name} ({len(archs)} archs)")
    write_result("seed_combination", args.name, {"result": Path(args.result).name,
                             "triples": {spec.partition("=")[0]: spec.partition("=")[2] for spec in args.triple},
                             "scores": scored, "mean_gain_over_single_average": statistics.fmean(gains),
                             "wall_s": time.perf_counter() - started})


if __name__ == "__main__":
    main()
