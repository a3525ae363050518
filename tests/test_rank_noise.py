"""The noise ceiling of a ranking benchmark: what tau a perfect score can reach against seed-averaged accuracies."""

import random

import pytest

from hwnas.rank_noise import noise_ceiling_tau, seed_noise_variance


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
