"""The combiner is exact: it matches brute force on reduced spaces, for every budget."""

import hashlib
import random
import time

import pytest

from hwnas.search.combiner import Combiner, pareto_mask
from search_spaces import DNA_OPS, MBConvSpace, StageSpec, ViTSpace, get_space


def synthetic_cost(unit) -> float:
    """A deterministic positive cost per unit key (stands in for a latency table)."""
    return 0.1 + int(hashlib.sha1(unit.key.encode()).hexdigest()[:8], 16) / 2**32


def synthetic_ratings(space, seed=0):
    rng = random.Random(seed)
    return [{str(c): rng.random() for c in space.block_candidates(b)} for b in range(space.num_blocks)]


def coupled_space() -> MBConvSpace:
    # two-width stages, so a block's first layer cost depends on the previous block's choice
    return MBConvSpace("coupled", stages=(StageSpec((16, 24), 2, (1, 2)), StageSpec((24, 32), 2, (1, 2)),
                                          StageSpec((40, 48), 1, (1,))),
                       ops=DNA_OPS[:3], resolution=16, num_classes=3)


def tiny_vit() -> ViTSpace:
    return ViTSpace("v", block_depths=((1, 2), (1, 2)), heads=(2, 4), mlp_ratios=(2.0, 4.0), resolution=16,
                    patch_size=4, embed_dim=16, num_classes=3)


def arch_cost(space, arch) -> float:
    return sum(synthetic_cost(u) for u in space.units(arch))


def arch_rating(space, ratings, arch) -> float:
    parts = space.blocks_of(arch)
    return sum(ratings[b][str(c)] for b, c in enumerate(parts))


@pytest.mark.parametrize("space", [coupled_space(), tiny_vit()], ids=["mbconv-coupled", "vit"])
def test_combiner_matches_brute_force_for_every_budget(space):
    ratings = synthetic_ratings(space)
    combiner = Combiner(space, ratings, synthetic_cost)
    everything = [(arch_cost(space, a), arch_rating(space, ratings, a)) for a in space.enumerate()]
    costs = sorted(c for c, _ in everything)
    budgets = [costs[0]] + [costs[int(q * (len(costs) - 1))] for q in (0.01, 0.1, 0.3, 0.5, 0.8, 1.0)]
    for budget in budgets:
        best = min(r for c, r in everything if c <= budget + 1e-9)
        point = combiner.best_under(budget + 1e-9)
        assert point.rating == pytest.approx(best)
        assert point.cost <= budget + 1e-9
        assert arch_cost(space, point.arch) == pytest.approx(point.cost)
        assert arch_rating(space, ratings, point.arch) == pytest.approx(point.rating)


def test_front_is_strictly_pareto():
    space = coupled_space()
    front = Combiner(space, synthetic_ratings(space, 1), synthetic_cost).front
    assert all(a.cost < b.cost and a.rating > b.rating for a, b in zip(front, front[1:]))


def test_infeasible_budget_names_the_cheapest_possible():
    space = coupled_space()
    combiner = Combiner(space, synthetic_ratings(space), synthetic_cost)
    with pytest.raises(ValueError, match=f"cheapest in this space costs {combiner.min_cost:.4g}"):
        combiner.best_under(combiner.min_cost * 0.5)


def test_missing_ratings_are_reported():
    space = coupled_space()
    ratings = synthetic_ratings(space)
    ratings[1].pop(next(iter(ratings[1])))
    with pytest.raises(ValueError, match="block 1 ratings miss 1 of"):
        Combiner(space, ratings, synthetic_cost)


def test_pareto_mask_keeps_only_non_dominated_points():
    import numpy as np

    cost = np.array([3.0, 1.0, 2.0, 2.0, 4.0])
    rating = np.array([1.0, 5.0, 2.0, 3.0, 1.0])
    assert list(pareto_mask(cost, rating)) == [1, 2, 0]


def test_block_units_add_up_to_the_architecture_units():
    for name in ("mbconv", "mbconv-tiny", "vit-tiny"):
        space = get_space(name)
        rng = random.Random(3)
        for _ in range(20):
            arch = space.sample(rng)
            parts = space.blocks_of(arch)
            state, units = space.initial_state(), list(space.stem_units())
            for block, candidate in enumerate(parts):
                units += space.block_units(block, candidate, state)
                state = space.block_output_state(block, candidate)
            units += space.head_units(state)
            assert [u.key for u in units] == [u.key for u in space.units(arch)]


def test_full_mbconv_space_combines_quickly():
    space = get_space("mbconv")
    start = time.perf_counter()
    combiner = Combiner(space, synthetic_ratings(space), synthetic_cost)
    assert len(combiner.front) > 10
    assert time.perf_counter() - start < 120  # behaviour check only; the speed target lives in benchmarks/


@pytest.mark.parametrize("name", ["coupled", "vit-tiny"])
def test_arch_cost_is_the_cost_the_front_gives_each_point(name):
    from hwnas.search.costs import CostModel, arch_cost

    space = coupled_space() if name == "coupled" else get_space(name)
    combiner = Combiner(space, synthetic_ratings(space), synthetic_cost, base_cost=0.5)
    cost = CostModel("latency", "ms", synthetic_cost, 0.5)
    for point in combiner.front:
        assert arch_cost(space, cost, point.arch) == pytest.approx(point.cost)
