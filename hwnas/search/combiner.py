"""The exact combiner: the best-rated architecture under a cost budget, for every budget at once.

Minimising the sum of block ratings under a cost budget is a multiple-choice knapsack whose blocks are coupled by
the width one block hands the next (it changes the next block's first layer). The combiner keeps, for each such
state, the Pareto front of (cost, rating) of partial architectures, merges it with each block's own per-state front,
and prunes to the Pareto front again. Every point ever dropped is dominated by one kept with the same state, so the
final front holds the exact optimum for every budget.

Cost is additive over latency units (the predictor's raw sum: overhead + unit costs) or any other additive cost
(MACs, params); a monotone calibration on top keeps the ordering, so budgets are mapped through its inverse.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from search_spaces import LatencyUnit, SearchSpace


@dataclass(frozen=True)
class FrontPoint:
    """One Pareto-optimal architecture: its additive cost, its summed rating and the architecture."""

    cost: float
    rating: float
    arch: Hashable


@dataclass
class _Front:
    """Pareto front of partial architectures ending in one state (arrays sorted by increasing cost)."""

    cost: np.ndarray
    rating: np.ndarray
    back: list[tuple[int, int, int]]  # (previous state index, previous point, candidate index) per point


def pareto_mask(cost: np.ndarray, rating: np.ndarray) -> np.ndarray:
    """Indices (sorted by cost) of the points no other point beats on both cost and rating."""
    order = np.lexsort((rating, cost))
    sorted_rating = rating[order]
    best_before = np.minimum.accumulate(np.concatenate(([np.inf], sorted_rating[:-1])))
    return order[sorted_rating < best_before]


class Combiner:
    """Built once from a space, block ratings and a unit cost; then answers any budget exactly."""

    def __init__(
        self,
        space: SearchSpace,
        ratings: Sequence[Mapping[str, float]],
        unit_cost: Callable[[LatencyUnit], float],
        base_cost: float = 0.0,
    ) -> None:
        if len(ratings) != space.num_blocks:
            raise ValueError(f"ratings cover {len(ratings)} blocks, space {space.name} has {space.num_blocks}")
        self.space = space
        self._unit_cost: dict[LatencyUnit, float] = {}
        self._cost_fn = unit_cost
        started = time.perf_counter()
        self.blocks = [self._block_table(i, ratings[i]) for i in range(space.num_blocks)]
        for block in range(space.num_blocks):
            for state in space.block_input_states(block):
                self._block_front(block, state)
        merging = time.perf_counter()
        self.front = self._combine(base_cost)
        self.timings = {"cost_tables_s": merging - started, "merge_s": time.perf_counter() - merging}

    def _cost(self, units: Sequence[LatencyUnit]) -> float:
        total = 0.0
        for unit in units:
            cost = self._unit_cost.get(unit)
            if cost is None:
                cost = self._unit_cost[unit] = float(self._cost_fn(unit))
            total += cost
        return total

    def _block_table(self, block: int, ratings: Mapping[str, float]) -> dict[str, Any]:
        """Per input state: the candidates on that state's (cost, rating) Pareto front."""
        candidates = self.space.block_candidates(block)
        missing = [str(c) for c in candidates if str(c) not in ratings]
        if missing:
            raise ValueError(f"block {block} ratings miss {len(missing)} of {len(candidates)} candidates "
                             f"(e.g. {missing[0]!r}); rate every candidate ('hwnas rate') or restrict the space")
        rating = np.array([float(ratings[str(c)]) for c in candidates])
        if not np.isfinite(rating).all():
            raise ValueError(f"block {block} has non-finite ratings; re-run the rating")
        outputs = [self.space.block_output_state(block, c) for c in candidates]
        return {"candidates": candidates, "rating": rating, "outputs": outputs, "per_state": {}}

    def _block_front(self, block: int, state: Hashable) -> dict[Hashable, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """For one input state: per output state, the Pareto candidates (indices, costs, ratings)."""
        table = self.blocks[block]
        if state not in table["per_state"]:
            cost = np.array([self._cost(self.space.block_units(block, c, state)) for c in table["candidates"]])
            by_output: dict[Hashable, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
            outputs = np.array([str(o) for o in table["outputs"]])
            for output in dict.fromkeys(table["outputs"]):
                members = np.flatnonzero(outputs == str(output))
                keep = members[pareto_mask(cost[members], table["rating"][members])]
                by_output[output] = (keep, cost[keep], table["rating"][keep])
            table["per_state"][state] = by_output
        return table["per_state"][state]

    def _combine(self, base_cost: float) -> list[FrontPoint]:
        space = self.space
        start_cost = base_cost + self._cost(space.stem_units())
        states: list[Hashable] = [space.initial_state()]
        fronts = [_Front(np.array([start_cost]), np.array([0.0]), [(-1, -1, -1)])]
        history: list[tuple[list[Hashable], list[_Front]]] = []
        for block in range(space.num_blocks):
            merged: dict[Hashable, tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]] = {}
            for state_index, (state, front) in enumerate(zip(states, fronts)):
                for output, (candidates, cost, rating) in self._block_front(block, state).items():
                    total_cost = (front.cost[:, None] + cost[None, :]).ravel()
                    total_rating = (front.rating[:, None] + rating[None, :]).ravel()
                    point = np.repeat(np.arange(len(front.cost)), len(cost))
                    candidate = np.tile(candidates, len(front.cost))
                    parts = merged.setdefault(output, ([], [], []))
                    parts[0].append(total_cost)
                    parts[1].append(total_rating)
                    parts[2].append(np.stack([np.full_like(point, state_index), point, candidate], axis=1))
            history.append((states, fronts))
            states, fronts = [], []
            for output, (costs, ratings, backs) in merged.items():
                cost, rating, back = np.concatenate(costs), np.concatenate(ratings), np.concatenate(backs)
                keep = pareto_mask(cost, rating)
                states.append(output)
                fronts.append(_Front(cost[keep], rating[keep], [tuple(int(v) for v in b) for b in back[keep]]))
        history.append((states, fronts))
        return self._final_front(history)

    def _final_front(self, history: list[tuple[list[Hashable], list[_Front]]]) -> list[FrontPoint]:
        states, fronts = history[-1]
        cost = np.concatenate([f.cost + self._cost(self.space.head_units(s)) for s, f in zip(states, fronts)])
        rating = np.concatenate([f.rating for f in fronts])
        where = [(i, j) for i, f in enumerate(fronts) for j in range(len(f.cost))]
        points = []
        for index in pareto_mask(cost, rating):
            state_index, point = where[index]
            points.append(FrontPoint(float(cost[index]), float(rating[index]),
                                     self._trace(history, state_index, point)))
        return points

    def _trace(self, history: list[tuple[list[Hashable], list[_Front]]], state_index: int, point: int) -> Hashable:
        chosen = []
        for block in range(self.space.num_blocks, 0, -1):
            front = history[block][1][state_index]
            previous_state, previous_point, candidate = front.back[point]
            chosen.append(self.blocks[block - 1]["candidates"][candidate])
            state_index, point = previous_state, previous_point
        return self.space.assemble(list(reversed(chosen)))

    @property
    def min_cost(self) -> float:
        """The cheapest architecture's cost."""
        return self.front[0].cost

    def best_under(self, budget: float) -> FrontPoint:
        """The best-rated architecture whose cost is <= ``budget``; ValueError gives the cheapest possible."""
        feasible = [p for p in self.front if p.cost <= budget]
        if not feasible:
            raise ValueError(f"no architecture fits a budget of {budget:.4g}; the cheapest in this space costs "
                             f"{self.min_cost:.4g}")
        return feasible[-1]

    def near(self, budget: float, count: int) -> list[FrontPoint]:
        """The ``count`` front points closest below the budget (best first): seeds for refinement."""
        feasible = [p for p in self.front if p.cost <= budget]
        return list(reversed(feasible[-count:]))
