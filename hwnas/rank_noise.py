"""How well can any score rank architectures whose accuracies were measured with seed noise?

A rating is judged by Kendall tau against stand-alone accuracies averaged over a few seeds. Those averages are noisy,
so even a perfect score (the architectures' true accuracies) reaches a tau below 1. ``noise_ceiling_tau`` estimates
that ceiling from the per-seed accuracies themselves: the spread between architectures is split into a true part and
the seed noise left in a mean of ``k`` trainings, and the tau of the true values against true-plus-noise is averaged
over simulated draws (both parts Gaussian). A target tau above this ceiling cannot be shown on that benchmark.
"""

from __future__ import annotations

import math
import random
import statistics

from scipy.stats import kendalltau


def seed_noise_variance(per_seed: list[list[float]]) -> float:
    """Pooled unbiased variance of one training across seeds (``per_seed[s][a]``: seed s, architecture a)."""
    seeds = len(per_seed)
    if seeds < 2:
        raise ValueError(f"the seed-to-seed spread needs >= 2 seeds per architecture, got {seeds}")
    return statistics.fmean(statistics.variance(values) for values in zip(*per_seed))


def noise_ceiling_tau(per_seed: list[list[float]], trials: int = 2000, seed: int = 0) -> float:
    """Expected Kendall tau of a perfect score against the seed-averaged accuracies of ``per_seed``.

    ``per_seed[s][a]`` is architecture a's accuracy with seed s. Returns 0 when the spread between architectures is no
    larger than the noise of their means (nothing to rank), 1 when the seeds agree exactly.
    """
    seeds, archs = len(per_seed), len(per_seed[0])
    if archs < 3:
        raise ValueError(f"a ranking needs >= 3 architectures, got {archs}")
    means = [statistics.fmean(values) for values in zip(*per_seed)]
    noise = seed_noise_variance(per_seed) / seeds
    true = statistics.variance(means) - noise
    if true <= 0:
        return 0.0
    if noise == 0:
        return 1.0
    rng = random.Random(seed)
    taus = []
    for _ in range(trials):
        values = [rng.gauss(0.0, math.sqrt(true)) for _ in range(archs)]
        measured = [v + rng.gauss(0.0, math.sqrt(noise)) for v in values]
        taus.append(float(kendalltau(values, measured).statistic))
    return statistics.fmean(taus)
