"""How well can any score rank architectures whose accuracies were measured with seed noise?

A rating is judged by Kendall tau against stand-alone accuracies averaged over a few seeds. Those averages are noisy,
so even a perfect score (the architectures' true accuracies) reaches a tau below 1. ``noise_ceiling_tau`` estimates
that ceiling from the per-seed accuracies themselves: the spread between architectures is split into a true part and
the seed noise left in a mean of ``k`` trainings, and the tau of the true values against true-plus-noise is averaged
over simulated draws (both parts Gaussian). A target tau above this ceiling cannot be shown on that benchmark.

A tau measured on 20 architectures is itself a rough number. ``tau_intervals`` bootstraps it: the architectures are
drawn again with replacement, each with its score and its seed-averaged accuracy (so each draw carries the seed
noise that architecture's mean happened to get: the noise is part of the unit drawn, and drawing seeds as well would
count it twice and pull every interval down); ``difference_interval`` does the same for the gap between two scores on
the same draws (is hwnas really 0.2 above SPOS?).

Below the ceiling, how good is a score really? ``noise_free_tau`` inverts the same model: it finds the tau against
noise-free accuracies that, through this benchmark's seed noise, is measured as the observed tau on average (score and
true accuracy bivariate normal), i.e. what more stand-alone seeds would show at best. Monotone, so it also maps the
ends of a bootstrap interval; ``measured_tau`` runs the model forward (what a 0.65 target looks like here).
``NoiseModel`` holds one benchmark's simulation for any number of scores.

A rating that only knows size ranks as well as MACs do. ``partial_tau`` (Kendall's partial tau) asks what a score
orders beyond a control such as MACs: 0 when it adds nothing to it, and ``bootstrap_taus(..., control=macs)`` gives
its interval.

A search uses a rating under a budget, not over the whole space. ``budgeted_picks`` asks what each score would pick
among the ranked architectures under budgets on a cost (e.g. MACs): the accuracy of its best-scored architecture
within each budget, against a random pick (the mean of those within it) and the best one (the accuracies' own
choice); ``bootstrap_budgeted_gains`` gives intervals on the same kind of draws.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence

import numpy as np
from scipy.stats import kendalltau


def seed_noise_variance(per_seed: list[list[float]]) -> float:
    """Pooled unbiased variance of one training across seeds (``per_seed[s][a]``: seed s, architecture a)."""
    seeds = len(per_seed)
    if seeds < 2:
        raise ValueError(f"the seed-to-seed spread needs >= 2 seeds per architecture, got {seeds}")
    return statistics.fmean(statistics.variance(values) for values in zip(*per_seed))


def noise_ceiling_tau(per_seed: list[list[float]], trials: int = 2000, seed: int = 0,
                      seed_variance: float | None = None) -> float:
    """Expected Kendall tau of a perfect score against the seed-averaged accuracies of ``per_seed``.

    ``per_seed[s][a]`` is architecture a's accuracy with seed s. ``seed_variance`` is one training's variance across
    seeds when it was measured elsewhere (other architectures, same recipe); by default it is measured on
    ``per_seed``, which then needs >= 2 seeds. Returns 0 when the spread between architectures is no larger than the
    noise of their means (nothing to rank), 1 when the seeds agree exactly.
    """
    archs = len(per_seed[0])
    true, noise = _variances(per_seed, seed_variance)
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


def _variances(per_seed: list[list[float]], seed_variance: float | None) -> tuple[float, float]:
    """(true spread between architectures, noise left in their seed means), both variances."""
    archs = len(per_seed[0])
    if archs < 3:
        raise ValueError(f"a ranking needs >= 3 architectures, got {archs}")
    if seed_variance is not None and seed_variance < 0:
        raise ValueError(f"seed_variance must be >= 0, got {seed_variance}")
    means = [statistics.fmean(values) for values in zip(*per_seed)]
    noise = (seed_noise_variance(per_seed) if seed_variance is None else seed_variance) / len(per_seed)
    return statistics.variance(means) - noise, noise


class NoiseModel:
    """The seed noise of one benchmark (``per_seed``, ``seed_variance`` as in ``noise_ceiling_tau``) as a map between
    a score's tau against noise-free accuracies and the tau it is expected to measure against the seed means.

    Score and true accuracies are bivariate normal with correlation r (true tau = 2/pi asin r); each mean carries
    Gaussian seed noise. ``trials`` simulated benchmarks of the same size are drawn once and reused for every r, so
    the map is monotone and one model serves any number of scores. Raises when the architectures differ by no more
    than the noise (nothing to rank)."""

    def __init__(self, per_seed: list[list[float]], seed_variance: float | None = None, trials: int = 400,
                 seed: int = 0) -> None:
        true, noise = _variances(per_seed, seed_variance)
        if true <= 0:
            raise ValueError("the architectures' accuracies differ by no more than their seed noise: no tau against "
                             "noise-free accuracies can be inferred; train more seeds or more varied architectures")
        self.archs = len(per_seed[0])
        rng = np.random.default_rng(seed)
        self._truth, self._other, error = (rng.standard_normal((trials, self.archs)) for _ in range(3))
        chunk = max(1, 2_000_000 // (self.archs * self.archs))  # trials per block of pairwise signs (bounded memory)
        self._blocks = [slice(i, i + chunk) for i in range(0, trials, chunk)]
        measured = self._truth + math.sqrt(noise / true) * error
        self._measured_signs = [_pair_signs(measured[block]) for block in self._blocks]

    def expected_tau(self, r: float) -> float:
        """Mean Kendall tau against the seed means of a score correlated r with the true accuracies (continuous
        draws: no ties, so tau-a = tau-b)."""
        score = r * self._truth + math.sqrt(max(1.0 - r * r, 0.0)) * self._other
        concordance = sum(int((_pair_signs(score[block]) * signs).sum(dtype=np.int64))
                          for block, signs in zip(self._blocks, self._measured_signs))
        return concordance / (len(self._truth) * self.archs * (self.archs - 1))

    def measured_tau(self, true_tau: float) -> float:
        """The tau a score with ``true_tau`` against noise-free accuracies is expected to measure here."""
        if not -1 <= true_tau <= 1:
            raise ValueError(f"a Kendall tau lies in [-1, 1], got {true_tau}")
        return self.expected_tau(math.sin(math.pi * true_tau / 2))

    def noise_free_tau(self, observed: float) -> float:
        """The true tau whose expected measured tau is ``observed`` (r by bisection); clipped to [-1, 1]: an observed
        tau at or above the noise ceiling gives 1."""
        low, high = -1.0, 1.0
        if observed >= self.expected_tau(high):
            return 1.0
        if observed <= self.expected_tau(low):
            return -1.0
        for _ in range(20):  # r to within 2e-6
            middle = (low + high) / 2
            low, high = (middle, high) if self.expected_tau(middle) < observed else (low, middle)
        return 2 / math.pi * math.asin((low + high) / 2)


def _pair_signs(values: np.ndarray) -> np.ndarray:
    """sign(v_i - v_j) for every pair of each row, as int8."""
    return np.sign(values[:, :, None] - values[:, None, :]).astype(np.int8)


def measured_tau(true_tau: float, per_seed: list[list[float]], seed_variance: float | None = None,
                 trials: int = 400, seed: int = 0) -> float:
    """The Kendall tau a score with ``true_tau`` against noise-free accuracies is expected to measure against the seed
    means of ``per_seed`` (``NoiseModel``): a target as this benchmark would show it."""
    return NoiseModel(per_seed, seed_variance, trials, seed).measured_tau(true_tau)


def noise_free_tau(observed: float, per_seed: list[list[float]], seed_variance: float | None = None,
                   trials: int = 400, seed: int = 0) -> float:
    """The Kendall tau against noise-free accuracies of a score measured at ``observed`` against the seed means of
    ``per_seed``: the true tau whose expected measured tau is ``observed`` (``NoiseModel``)."""
    return NoiseModel(per_seed, seed_variance, trials, seed).noise_free_tau(observed)


def _check_scores(scores: dict[str, Sequence[float]], per_seed: list[list[float]]) -> None:
    archs = len(per_seed[0]) if per_seed else 0
    if archs < 3 or any(len(seed) != archs for seed in per_seed):
        raise ValueError(f"per_seed must hold >= 1 seed of the same >= 3 architectures, got {len(per_seed)} seed(s) "
                         f"of {sorted({len(seed) for seed in per_seed})} architectures")
    for name, values in scores.items():
        if len(values) != archs:
            raise ValueError(f"score {name!r} has {len(values)} values for {archs} architectures")


def partial_tau(x: Sequence[float], y: Sequence[float], control: Sequence[float]) -> float:
    """Kendall's partial tau of ``x`` and ``y`` with ``control`` held fixed: (t_xy - t_xc t_yc) / sqrt((1 - t_xc^2)
    (1 - t_yc^2)). 0 when either ranks exactly as the control does (nothing left to order) or a tau is undefined."""
    xy, xc, yc = (float(kendalltau(a, b).statistic) for a, b in ((x, y), (x, control), (y, control)))
    return _partial_from_taus(xy, xc, yc)


def _partial_from_taus(xy: float, xc: float, yc: float) -> float:
    if not abs(xc) < 1 - 1e-9 or not abs(yc) < 1 - 1e-9:  # ranks as the control does (or NaN: a constant input)
        return 0.0
    value = (xy - xc * yc) / math.sqrt((1 - xc * xc) * (1 - yc * yc))
    return 0.0 if value != value else value


def bootstrap_taus(scores: dict[str, Sequence[float]], per_seed: list[list[float]], resamples: int = 2000,
                   seed: int = 0, control: Sequence[float] | None = None) -> dict[str, np.ndarray]:
    """Each score's Kendall tau against the seed-averaged accuracies on ``resamples`` bootstrap draws of the
    architectures (with replacement); the same draws for every score (and for every call with the same ``seed`` and
    number of architectures), so differences between scores can be read off draw by draw. Higher scores should mean
    higher accuracy. With ``control`` (one value per architecture, e.g. MACs), each draw's partial tau given it."""
    _check_scores(scores, per_seed)
    if control is not None:
        _check_scores({"control": control}, per_seed)
    means = np.asarray([statistics.fmean(values) for values in zip(*per_seed)])
    archs = len(means)
    values = {name: np.asarray(v, dtype=float) for name, v in scores.items()}
    held = None if control is None else np.asarray(control, dtype=float)
    rng = np.random.default_rng(seed)
    taus = {name: np.empty(resamples) for name in scores}
    for draw in range(resamples):
        picked = rng.integers(0, archs, archs)
        if held is not None:  # the accuracies' tau with the control, shared by every score of this draw
            accuracy_control = float(kendalltau(means[picked], held[picked]).statistic)
        for name, score in values.items():
            tau = kendalltau(score[picked], means[picked]).statistic
            if held is not None:
                tau = _partial_from_taus(tau, float(kendalltau(score[picked], held[picked]).statistic),
                                         accuracy_control)
            taus[name][draw] = 0.0 if tau != tau else tau  # NaN: a draw of one architecture only
    return taus


def percentile_interval(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap draws."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    tail = 100 * (1 - level) / 2
    return float(np.percentile(draws, tail)), float(np.percentile(draws, 100 - tail))


def tau_intervals(scores: dict[str, Sequence[float]], per_seed: list[list[float]], level: float = 0.95,
                  resamples: int = 2000, seed: int = 0) -> dict[str, tuple[float, float]]:
    """Each score's bootstrap percentile interval of Kendall tau (see ``bootstrap_taus``)."""
    percentile_interval(np.zeros(1), level)  # refuse a bad level before any work
    return {name: percentile_interval(t, level)
            for name, t in bootstrap_taus(scores, per_seed, resamples, seed).items()}


def difference_interval(first: Sequence[float], second: Sequence[float], per_seed: list[list[float]],
                        level: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Bootstrap percentile interval of tau(first) - tau(second), both scored on the same draws."""
    percentile_interval(np.zeros(1), level)
    taus = bootstrap_taus({"first": first, "second": second}, per_seed, resamples, seed)
    return percentile_interval(taus["first"] - taus["second"], level)


BUDGET_LEVELS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def _budget_gains(values: dict[str, np.ndarray], accuracy: np.ndarray, cost: np.ndarray,
                  levels: Sequence[float]) -> tuple[dict[str, float], float]:
    gains = {name: 0.0 for name in values}
    best = 0.0
    for level in levels:
        within = np.flatnonzero(cost <= np.quantile(cost, level))
        baseline = float(accuracy[within].mean())
        best += float(accuracy[within].max()) - baseline
        for name, score in values.items():
            gains[name] += float(accuracy[within[int(np.argmax(score[within]))]]) - baseline
    return {name: gain / len(levels) for name, gain in gains.items()}, best / len(levels)


def budgeted_picks(scores: dict[str, Sequence[float]], accuracies: Sequence[float], cost: Sequence[float],
                   levels: Sequence[float] = BUDGET_LEVELS) -> dict[str, dict[str, float]]:
    """What a search with each score picks among the ranked architectures under budgets: for each budget (the cost
    quantile ``level`` of the architectures), the accuracy of the best-scored architecture within it, minus the mean
    accuracy within it (a random pick's expectation); averaged over the budgets as ``gain_over_random``, and
    ``regret``: the best accuracy within each budget minus the pick's, averaged. Higher scores mean better; in the
    accuracies' units. A score equal to the cost picks the largest architecture that fits."""
    if not levels or any(not 0 < level <= 1 for level in levels):
        raise ValueError(f"budget levels must lie in (0, 1], got {list(levels)}")
    accuracy, spent = np.asarray(accuracies, dtype=float), np.asarray(cost, dtype=float)
    values = {name: np.asarray(v, dtype=float) for name, v in scores.items()}
    for name, score in {"cost": spent, **values}.items():
        if len(score) != len(accuracy):
            raise ValueError(f"{name} has {len(score)} values for {len(accuracy)} architectures")
    gains, best = _budget_gains(values, accuracy, spent, levels)
    return {name: {"gain_over_random": gain, "regret": best - gain} for name, gain in gains.items()}


def bootstrap_budgeted_gains(scores: dict[str, Sequence[float]], accuracies: Sequence[float], cost: Sequence[float],
                             resamples: int = 2000, seed: int = 0,
                             levels: Sequence[float] = BUDGET_LEVELS) -> dict[str, np.ndarray]:
    """Each score's ``budgeted_picks`` gain over random on bootstrap draws of the architectures (with replacement; the
    same draws for every score, so gaps between scores can be read draw by draw)."""
    budgeted_picks(scores, accuracies, cost, levels)  # refuse bad input before any work
    accuracy, spent = np.asarray(accuracies, dtype=float), np.asarray(cost, dtype=float)
    values = {name: np.asarray(v, dtype=float) for name, v in scores.items()}
    rng = np.random.default_rng(seed)
    draws = {name: np.empty(resamples) for name in scores}
    for draw in range(resamples):
        picked = rng.integers(0, len(accuracy), len(accuracy))
        gains, _ = _budget_gains({n: v[picked] for n, v in values.items()}, accuracy[picked], spent[picked], levels)
        for name, gain in gains.items():
            draws[name][draw] = gain
    return draws
