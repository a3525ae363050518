"""What a search returns: the chosen architecture, how it was chosen and measured, and where its files are.

``SearchResult.to_dict()`` is the JSON of ``result.json`` and ``hwnas search --json``; the CLI and the demo render the
dataclass itself.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Finalist:
    """An architecture re-measured at the end of a latency search."""

    arch: Hashable
    rating: float
    measured_ms: float


@dataclass(frozen=True)
class SteppedDown:
    """Cheaper points of the exact front added when no finalist measured within the budget, and the machine's
    reading (measured / predicted) that chose them."""

    ratio: float
    added: list[Hashable]


@dataclass(frozen=True)
class Measured:
    """How the chosen architecture measured (latency searches only)."""

    predicted_ms: float
    measured_ms: float
    within_budget: bool
    finalists: list[Finalist]
    pass_ratios: list[float]
    stepped_down: SteppedDown | None = None
    warning: str | None = None


@dataclass(frozen=True)
class Chosen:
    """The architecture a search picked, its summed rating, its predicted cost (in the objective's unit) and which
    step found it: ``combiner``, ``combiner, stepped down`` or ``optuna refinement`` (`` + NASWOT`` where it was
    chosen by the mean rank of rating and NASWOT; ``naswot`` holds each candidate's rating, NASWOT and mean rank)."""

    arch: Hashable
    rating: float
    cost: float
    source: str
    measured: Measured | None = None
    naswot: dict[str, dict[str, float]] | None = None


@dataclass(frozen=True)
class SearchResult:
    """One search: its objective and budget, the choice, the architecture's size, and what it was searched with."""

    space: str
    objective: str
    budget: float
    unit: str
    chosen: Chosen
    params: int
    macs: int
    timm_arch_def: Any
    table: str | None
    table_metadata: dict[str, Any] | None
    ratings: str
    rating_seeds: dict[str, Any] | None
    rating_families: list[dict[str, int]]
    refinement: dict[str, Any] | None
    front_size: int
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON values (architectures as their strings)."""
        chosen = self.chosen
        out: dict[str, Any] = {"arch": str(chosen.arch), "rating": chosen.rating, "cost": chosen.cost,
                               "source": chosen.source}
        if chosen.measured is not None:
            m = chosen.measured
            out |= {"predicted_ms": m.predicted_ms, "measured_ms": m.measured_ms, "within_budget": m.within_budget,
                    "finalists": {str(f.arch): {"rating": f.rating, "measured_ms": f.measured_ms}
                                  for f in m.finalists},
                    "finalist_passes_measured_over_predicted": m.pass_ratios,
                    "stepped_down": ({"ratio": m.stepped_down.ratio, "added": [str(a) for a in m.stepped_down.added]}
                                     if m.stepped_down else None),
                    "measurement_warning": m.warning}
        if chosen.naswot is not None:
            out["naswot"] = chosen.naswot
        result = {"space": self.space, "objective": self.objective, "budget": self.budget, "unit": self.unit,
                  "chosen": out, "timm_arch_def": self.timm_arch_def, "params": self.params, "macs": self.macs,
                  "table": self.table, "table_metadata": self.table_metadata, "ratings": self.ratings,
                  "rating_seeds": self.rating_seeds, "rating_families": self.rating_families,
                  "refinement": self.refinement, "front_size": self.front_size}
        if self.files:
            result["files"] = dict(self.files)
        return result
