"""Predicting a whole network's latency from a table, calibrated on networks measured end to end.

raw(arch) = overhead + sum over units of (unit - overhead): each unit measurement holds one call's overhead and the
network pays it once. The calibration is ``a + b * raw + c * layers`` with ``b > 0``, ``c >= 0`` and the
shallowest network's fixed cost ``a + b * overhead + c * fewest_layers >= 0`` (a non-negative least-squares fit;
``layers`` is the number of units, stem and head included): ``c`` is what each layer costs inside
a whole network beyond its isolated measurement (caches no longer warm, memory traffic between layers). The
prediction therefore stays a sum over units, ``(a + b * overhead) + sum of (b * (unit - overhead) + c)``, strictly
increasing in every unit's entry, so the combiner works on calibrated unit costs directly. Tables written before the
per-layer term read as ``c = 0``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from profilers import drift as drift_policy
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

    def _coefficients(self) -> tuple[float, float, float]:
        calibration = self.table.calibration or {}
        return (float(calibration.get("intercept", 0.0)), float(calibration.get("slope", 1.0)),
                float(calibration.get("per_layer", 0.0)))

    @property
    def calibrated_base(self) -> float:
        """The part of every prediction that no unit carries: ``a + b * overhead``."""
        intercept, slope, _ = self._coefficients()
        return intercept + slope * self.overhead

    def calibrated_unit_cost(self, key: str) -> float:
        """A unit's share of a calibrated prediction: ``b * (unit - overhead) + c`` (> 0 when the entry is)."""
        _, slope, per_layer = self._coefficients()
        return slope * self.unit_cost(key) + per_layer

    def predict(self, arch: Hashable) -> float:
        """Calibrated prediction in ms: the base plus every unit's calibrated cost."""
        return self.calibrated_base + sum(self.calibrated_unit_cost(u.key) for u in self.space.units(arch))


def min_layers(space: SearchSpace) -> int:
    """The fewest latency units (stem and head included) any architecture of ``space`` has."""
    state, count = space.initial_state(), len(space.stem_units())
    for block in range(space.num_blocks):
        fewest = min(space.block_candidates(block), key=lambda c: len(space.block_units(block, c, state)))
        count += len(space.block_units(block, fewest, state))
        state = space.block_output_state(block, fewest)
    return count + len(space.head_units(state))


def fit_calibration(raw_ms: Sequence[float], measured_ms: Sequence[float], archs: Sequence[str],
                    layers: Sequence[int] | None = None, overhead: float = 0.0,
                    fewest_layers: int | None = None) -> dict[str, Any]:
    """Fit measured = a + b * raw (+ c * layers when the layer counts are given); needs >= 3 networks (>= 4 with
    layers).

    The fit is a non-negative least-squares one in the form ``d + b * (raw - overhead) + c * (layers - fewest)``
    with ``d, b, c >= 0`` (``fewest`` is the space's fewest layers, the calibration networks' fewest when not
    given): every unit's calibrated cost stays positive and so does the fixed cost of the shallowest network, so no
    architecture of the space is ever predicted at or below 0 ms, however noisy or few the networks measured (an
    unconstrained intercept lets a steep slope on a handful of noisy networks predict negative latencies). It is
    stored as ``a = d - b * overhead - c * fewest``.
    """
    from sklearn.linear_model import LinearRegression

    needed = 3 if layers is None else 4
    if len(raw_ms) < needed:
        raise ValueError(f"calibration needs at least {needed} measured networks, got {len(raw_ms)}; use --calibrate "
                         f"{needed} or more")
    y = np.asarray(measured_ms, dtype=float)
    units = np.asarray(raw_ms, dtype=float) - overhead
    fewest = 0 if layers is None else int(min(layers) if fewest_layers is None else min(fewest_layers, *layers))
    extra = np.zeros_like(units) if layers is None else np.asarray(layers, dtype=float) - fewest
    x = np.stack([np.ones_like(units), units, extra], axis=1)
    fixed, slope, per_layer = (float(v) for v in LinearRegression(positive=True, fit_intercept=False).fit(x, y).coef_)
    if slope <= 1e-6:  # keep it strictly increasing: offset only
        slope, per_layer, fixed = 1.0, 0.0, max(0.0, float(np.mean(y - units)))
    calibration = {"kind": "linear" if layers is None else "linear+layers",
                   "intercept": fixed - slope * overhead - per_layer * fewest, "slope": slope,
                   "per_layer": per_layer, "n": len(raw_ms), "archs": list(archs),
                   "raw_ms": [float(v) for v in raw_ms], "measured_ms": [float(v) for v in y]}
    if layers is not None:
        calibration["layers"] = [int(v) for v in layers]
        calibration["fewest_layers"] = fewest
    return calibration


def validation_report(
    predicted: Sequence[float], measured: Sequence[float], remeasured: Sequence[float], archs: Sequence[str],
) -> dict[str, Any]:
    """Predictor error on held-out networks next to the spread of measuring the same networks twice; a ``warning``
    when the second pass was perturbed against the first (``profilers.drift``: its median ratio)."""
    from scipy.stats import kendalltau

    p, m, r = (np.asarray(v, dtype=float) for v in (predicted, measured, remeasured))
    error = np.abs(p - m) / m
    spread = np.abs(r - m) / m
    tau = kendalltau(p, m).statistic if len(p) > 1 else float("nan")
    drift = float(drift_policy.drift(r, m))
    report = {
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
        "remeasure_median_ratio": drift,
    }
    if drift_policy.is_perturbed(drift):
        report["warning"] = drift_warning(drift)
    return report


def drift_warning(ratio: float) -> str:
    """What a second measuring pass reading ``ratio`` times the first (median over the networks) means for a table."""
    return (f"the second measuring pass read {ratio:.2f}x the first (median over the held-out networks): the machine's "
            f"speed changed while profiling (another job, a noisy neighbour VM, thermal throttling or a clock change), "
            f"so the table's entries may be off by as much; re-profile on a quiet machine (a finished table is "
            f"measured afresh when its profile command runs again)")


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
