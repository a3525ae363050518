"""Re-measuring the finalists of a search together, and stepping down when none fits on this reading.

Architectures are the space's values here; they become strings only as keys of the measured files.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path

from hwnas.search.combiner import Combiner
from profilers import Protocol
from profilers import drift as drift_policy
from profilers.profile import measure_archs
from profilers.targets import Target
from search_spaces import SearchSpace


def remeasure_together(
    space: SearchSpace, archs: Sequence[Hashable], target: Target, protocol: Protocol,
    predict: Callable[[Hashable], float], workdir: Path,
) -> tuple[dict[Hashable, float], list[float]]:
    """Measure the finalists in one interleaved pass, so drift hits them alike.

    The pass's drift is its median measured/predicted ratio; a perturbed pass (``profilers.drift``) is measured again
    after a pause, keeping the least perturbed. Returns the kept measurements and each pass's drift.
    """
    def one_pass() -> tuple[dict[Hashable, float], float]:
        measured = dict(zip(archs, measure_archs(space, archs, target, protocol, workdir), strict=True))
        return measured, drift_policy.drift([measured[a] for a in archs], [predict(a) for a in archs])

    return drift_policy.measure_until_quiet(one_pass)


STEP_DOWN_MARGINS = (1.0, 0.95, 0.9)  # of the budget scaled to the machine's reading: a little room for noise


def step_down(combiner: Combiner, budget: float, ratio: float, exclude: Sequence[Hashable] = (),
              margins: Sequence[float] = STEP_DOWN_MARGINS) -> list[Hashable]:
    """Architectures to measure when no finalist measured within the budget: the machine read ``ratio`` x the table
    (measured over predicted, taken as at least 1), so the exact best under ``budget / ratio`` is the best one
    expected to fit now, and the best under 5% and 10% less leave room for measurement noise. Budgets below the
    cheapest architecture give the cheapest. Architectures in ``exclude`` (measured already) are left out; best
    rated first."""
    found: list[Hashable] = []
    for margin in margins:
        point = combiner.best_under(max(budget * margin / max(ratio, 1.0), combiner.min_cost))
        if point.arch not in exclude and point.arch not in found:
            found.append(point.arch)
    return found


def perturbation_warning(ratios: Sequence[float]) -> str | None:
    """A warning when every measuring pass of ``remeasure_together`` was perturbed (``profilers.drift``), else None:
    the measured numbers then say more about the machine's load at that moment than about the architectures."""
    if not drift_policy.all_perturbed(ratios):
        return None
    return (f"every measuring pass read {min(ratios):.2f}-{max(ratios):.2f}x the latency table (tolerance "
            f"{100 * drift_policy.TOLERANCE:.0f}%): the machine was busy or changed its clock while measuring, so the "
            "measured latencies (and the budget check) are not reliable; rerun the search on a quiet machine "
            "(ratings, table and the Optuna study are reused), or re-profile if the machine has changed")


def measurer(space: SearchSpace, target: Target, protocol: Protocol) -> Callable[[Hashable], float]:
    """Measure one architecture end to end (the protocol's statistic, ms)."""

    def measure(arch: Hashable) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            return measure_archs(space, [arch], target, protocol, Path(tmp))[0]

    return measure
