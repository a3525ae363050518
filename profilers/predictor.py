"""Predicting a whole network's latency from a table, calibrated on networks measured end to end.

raw(arch) = overhead + sum over units of (unit - overhead): each unit measurement holds one call's overhead and the
network pays it once. The calibration is ``a + b * raw`` with ``b > 0`` (a positive least-squares fit), so the
prediction is strictly increasing in the sum and a search may rank by the raw sum and apply the calibration after.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from profilers.table import LatencyTable
from search_spaces import SearchSpace


class LatencyPredictor:
    """Predicts an architecture's latency (ms) on the table's device; built once per (table, space)."""

    def __init__(self, table: LatencyTable, space: SearchSpace) -> None:
        table.check_compatible(space)
        self.table = table
        self.space = space
        self.overhead = table.overhead.get(table.statistic) if table.overhead else 0.0
        self._unit_cost = {key: table.entry(key) - self.overhead for key in table.units}

    def unit_cost(self, key: str) -> float:
        """A unit's cost in the sum (its entry less one call overhead)."""
        if key not in self._unit_cost:
            self.table.entry(key)  # raises the explanatory KeyError
        return self._unit_cost[key]

    def raw(self, arch: Hashable) -> float:
        """Overhead plus the sum of the architecture's unit costs, uncalibrated."""
        return self.overhead + sum(self.unit_cost(u.key) for u in self.space.units(arch))

    def calibrate_value(self, raw_ms: float) -> float:
        """Apply the table's monotone calibration to a raw sum (identity when uncalibrated)."""
        calibration = self.table.calibration
        if not calibration:
            return raw_ms
        return float(calibration["intercept"] + calibration["slope"] * raw_ms)

    def predict(self, arch: Hashable) -> float:
        """Calibrated prediction in ms."""
        return self.calibrate_value(self.raw(arch))


def fit_calibration(raw_ms: Sequence[float], measured_ms: Sequence[float], archs: Sequence[str]) -> dict[str, Any]:
    """Fit measured = a + b * raw with b > 0 (scikit-learn, positive coefficients); needs >= 3 networks."""
    from sklearn.linear_model import LinearRegression

    if len(raw_ms) < 3:
        raise ValueError(f"calibration needs at least 3 measured networks, got {len(raw_ms)}; use --calibrate 3 or more")
    x = np.asarray(raw_ms, dtype=float).reshape(-1, 1)
    y = np.asarray(measured_ms, dtype=float)
    model = LinearRegression(positive=True).fit(x, y)
    slope, intercept = float(model.coef_[0]), float(model.intercept_)
    if slope <= 1e-6:
        slope, intercept = 1.0, float(np.mean(y - x[:, 0]))  # keep it strictly increasing: offset only
    return {"kind": "linear", "intercept": intercept, "slope": slope, "n": len(raw_ms),
            "archs": list(archs), "raw_ms": [float(v) for v in raw_ms], "measured_ms": [float(v) for v in y]}


def validation_report(
    predicted: Sequence[float], measured: Sequence[float], remeasured: Sequence[float], archs: Sequence[str],
) -> dict[str, Any]:
    """Predictor error on held-out networks next to the spread of measuring the same networks twice."""
    from scipy.stats import kendalltau

    p, m, r = (np.asarray(v, dtype=float) for v in (predicted, measured, remeasured))
    error = np.abs(p - m) / m
    spread = np.abs(r - m) / m
    tau = kendalltau(p, m).statistic if len(p) > 1 else float("nan")
    return {
        "n": int(len(p)),
        "mean_abs_pct_error": float(100 * error.mean()),
        "within_5pct": float((error <= 0.05).mean()),
        "within_10pct": float((error <= 0.10).mean()),
        "kendall_tau": float(tau),
        "remeasure_mean_abs_pct": float(100 * spread.mean()),
        "remeasure_within_10pct": float((spread <= 0.10).mean()),
        "archs": list(archs),
        "predicted_ms": p.tolist(),
        "measured_ms": m.tolist(),
        "remeasured_ms": r.tolist(),
    }


def plot_validation(report: dict[str, Any], title: str, path: Path) -> None:
    """Scatter of predicted vs measured latency with the +-10% band, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    predicted, measured = np.asarray(report["predicted_ms"]), np.asarray(report["measured_ms"])
    low, high = float(min(predicted.min(), measured.min())) * 0.9, float(max(predicted.max(), measured.max())) * 1.1
    line = np.linspace(low, high, 50)
    fig, axis = plt.subplots(figsize=(5, 5))
    axis.fill_between(line, line * 0.9, line * 1.1, color="0.9", label="+-10%")
    axis.plot(line, line, color="0.5", linewidth=1)
    axis.scatter(measured, predicted, s=14, color="tab:blue", label="held-out networks")
    axis.set_xlabel("measured latency (ms)")
    axis.set_ylabel("predicted latency (ms)")
    axis.set_title(f"{title}\nMAPE {report['mean_abs_pct_error']:.1f}%, within 10%: "
                   f"{100 * report['within_10pct']:.0f}%, tau {report['kendall_tau']:.2f}", fontsize=9)
    axis.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
