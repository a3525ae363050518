"""Robust latency statistics over a set of timed runs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

STATISTICS = ("min", "p10", "median", "p90", "mean")


@dataclass(frozen=True)
class LatencyStats:
    """Latency in milliseconds of ``n`` timed runs: min, 10th percentile, median, 90th percentile, mean."""

    min: float
    p10: float
    median: float
    p90: float
    mean: float
    n: int

    @staticmethod
    def of(samples_ms: Sequence[float]) -> LatencyStats:
        """Statistics of raw per-run times in milliseconds."""
        if len(samples_ms) == 0:
            raise ValueError("no timed runs to summarise")
        data = np.asarray(samples_ms, dtype=np.float64)
        p10, median, p90 = np.percentile(data, [10, 50, 90])
        return LatencyStats(float(data.min()), float(p10), float(median), float(p90), float(data.mean()), len(data))

    def get(self, statistic: str) -> float:
        """One statistic by name (``min``, ``p10``, ``median``, ``p90``, ``mean``)."""
        if statistic not in STATISTICS:
            raise ValueError(f"unknown statistic {statistic!r}; choose one of: {', '.join(STATISTICS)}")
        return float(getattr(self, statistic))

    def to_dict(self) -> dict[str, float | int]:
        """JSON-able form."""
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    @staticmethod
    def from_dict(data: dict[str, float | int]) -> LatencyStats:
        """Inverse of ``to_dict``; ValueError names a missing field."""
        try:
            stats = LatencyStats(*(float(data[k]) for k in STATISTICS), n=int(data["n"]))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"latency statistics need {', '.join(STATISTICS)} and n; got {data!r}") from error
        values = [stats.get(k) for k in STATISTICS]
        if not all(math.isfinite(v) and v > 0 for v in values) or stats.n < 1:
            raise ValueError(f"latency statistics must be finite milliseconds > 0 from n >= 1 runs; got {data!r}")
        return stats
