"""Cost models of the search: calibrated predicted latency, or MACs / parameters counted on the units."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass

from profilers.predictor import LatencyPredictor
from search_spaces import LatencyUnit, SearchSpace, count_macs

OBJECTIVES = ("latency", "macs", "params")


@dataclass
class CostModel:
    """An additive cost over latency units and how a budget in user units maps to it."""

    name: str
    unit: str
    unit_cost: Callable[[LatencyUnit], float]
    base: float


def latency_cost(predictor: LatencyPredictor) -> CostModel:
    """Calibrated predicted latency, additive over units: the combiner's costs are predicted milliseconds."""
    return CostModel("latency", "ms", lambda u: predictor.calibrated_unit_cost(u.key), predictor.calibrated_base)


def counted_cost(space: SearchSpace, what: str) -> CostModel:
    """MACs or parameters (in millions), counted on each unit's module, as DNA searched by FLOPs/params."""
    if what not in ("macs", "params"):
        raise ValueError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {what!r}")

    def cost(unit: LatencyUnit) -> float:
        module = space.build_unit(unit)
        if what == "params":
            return sum(p.numel() for p in module.parameters()) / 1e6
        return count_macs(module, space.unit_input(unit)) / 1e6

    return CostModel(what, f"M{what}", cost, 0.0)


def arch_cost(space: SearchSpace, cost: CostModel, arch: Hashable) -> float:
    """One member's cost under ``cost`` on the combiner's scale (the base, the stem, its blocks' units, the head)."""
    state, total = space.initial_state(), cost.base + sum(cost.unit_cost(u) for u in space.stem_units())
    for block, candidate in enumerate(space.blocks_of(arch)):
        total += sum(cost.unit_cost(u) for u in space.block_units(block, candidate, state))
        state = space.block_output_state(block, candidate)
    return total + sum(cost.unit_cost(u) for u in space.head_units(state))
