"""One drift policy: a pass is perturbed when its median ratio is more than 10% from 1; perturbed passes are
measured again and the least perturbed is kept."""

import pytest

from profilers import drift


def test_one_tolerance_decides_what_is_perturbed():
    assert drift.TOLERANCE == 0.10
    assert not drift.is_perturbed(1.09) and not drift.is_perturbed(0.91)
    assert drift.is_perturbed(1.11) and drift.is_perturbed(0.89)
    assert drift.drift([2.0, 3.3, 4.0], [2.0, 3.0, 2.0]) == pytest.approx(1.1)  # the median ratio
    with pytest.raises(ValueError, match="at least one"):
        drift.drift([], [])


def test_measuring_stops_at_the_first_quiet_pass():
    readings = iter([1.5, 1.05, 1.0])
    calls = []

    def one_pass():
        ratio = next(readings)
        calls.append(ratio)
        return f"pass {len(calls)}", ratio

    result, ratios = drift.measure_until_quiet(one_pass, pause_s=0)
    assert result == "pass 2" and ratios == [1.5, 1.05] and calls == [1.5, 1.05]


def test_when_every_pass_is_perturbed_the_least_perturbed_is_kept():
    readings = iter([1.5, 0.8, 1.3])
    result, ratios = drift.measure_until_quiet(lambda: _pass(readings), pause_s=0)
    assert ratios == [1.5, 0.8, 1.3] and result == 0.8
    assert drift.all_perturbed(ratios) and drift.least_perturbed(ratios) == 0.8
    assert not drift.all_perturbed([]) and not drift.all_perturbed([1.5, 1.02])


def _pass(readings):
    ratio = next(readings)
    return ratio, ratio


def test_nothing_to_compare_with_measures_once():
    calls = []
    result, ratios = drift.measure_until_quiet(lambda: (calls.append(1) or "only", None), pause_s=0)
    assert result == "only" and ratios == [] and calls == [1]
