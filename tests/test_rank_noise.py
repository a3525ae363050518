"""The noise ceiling of a ranking benchmark: what tau a perfect score can reach against seed-averaged accuracies."""

import random

import numpy as np
import pytest
from rank_noise import (
    bootstrap_budgeted_gains,
    bootstrap_taus,
    budgeted_picks,
    difference_interval,
    measured_tau,
    noise_ceiling_tau,
    noise_free_tau,
    partial_tau,
    seed_noise_variance,
    tau_intervals,
)
from scipy.stats import kendalltau


def _accuracies(true: list[float], noise: float, seeds: int, seed: int = 0) -> list[list[float]]:
    rng = random.Random(seed)
    return [[t + rng.gauss(0, noise) for t in true] for _ in range(seeds)]


def test_ceiling_is_one_without_noise_and_zero_when_archs_differ_by_noise_only():
    true = [0.90 + 0.005 * i for i in range(20)]
    assert noise_ceiling_tau([true, true, true]) == 1.0
    scatter = [0.01 * (i % 5) for i in range(20)]  # every architecture has the same mean, only the seeds differ
    assert noise_ceiling_tau([[0.95 + d for d in scatter], [0.95 - d for d in scatter]]) == 0.0


def test_ceiling_falls_with_noise_and_rises_with_seeds():
    true = [0.90 + 0.005 * i for i in range(20)]
    quiet = noise_ceiling_tau(_accuracies(true, 0.003, seeds=3))
    noisy = noise_ceiling_tau(_accuracies(true, 0.015, seeds=3))
    many = noise_ceiling_tau(_accuracies(true, 0.015, seeds=12))
    assert 1.0 > quiet > many > noisy > 0.0
    assert seed_noise_variance(_accuracies(true, 0.015, seeds=12)) == pytest.approx(0.015**2, rel=0.3)


def test_ceiling_refuses_one_seed_or_too_few_archs():
    with pytest.raises(ValueError, match="2 seeds"):
        noise_ceiling_tau([[0.9, 0.8, 0.7]])
    with pytest.raises(ValueError, match="3 architectures"):
        noise_ceiling_tau([[0.9, 0.8], [0.9, 0.8]])


def _mean(per_seed: list[list[float]]) -> list[float]:
    return [sum(values) / len(values) for values in zip(*per_seed)]


def test_tau_intervals_cover_the_measured_tau_and_narrow_with_more_architectures():
    rng = random.Random(1)
    intervals = {}
    for archs in (20, 200):
        true = [rng.gauss(0.95, 0.006) for _ in range(archs)]
        per_seed = _accuracies(true, 0.006, seeds=3, seed=archs)
        score = [t + rng.gauss(0, 0.004) for t in true]
        measured = kendalltau(score, _mean(per_seed)).statistic
        low, high = tau_intervals({"score": score}, per_seed, resamples=400)["score"]
        assert low < measured < high
        intervals[archs] = high - low
    assert intervals[200] < intervals[20] / 2
    exact = [0.90 + 0.005 * i for i in range(12)]
    assert tau_intervals({"perfect": exact}, [exact, exact], resamples=100)["perfect"] == pytest.approx((1.0, 1.0))


def test_difference_interval_is_zero_for_one_score_and_positive_for_a_clearly_better_one():
    rng = random.Random(2)
    true = [rng.gauss(0.95, 0.006) for _ in range(60)]
    per_seed = _accuracies(true, 0.002, seeds=3)
    good = [t + rng.gauss(0, 0.001) for t in true]
    blind = [rng.random() for _ in true]
    assert difference_interval(good, good, per_seed, resamples=200) == (0.0, 0.0)
    low, high = difference_interval(good, blind, per_seed, resamples=400)
    assert 0.4 < low < high


def test_intervals_refuse_mismatched_scores_and_bad_levels():
    per_seed = [[0.9, 0.8, 0.7, 0.6], [0.91, 0.79, 0.7, 0.62]]
    with pytest.raises(ValueError, match="3 values for 4 architectures"):
        tau_intervals({"short": [1, 2, 3]}, per_seed)
    with pytest.raises(ValueError, match="same >= 3 architectures"):
        tau_intervals({"score": [1, 2, 3, 4]}, [per_seed[0], per_seed[1][:3]])
    low, high = tau_intervals({"score": [4, 3, 2, 1]}, per_seed[:1], resamples=200)["score"]  # one seed: allowed
    assert low <= 1.0 == high
    with pytest.raises(ValueError, match="level"):
        difference_interval([1, 2, 3, 4], [4, 3, 2, 1], per_seed, level=95)


def test_ceiling_of_one_seed_from_a_variance_measured_elsewhere():
    true = [0.005 * i for i in range(30)]
    noise = 0.02
    measured_elsewhere = seed_noise_variance(_accuracies(true, noise, seeds=8, seed=1))
    one_seed = _accuracies(true, noise, seeds=1, seed=2)
    ceiling = noise_ceiling_tau(one_seed, seed_variance=measured_elsewhere)
    simulated = [kendalltau(true, _accuracies(true, noise, seeds=1, seed=10 + i)[0]).statistic for i in range(300)]
    assert ceiling == pytest.approx(sum(simulated) / len(simulated), abs=0.1)
    assert noise_ceiling_tau(one_seed, seed_variance=0.0) == 1.0
    assert noise_ceiling_tau(one_seed, seed_variance=4 * measured_elsewhere) < ceiling
    with pytest.raises(ValueError, match="seed_variance must be >= 0"):
        noise_ceiling_tau(one_seed, seed_variance=-1.0)


def test_partial_tau_is_what_a_score_orders_beyond_the_control():
    rng = random.Random(3)
    size = [rng.random() for _ in range(60)]
    other = [rng.random() for _ in range(60)]
    accuracy = [s + o for s, o in zip(size, other)]  # size explains half, the other half is something else
    assert partial_tau(size, accuracy, size) == 0.0  # a score that is the control itself adds nothing
    assert partial_tau(other, accuracy, size) > 0.4  # the part size does not explain
    assert kendalltau(other, accuracy).statistic < partial_tau(other, accuracy, size)
    assert abs(partial_tau([rng.random() for _ in range(60)], accuracy, size)) < 0.2  # a blind score: about 0
    per_seed = [accuracy]
    draws = bootstrap_taus({"other": other, "size": size}, per_seed, resamples=200, control=size)
    assert (draws["size"] == 0.0).all()
    assert 0.3 < np.percentile(draws["other"], 2.5)
    with pytest.raises(ValueError, match="'control' has 59 values"):
        bootstrap_taus({"other": other}, per_seed, resamples=10, control=size[:-1])


def test_noise_free_tau_recovers_the_tau_a_score_has_against_true_accuracies():
    """Scores correlated with true accuracies at a known tau (0.5), measured against noisy 2-seed means: the observed
    tau is attenuated, and inverting the noise model brings it back to about 0.5 on average."""
    import math

    rng = np.random.default_rng(3)
    r = math.sin(math.pi * 0.5 / 2)  # bivariate normal with Kendall tau 0.5
    observed, recovered = [], []
    for _ in range(12):
        true = rng.standard_normal(80)
        score = r * true + math.sqrt(1 - r * r) * rng.standard_normal(80)
        per_seed = [list(0.95 + 0.01 * true + 0.01 * rng.standard_normal(80)) for _ in range(2)]
        means = np.mean(per_seed, axis=0)
        observed.append(kendalltau(score, means).statistic)
        recovered.append(noise_free_tau(observed[-1], per_seed, trials=200))
    assert np.mean(observed) < 0.45  # the noise hides part of the order
    assert np.mean(recovered) == pytest.approx(0.5, abs=0.06)
    per_seed = [list(0.95 + 0.01 * true + 0.01 * rng.standard_normal(80)) for _ in range(2)]
    ceiling = noise_ceiling_tau(per_seed)
    assert noise_free_tau(ceiling + 0.05, per_seed, trials=100) == 1.0
    assert noise_free_tau(-ceiling - 0.05, per_seed, trials=100) == -1.0
    assert noise_free_tau(0.1, per_seed, trials=100) < noise_free_tau(0.3, per_seed, trials=100)
    target_here = measured_tau(0.65, per_seed, trials=100)  # the forward model, inverted by noise_free_tau
    assert 0.3 < target_here < 0.65 and noise_free_tau(target_here, per_seed, trials=100) == pytest.approx(0.65, abs=1e-3)
    assert measured_tau(1.0, per_seed, trials=100) == pytest.approx(ceiling, abs=0.03)
    with pytest.raises(ValueError, match=r"lies in \[-1, 1\]"):
        measured_tau(1.5, per_seed)
    with pytest.raises(ValueError, match="no more than their seed noise"):
        noise_free_tau(0.3, [[0.95, 0.96, 0.94, 0.95], [0.95, 0.94, 0.96, 0.95]])  # equal means: noise only


def test_budgeted_picks_score_what_each_score_would_pick_within_each_budget():
    cost, accuracy = [1, 2, 3, 4], [0.90, 0.95, 0.92, 0.93]
    scores = {"oracle": accuracy, "largest that fits": cost, "worst": [-a for a in accuracy]}
    # budgets at the median cost (2.5: the first two fit; random 0.925, best 0.95) and at the top (all fit: the same)
    picks = budgeted_picks(scores, accuracy, cost, levels=(0.5, 1.0))
    assert picks["oracle"] == pytest.approx({"gain_over_random": 0.025, "regret": 0.0})
    assert picks["largest that fits"] == pytest.approx({"gain_over_random": 0.015, "regret": 0.010})  # 0.95, then 0.93
    assert picks["worst"] == pytest.approx({"gain_over_random": -0.025, "regret": 0.05})
    with pytest.raises(ValueError, match="budget levels must lie in"):
        budgeted_picks(scores, accuracy, cost, levels=(0.0, 1.0))
    with pytest.raises(ValueError, match="worst has 3 values for 4 architectures"):
        budgeted_picks({"worst": [1, 2, 3]}, accuracy, cost)


def test_bootstrapped_budget_gains_keep_the_oracle_on_top_draw_by_draw():
    rng = np.random.default_rng(3)
    cost = rng.uniform(1, 3, 40)
    accuracy = 0.9 + 0.01 * cost + rng.normal(0, 0.01, 40)
    scores = {"oracle": accuracy, "cost": cost, "noise": rng.normal(size=40)}
    draws = bootstrap_budgeted_gains(scores, accuracy, cost, resamples=200)
    assert all(len(v) == 200 for v in draws.values())
    assert np.all(draws["oracle"] >= draws["cost"] - 1e-12) and np.all(draws["oracle"] >= draws["noise"] - 1e-12)
    assert draws["cost"].mean() > draws["noise"].mean()  # accuracy grows with cost here: the largest that fits wins
    again = bootstrap_budgeted_gains(scores, accuracy, cost, resamples=200)
    assert all(np.array_equal(draws[n], again[n]) for n in draws)
