"""One policy for "was the machine perturbed while it measured?", used by profiling, search and export alike.

A measuring pass is compared with a reference that should read the same on an unperturbed machine: the table's
predictions (the search re-measuring its finalists), the table's own entries (export measuring three of the table's
units beside the exported file), or a first pass (the profile's validation measuring its held-out networks twice).
The pass's drift is the median measured/reference ratio over what it measured. A pass whose drift is more than
``TOLERANCE`` away from 1 (10%: more than the re-measure spread of a quiet machine, less than a neighbour's load or a
clock change) is *perturbed*: the search and export wait ``PAUSE_S`` and measure again, up to ``ATTEMPTS`` passes,
keeping the least perturbed; the profile's validation reports it as a warning.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

TOLERANCE = 0.10
ATTEMPTS = 3
PAUSE_S = 5.0

T = TypeVar("T")


def drift(measured: Iterable[float], reference: Iterable[float]) -> float:
    """The median measured/reference ratio of one pass."""
    ratios = [m / r for m, r in zip(measured, reference, strict=True)]
    if not ratios:
        raise ValueError("a drift needs at least one measurement and its reference")
    return statistics.median(ratios)


def is_perturbed(ratio: float, tolerance: float = TOLERANCE) -> bool:
    """Whether a pass that read ``ratio`` times its reference counts as perturbed."""
    return abs(ratio - 1) > tolerance


def least_perturbed(ratios: Sequence[float]) -> float:
    """The ratio closest to 1 among several passes (the pass that is kept)."""
    return min(ratios, key=lambda ratio: abs(ratio - 1))


def measure_until_quiet(
    measure_pass: Callable[[], tuple[T, float | None]], attempts: int = ATTEMPTS, pause_s: float = PAUSE_S,
    tolerance: float = TOLERANCE,
) -> tuple[T, list[float]]:
    """Run ``measure_pass`` (returning its result and its drift, or None when there is nothing to compare with) until
    a pass is not perturbed, at most ``attempts`` times with ``pause_s`` between; returns the least perturbed pass's
    result and every pass's drift."""
    best: T | None = None
    ratios: list[float] = []
    for attempt in range(attempts):
        result, ratio = measure_pass()
        if ratio is None:
            return result, ratios
        if not ratios or abs(ratio - 1) < abs(least_perturbed(ratios) - 1):
            best = result
        ratios.append(ratio)
        if not is_perturbed(ratio, tolerance):
            break
        if attempt + 1 < attempts:
            time.sleep(pause_s)
    assert best is not None
    return best, ratios


def all_perturbed(ratios: Sequence[float], tolerance: float = TOLERANCE) -> bool:
    """True when there were passes and every one of them was perturbed."""
    return bool(ratios) and all(is_perturbed(ratio, tolerance) for ratio in ratios)
