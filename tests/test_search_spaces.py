"""Search spaces: exact values, round trips, counts, builds, profiling units (parametrized over the registry)."""

import random

import pytest
import timm
import torch

from search_spaces import (
    DNA_OPS,
    MBConvArch,
    MBConvSpace,
    StageSpec,
    ViTSpace,
    get_space,
    list_spaces,
)

SPACES = list_spaces()
B0_ARCH_DEF = [
    ["ds_r1_k3_s1_e1_c16_se0.25"],
    ["ir_r2_k3_s2_e6_c24_se0.25"],
    ["ir_r2_k5_s2_e6_c40_se0.25"],
    ["ir_r3_k3_s2_e6_c80_se0.25"],
    ["ir_r3_k5_s1_e6_c112_se0.25"],
    ["ir_r4_k5_s2_e6_c192_se0.25"],
    ["ir_r1_k3_s1_e6_c320_se0.25"],
]
# DNA-a and DNA-d as published by the DNA authors (timm arch-def strings).
DNA_A = [
    ["ds_r1_k3_s1_c16_se0.25"],
    ["ir_r1_k5_s2_e3_c24_se0.25", "ir_r1_k3_s1_e3_c24_se0.25", "ir_r1_k3_s1_e6_c24_se0.25"],
    ["ir_r2_k3_s2_e3_c40_se0.25", "ir_r1_k5_s1_e3_c40_se0.25", "ir_r1_k3_s1_e6_c40_se0.25"],
    ["ir_r1_k7_s2_e6_c80_se0.25", "ir_r1_k3_s1_e3_c80_se0.25", "ir_r1_k5_s1_e3_c80_se0.25",
     "ir_r1_k3_s1_e6_c80_se0.25"],
    ["ir_r1_k5_s1_e6_c96_se0.25", "ir_r2_k5_s1_e3_c96_se0.25", "ir_r1_k5_s1_e6_c96_se0.25"],
    ["ir_r1_k5_s2_e6_c160_se0.25", "ir_r3_k5_s1_e3_c160_se0.25", "ir_r1_k5_s1_e6_c160_se0.25"],
    ["ir_r1_k3_s1_e6_c320_se0.25"],
]
DNA_D = [
    ["ds_r1_k3_s1_c16_se0.25"],
    ["ir_r1_k7_s2_e6_c24_se0.25", "ir_r1_k5_s1_e6_c24_se0.25", "ir_r1_k7_s1_e6_c24_se0.25"],
    ["ir_r4_k7_s2_e6_c40_se0.25"],
    ["ir_r1_k7_s2_e6_c80_se0.25", "ir_r2_k5_s1_e6_c80_se0.25", "ir_r1_k7_s1_e6_c80_se0.25"],
    ["ir_r1_k7_s1_e6_c112_se0.25", "ir_r1_k5_s1_e6_c112_se0.25", "ir_r1_k7_s1_e6_c112_se0.25",
     "ir_r1_k5_s1_e6_c112_se0.25"],
    ["ir_r1_k7_s2_e6_c192_se0.25", "ir_r3_k5_s1_e6_c192_se0.25", "ir_r1_k7_s1_e6_c192_se0.25"],
    ["ir_r1_k3_s1_e6_c320_se0.25"],
]


def reduced_mbconv() -> MBConvSpace:
    return MBConvSpace(
        "reduced",
        stages=(StageSpec((16,), 2, (1, 2)), StageSpec((24, 32), 2, (1,)), StageSpec((40,), 1, (1, 2))),
        ops=DNA_OPS[:2], resolution=16, num_classes=3, width_mult=1.0,
    )


def reduced_vit() -> ViTSpace:
    return ViTSpace("reduced-vit", block_depths=((1, 2), (1,)), heads=(2, 4), mlp_ratios=(2.0,),
                    resolution=16, patch_size=4, embed_dim=16, num_classes=3)


@pytest.mark.parametrize("name", SPACES)
def test_string_round_trip_over_many_random_archs(name):
    space = get_space(name)
    rng = random.Random(0)
    for _ in range(300):
        arch = space.sample(rng)
        text = str(arch)
        assert space.parse(text) == arch
        assert str(space.parse(text)) == text
        assert hash(space.parse(text)) == hash(arch)


@pytest.mark.parametrize("name", SPACES)
def test_architectures_are_frozen(name):
    arch = get_space(name).sample(random.Random(1))
    field = next(iter(arch.__dataclass_fields__))
    with pytest.raises(AttributeError):
        setattr(arch, field, ())


@pytest.mark.parametrize("space", [reduced_mbconv(), reduced_vit()], ids=["mbconv", "vit"])
def test_enumeration_matches_closed_form_count(space):
    archs = list(space.enumerate())
    assert len(archs) == space.count()
    assert len(set(archs)) == len(archs)
    for arch in archs:
        assert space.parse(str(arch)) == arch


def test_reduced_mbconv_count_by_hand():
    # stage 0: 2 ops^1 + 2 ops^2 = 6; stage 1: 2 widths x 2 = 4; stage 2: 6  -> 144
    assert reduced_mbconv().count() == 6 * 4 * 6


@pytest.mark.parametrize("name", SPACES)
def test_sampled_children_build_and_run(name):
    space = get_space(name)
    if space.resolution > 64:
        pytest.skip("full-resolution spaces are covered by the EfficientNet-B0 and ViT build tests")
    rng = random.Random(2)
    for _ in range(3):
        model = space.build(space.sample(rng))
        with torch.no_grad():
            out = model(space.example_input(batch=2))
        assert out.shape == (2, space.num_classes)
        assert torch.isfinite(out).all()


def test_full_vit_child_builds_and_runs():
    space = get_space("vit")
    model = space.build(space.sample(random.Random(3)))
    with torch.no_grad():
        assert model(space.example_input()).shape == (1, 1000)


def test_efficientnet_b0_is_a_member_with_timms_exact_parameter_count():
    space = get_space("mbconv")
    arch = space.from_timm_arch_def(B0_ARCH_DEF)
    assert str(arch) == "24:e6k3,e6k3|40:e6k5,e6k5|80:e6k3,e6k3,e6k3|112:e6k5,e6k5,e6k5|192:e6k5,e6k5,e6k5,e6k5|320:e6k3"
    assert space.to_timm_arch_def(arch) == B0_ARCH_DEF
    ours = sum(p.numel() for p in space.build(arch).parameters())
    timms = sum(p.numel() for p in timm.create_model("efficientnet_b0").parameters())
    assert ours == timms == 5_288_548


@pytest.mark.parametrize("arch_def", [DNA_A, DNA_D], ids=["DNA-a", "DNA-d"])
def test_dna_published_models_are_members_and_round_trip(arch_def):
    space = get_space("mbconv")
    arch = space.from_timm_arch_def(arch_def)
    assert space.from_timm_arch_def(space.to_timm_arch_def(arch)) == arch
    assert space.parse(str(arch)) == arch


def test_timm_arch_def_round_trip_over_random_archs():
    space = get_space("mbconv")
    rng = random.Random(4)
    for _ in range(200):
        arch = space.sample(rng)
        assert space.from_timm_arch_def(space.to_timm_arch_def(arch)) == arch


@pytest.mark.parametrize("name", SPACES)
def test_units_of_sampled_archs_are_in_the_whole_space_list(name):
    space = get_space(name)
    everything = {u.key for u in space.all_units()}
    assert len(everything) == len(space.all_units())
    rng = random.Random(5)
    seen = set()
    for _ in range(300):
        keys = [u.key for u in space.units(space.sample(rng))]
        assert set(keys) <= everything
        seen.update(keys)
    assert len(everything) < 500


def test_mbconv_unit_list_is_exact_for_a_reduced_space():
    space = reduced_mbconv()
    used = {u.key for arch in space.enumerate() for u in space.units(arch)}
    assert used == {u.key for u in space.all_units()}


@pytest.mark.parametrize("name", SPACES)
def test_every_unit_builds_and_matches_its_network_module(name):
    space = get_space(name)
    arch = space.sample(random.Random(6))
    units = space.units(arch)
    model = space.build(arch)
    unit_params = sum(sum(p.numel() for p in space.build_unit(u).parameters()) for u in units)
    assert unit_params == sum(p.numel() for p in model.parameters())
    if space.resolution <= 64:
        for unit in space.all_units():
            with torch.no_grad():
                space.build_unit(unit)(space.unit_input(unit))


@pytest.mark.parametrize("name", SPACES)
def test_mutate_changes_exactly_one_decision_and_stays_in_space(name):
    space = get_space(name)
    rng = random.Random(7)
    for _ in range(100):
        arch = space.sample(rng)
        neighbour = space.mutate(arch, rng)
        assert neighbour != arch
        assert space.parse(str(neighbour)) == neighbour


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "looks like"),
        ("24:e6k3|40:e6k5", "6 searchable stages"),
        ("24:e6k3|40:e4k5|80:e6k3|112:e6k5|192:e6k5|320:e6k3", "stage 1 layer 0 op: 'e4k5' is not allowed"),
        ("24:e6k3|40:e6k5|80:e6k3|100:e6k5|192:e6k5|320:e6k3", "stage 3 width: 100 is not allowed; choose one of: 96, 112"),
        ("24:e6k3|40:e6k5|80:e6k3|112:e6k5|192:e6k5|320:e6k3,e6k3", "stage 5 depth: 2 is not allowed"),
        ("24e6k3|40:e6k5|80:e6k3|112:e6k5|192:e6k5|320:e6k3", "stage 0: expected 'WIDTH:op,op,...'"),
    ],
)
def test_bad_mbconv_strings_name_position_and_choices(text, message):
    with pytest.raises(ValueError, match=message):
        get_space("mbconv").parse(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [("h2m2|h2m2", "3 blocks"), ("h3m2|h2m2|h2m2", "block 0 layer 0: 'h3m2' is not allowed"),
     ("h2m2,h2m2,h2m2|h2m2|h2m2", "block 0 depth: 3 is not allowed")],
)
def test_bad_vit_strings_name_position_and_choices(text, message):
    with pytest.raises(ValueError, match=message):
        get_space("vit-tiny").parse(text)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d[:-1], "7 stages"),
        (lambda d: [d[0], ["ir_r2_k3_s2_e4_c24_se0.25"], *d[2:]], "op: 'e4k3' is not allowed"),
        (lambda d: [d[0], ["ir_r2_k3_s2_e6_c32_se0.25"], *d[2:]], "width: 32 is not allowed"),
        (lambda d: [d[0], ["ir_r6_k3_s2_e6_c24_se0.25"], *d[2:]], "depth: 6 is not allowed"),
        (lambda d: [d[0], ["ir_r2_k3_s1_e6_c24_se0.25"], *d[2:]], "stride: 1 is not allowed"),
        (lambda d: [d[0], ["ir_r2_k3_s2_e6_c24"], *d[2:]], "se ratio"),
        (lambda d: [d[0], ["ir_r2_k3_s2_e6_c24_se0.25_nre"], *d[2:]], "activation"),
        (lambda d: [d[0], ["xx_r2"], *d[2:]], "timm could not decode"),
    ],
)
def test_out_of_space_arch_defs_raise_clear_errors(edit, message):
    with pytest.raises(ValueError, match=message):
        get_space("mbconv").from_timm_arch_def(edit(B0_ARCH_DEF))


def test_unknown_space_lists_known_ones():
    with pytest.raises(ValueError, match="known spaces: .*mbconv-tiny"):
        get_space("resnet")


def test_definition_hash_distinguishes_spaces():
    hashes = {get_space(name).definition_hash() for name in SPACES}
    assert len(hashes) == len(SPACES)


def test_info_reports_params_macs_and_blocks():
    space = get_space("mbconv-tiny")
    arch = space.sample(random.Random(8))
    info = space.info(arch)
    assert info["params"] == sum(p.numel() for p in space.build(arch).parameters())
    assert info["macs"] > 0
    assert len(info["blocks"]) == space.num_blocks
    assert info["space_size"] == space.count()
    assert isinstance(arch, MBConvArch)
