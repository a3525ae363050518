"""Ratings of the same blocks distilled with several seeds: how reproducible each block's rating is, and one
combined rating that trusts each block as far as it reproduces.

A block's candidates are rated from supernets trained with one random seed. Where two seeds order a block's
candidates alike, its rating measures the candidates; where they do not, it measures the seed, and summing it into
every architecture's score only adds noise. ``block_reliability`` is the mean pairwise Kendall tau of a block's
candidate ratings across seeds; ``reliability_weighted`` averages the seeds' ratings and scales each block by its
reliability (clipped at 0), so the result is still a per-block table whose sums the combiner can search.
"""

from __future__ import annotations

import statistics
from itertools import combinations

from scipy.stats import kendalltau

Ratings = list[dict[str, float]]


def _check(runs: list[Ratings]) -> None:
    if len(runs) < 2:
        raise ValueError(f"reproducibility needs ratings from >= 2 distillation seeds, got {len(runs)}")
    blocks = {len(run) for run in runs}
    if len(blocks) != 1:
        raise ValueError(f"the seeds' ratings cover different numbers of blocks ({sorted(blocks)}): rate every block "
                         "of every seed's run first")
    for block in range(len(runs[0])):
        names = [set(run[block]) for run in runs]
        if any(n != names[0] for n in names):
            raise ValueError(f"block {block}: the seeds rated different candidates; rate the same space with the same "
                             "--max-candidates in every run")
        if len(names[0]) < 2:
            raise ValueError(f"block {block} has {len(names[0])} rated candidate(s); reproducibility needs >= 2")


def block_reliability(runs: list[Ratings]) -> list[float]:
    """Per block, the mean Kendall tau between every pair of seeds' ratings of that block's candidates (1: every seed
    orders them alike; about 0: the order is the seed's). ``runs[k][b]`` maps candidate to rating for seed k."""
    _check(runs)
    reliability = []
    for block in range(len(runs[0])):
        names = sorted(runs[0][block])
        taus = []
        for first, second in combinations(runs, 2):
            tau = kendalltau([first[block][n] for n in names], [second[block][n] for n in names]).statistic
            taus.append(0.0 if tau != tau else float(tau))  # NaN when one seed rates every candidate alike
        reliability.append(statistics.fmean(taus))
    return reliability


def mean_ratings(runs: list[Ratings]) -> Ratings:
    """The seeds' mean rating of every candidate of every block."""
    _check(runs)
    return [{name: statistics.fmean(run[block][name] for run in runs) for name in runs[0][block]}
            for block in range(len(runs[0]))]


def reliability_weighted(runs: list[Ratings]) -> Ratings:
    """The seeds' mean rating of every candidate, each block scaled by ``max(0, block_reliability)``: a block whose
    order does not reproduce across seeds stops counting (lower is still better)."""
    weights = [max(0.0, r) for r in block_reliability(runs)]
    return [{name: weight * value for name, value in block.items()}
            for block, weight in zip(mean_ratings(runs), weights)]
