"""The under-training check of block supernets: do deeper candidates rate worse than their own prefixes?"""

import json

import pytest

from hwnas.supernet.blocks import BlockSupernet
from hwnas.supernet.rating import deeper_worse, undertrained_warning
from hwnas.supernet.teacher import check_teacher, space_teacher
from search_spaces import get_space


def _block_supernet(block: int, separate_depths: bool = False) -> BlockSupernet:
    space = get_space("mbconv-tiny")
    teacher = space_teacher(space, space.assemble([space.block_candidates(b)[-1] for b in range(space.num_blocks)]))
    shapes = check_teacher(teacher, space)
    return BlockSupernet(space, block, shapes[block], shapes[block + 1], separate_depths=separate_depths)


@pytest.mark.parametrize("separate_depths", [False, True], ids=["shared prefixes", "separate depths"])
def test_deeper_worse_compares_each_candidate_with_its_own_prefix(separate_depths: bool):
    """Also where each depth has its own modules: the check compares candidates by the layers they build."""
    supernet = _block_supernet(0, separate_depths)
    depth = {str(c): str(c).count(",") + 1 for c in supernet.candidates}
    assert sorted(set(depth.values())) == [1, 2]
    deeper_is_worse = {name: {"l1_rel": 0.5 + 0.1 * d} for name, d in depth.items()}
    deeper_is_better = {name: {"l1_rel": 0.5 - 0.1 * d} for name, d in depth.items()}
    pairs = sum(1 for d in depth.values() if d == 2)  # every 2-layer candidate extends one 1-layer candidate
    assert deeper_worse(supernet, deeper_is_worse) == (pairs, pairs)
    assert deeper_worse(supernet, deeper_is_better) == (0, pairs)
    # one 2-layer candidate worse than its prefix, the rest better
    first = next(name for name, d in depth.items() if d == 2)
    prefix = first.split(",")[0]
    mixed = dict(deeper_is_better, **{first: {"l1_rel": deeper_is_better[prefix]["l1_rel"] + 0.01}})
    assert deeper_worse(supernet, mixed) == (1, pairs)
    assert deeper_worse(_block_supernet(5), {}) == (0, 0)  # the last block has one depth: nothing to compare


def test_warning_names_the_blocks_where_most_extensions_rate_worse():
    assert undertrained_warning([(0, 36), (18, 36), (0, 0)]) is None
    assert undertrained_warning([]) is None and undertrained_warning([(0, 0)]) is None
    message = undertrained_warning([(36, 36), (20, 36), (50, 72), (0, 0)])
    assert "block 0: 36/36" in message and "block 2: 50/72" in message and "block 1" not in message
    assert "--lr" in message and "--epochs" in message


def test_one_coarse_late_block_alone_does_not_warn():
    # a fresh demo's supernets (twins sharing modules): blocks 3 and 4 on 2x2 and 1x1 maps, 12 distinct functions each
    trained = [(11, 36), (11, 36), (0, 36), (162, 216), (216, 216), (0, 0)]
    assert undertrained_warning(trained) is None
    # DNA's lr 0.002 on digits: every block fails
    assert undertrained_warning([(36, 36), (34, 36), (30, 36), (200, 216), (216, 216), (0, 0)]) is not None


def test_ratings_record_the_check_for_every_block(tiny_run):
    data = json.loads((tiny_run / "ratings.json").read_text())
    checks = [entry["deeper_worse"] for entry in data["blocks"]]
    assert all(0 <= worse <= pairs for worse, pairs in checks)
    assert [pairs > 0 for _, pairs in checks] == [True] * 5 + [False]
    assert data["undertrained"] == undertrained_warning([tuple(c) for c in checks])
