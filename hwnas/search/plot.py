"""The search's plot: the exact Pareto front with the budget and the chosen point."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def plot_front(front: Sequence[dict[str, Any]], budget: float, chosen: dict[str, Any], unit: str, path: Path,
               title: str) -> None:
    """The Pareto front (cost vs rating) with the budget line and the chosen point, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(6, 4))
    axis.step([p["cost"] for p in front], [p["rating"] for p in front], where="post", color="tab:blue",
              label="exact front (predicted)")
    axis.axvline(budget, color="tab:red", linestyle="--", label=f"budget {budget:g} {unit}")
    axis.scatter([chosen["cost"]], [chosen["rating"]], color="tab:red", zorder=3, label="chosen")
    if chosen.get("measured_ms") is not None:
        axis.scatter([chosen["measured_ms"]], [chosen["rating"]], marker="x", color="black", zorder=3,
                     label="chosen, measured")
    axis.set_xlabel(f"{unit}")
    axis.set_ylabel("summed block rating (lower is better)")
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
