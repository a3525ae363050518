"""Twin candidates (same functions at the space's resolution): the premise checked on real timm layers, the pooling,
and the combiner taking the cheapest twin."""

import pytest
import torch

from hwnas.search.combiner import Combiner
from hwnas.search.costs import counted_cost
from hwnas.supernet.twins import equivalence_classes, pool_equivalent, pooled_counts
from search_spaces import get_space


def _ir_units(space):
    units = {}
    for block in range(space.num_blocks):
        for state in space.block_input_states(block):
            for candidate in space.block_candidates(block):
                for unit in space.block_units(block, candidate, state):
                    units.setdefault((unit.param("k"), unit.param("s"), unit.input_shape[-1]), unit)
    return units


def test_taps_beyond_the_map_never_change_a_layer():
    """On every (kernel, stride, map size) of mbconv-tiny, perturbing the depthwise taps outside the reach that
    ``function_key`` keeps leaves the layer's output unchanged; where it keeps the whole kernel, the outer ring
    matters (so the key merges exactly the layers that are the same function)."""
    torch.manual_seed(0)
    space = get_space("mbconv-tiny")
    cut = reachable = 0
    for (k, _, res), unit in _ir_units(space).items():
        layer = space.build_unit(unit)
        x = space.unit_input(unit, batch=2)
        reach = min(k, 2 * res - 1)
        with torch.no_grad():
            before = layer(x)
            weight = layer.conv_dw.weight
            outside = torch.ones_like(weight, dtype=torch.bool)
            lo = (k - reach) // 2 if reach < k else 1  # reach == k: perturb only the outermost ring
            outside[..., lo:k - lo, lo:k - lo] = False
            weight[outside] += torch.randn(int(outside.sum()))
            after = layer(x)
        if reach < k:
            cut += 1
            torch.testing.assert_close(after, before, msg=f"k{k} on {res}x{res}: outer taps changed the output")
        else:
            reachable += 1
            assert not torch.allclose(after, before), f"k{k} on {res}x{res}: the outer ring should matter"
    assert cut and reachable


def test_classes_in_the_tiny_space_and_none_at_224():
    tiny = get_space("mbconv-tiny")
    counts = [len(equivalence_classes(tiny, b)) for b in range(tiny.num_blocks)]
    assert counts[:2] == [len(tiny.block_candidates(0)), len(tiny.block_candidates(1))]  # 8x8 and 16x16 maps
    assert counts[5] == 2  # 320 wide on 1x1: every kernel is a per-channel scale, only the expansion differs
    assert all(c < len(tiny.block_candidates(b)) for b, c in enumerate(counts) if b >= 2)
    assert ["320:e3k3", "320:e3k5", "320:e3k7"] in equivalence_classes(tiny, 5)
    dna = get_space("mbconv")
    for block in (0, 5):
        assert len(equivalence_classes(dna, block)) == len(dna.block_candidates(block))
    vit = get_space("vit-tiny")
    assert all(len(c) == 1 for b in range(vit.num_blocks) for c in equivalence_classes(vit, b))


def test_pooling_averages_twins_only():
    space = get_space("mbconv-tiny")
    ratings = [{str(c): float(i) for i, c in enumerate(space.block_candidates(b))} for b in range(space.num_blocks)]
    pooled = pool_equivalent(space, ratings)
    assert pooled[0] == ratings[0]  # no twins on 8x8
    assert pooled[5]["320:e3k3"] == pooled[5]["320:e3k7"] == pytest.approx((0 + 1 + 2) / 3)
    assert pooled[5]["320:e6k5"] == pytest.approx((3 + 4 + 5) / 3)
    for block in range(space.num_blocks):  # a family's total is kept
        for members in equivalence_classes(space, block):
            assert sum(pooled[block][m] for m in members) == pytest.approx(sum(ratings[block][m] for m in members))
    assert pooled_counts(space, ratings)[5] == {"rated": 6, "functions": 2}
    partial = [dict(r) for r in ratings]
    del partial[5]["320:e3k3"]  # pooled over the rated members only
    assert pool_equivalent(space, partial)[5]["320:e3k5"] == pytest.approx(1.5)


def test_pooling_refuses_ratings_of_another_space():
    space = get_space("mbconv-tiny")
    ratings = [{str(c): 0.0 for c in space.block_candidates(b)} for b in range(space.num_blocks)]
    with pytest.raises(ValueError, match="4 blocks of ratings for mbconv-tiny, which has 6"):
        pool_equivalent(space, ratings[:4])
    ratings[2]["999:e3k3"] = 1.0
    with pytest.raises(ValueError, match="block 2 rates .*999:e3k3.*not candidates of mbconv-tiny.*hwnas rate"):
        pool_equivalent(space, ratings)


def test_combiner_takes_the_cheapest_twin_after_pooling():
    """Raw ratings where the seed happened to favour the wide kernels of the last block: the combiner pays for
    them; pooled, it takes the k3 twin, which computes the same and costs fewer MACs."""
    space = get_space("mbconv-tiny")
    ratings = [{str(c): 0.0 for c in space.block_candidates(b)} for b in range(space.num_blocks)]
    ratings[5].update({"320:e6k3": -1.0, "320:e6k5": -1.1, "320:e6k7": -1.2})
    cost = counted_cost(space, "macs")
    raw = Combiner(space, ratings, cost.unit_cost, cost.base)
    pooled = Combiner(space, pool_equivalent(space, ratings), cost.unit_cost, cost.base)
    budget = raw.front[-1].cost + 1
    assert str(space.blocks_of(raw.best_under(budget).arch)[5]) == "320:e6k7"
    best = pooled.best_under(budget)
    assert str(space.blocks_of(best.arch)[5]) == "320:e6k3"
    assert best.rating == pytest.approx(-1.1)  # the family's mean
    assert best.cost < raw.best_under(budget).cost


def test_function_key_and_twin_units_agree():
    """Two candidates are one family exactly when their layers map to the same twin units, for every input width
    (the pooled ratings and the shared supernet modules group the same candidates)."""
    space = get_space("mbconv-tiny")
    for block in range(space.num_blocks):
        states = space.block_input_states(block)
        by_key, by_units = {}, {}
        for candidate in space.block_candidates(block):
            by_key.setdefault(space.function_key(block, candidate), set()).add(str(candidate))
            units = tuple(tuple(space.twin_unit(u) for u in space.block_units(block, candidate, s)) for s in states)
            by_units.setdefault(units, set()).add(str(candidate))
        assert sorted(map(sorted, by_key.values())) == sorted(map(sorted, by_units.values())), block
    unit = space.block_units(5, space.block_candidates(5)[-1], 160)[0]
    assert unit.param("k") == 7 and space.twin_unit(unit).param("k") == 3  # the narrowest kernel the space offers
    stem = space.stem_units()[0]
    assert space.twin_unit(stem) is stem
