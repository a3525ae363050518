"""Reproducibility of block ratings across distillation seeds, and the rating weighted by it."""

from __future__ import annotations

import pytest

from hwnas.supernet.reliability import block_reliability, mean_ratings, reliability_weighted

STEADY = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}


def test_a_block_the_seeds_order_alike_is_reliable_and_a_reversed_one_is_not() -> None:
    seed0 = [STEADY, {"a": 1.0, "b": 2.0, "c": 3.0}]
    seed1 = [{k: v + 0.5 for k, v in STEADY.items()}, {"a": 3.0, "b": 2.0, "c": 1.0}]
    assert block_reliability([seed0, seed1]) == pytest.approx([1.0, -1.0])


def test_weighted_rating_keeps_reliable_blocks_and_drops_the_rest() -> None:
    seed0 = [STEADY, {"a": 1.0, "b": 2.0, "c": 3.0}]
    seed1 = [{k: v + 1.0 for k, v in STEADY.items()}, {"a": 3.0, "b": 2.0, "c": 1.0}]
    weighted = reliability_weighted([seed0, seed1])
    assert weighted[0] == pytest.approx({k: v + 0.5 for k, v in STEADY.items()})  # the seeds' mean, weight 1
    assert weighted[1] == pytest.approx({"a": 0.0, "b": 0.0, "c": 0.0})  # reversed: weight max(0, -1) = 0
    assert mean_ratings([seed0, seed1])[1] == pytest.approx({"a": 2.0, "b": 2.0, "c": 2.0})


def test_partial_agreement_scales_a_block_between_zero_and_one() -> None:
    seed0 = [STEADY]
    seed1 = [{"a": 2.0, "b": 1.0, "c": 3.0, "d": 4.0}]  # one swapped pair of six: tau 4/6
    assert block_reliability([seed0, seed1])[0] == pytest.approx(2 / 3)
    assert reliability_weighted([seed0, seed1])[0]["d"] == pytest.approx(2 / 3 * 4.0)


@pytest.mark.parametrize(("runs", "message"), [
    ([[STEADY]], ">= 2 distillation seeds"),
    ([[STEADY], [STEADY, STEADY]], "different numbers of blocks"),
    ([[STEADY], [{"a": 1.0, "b": 2.0}]], "rated different candidates"),
    ([[{"a": 1.0}], [{"a": 2.0}]], "needs >= 2"),
])
def test_mismatched_seed_ratings_are_refused(runs: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        block_reliability(runs)
