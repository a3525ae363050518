"""MixNet's multi-branch layer as an op of the MBConv spaces: written as timm writes it, built by timm as a
``MixedConv2d``, opt-in per space (the other spaces' strings and unit keys do not change), profiled, distilled and
rated as a candidate, exported to ONNX and TFLite with parity."""

import pytest
import torch
from timm.layers import MixedConv2d

from hwnas.data import load_data
from hwnas.ship.export import calibrate_batchnorm, export_file, parity
from hwnas.supernet.blocks import BlockSupernet
from profilers import get_runtime
from search_spaces import MBConvOp, get_space

MIXED = "24:e6k3.5.7,e3k3|40:e3k3.5.7|80:e6k5|112:e6k3.5.7,e6k7|160:e6k3.5.7|320:e6k3.5.7"


def test_the_mixed_op_round_trips_through_strings_and_timm_and_builds_mixed_convolutions():
    space = get_space("mbconv-tiny-64-mix")
    arch = space.parse(MIXED)
    assert str(arch) == MIXED and arch.stages[0].ops[0] == MBConvOp.of(6, (7, 5, 3))
    assert space.to_timm_arch_def(arch)[1][0] == "ir_r1_k3.5.7_s2_e6_c24_se0.25"
    assert space.from_timm_arch_def(space.to_timm_arch_def(arch)) == arch
    model = space.build(arch)
    mixed = [layer.conv_dw for layer in space.searchable_layers(model) if isinstance(layer.conv_dw, MixedConv2d)]
    assert len(mixed) == 5 and [c.kernel_size for c in mixed[0].values()] == [(3, 3), (5, 5), (7, 7)]
    with torch.no_grad():
        assert model(space.example_input(batch=2)).shape == (2, 62)
    # each mixed layer is its own latency unit, built as the very module the network holds
    units = [u for u in space.units(arch) if u.kind == "mbconv_ir"]
    assert units[0].param("k") == "3.5.7" and units[1].param("k") == 3
    layer = space.build_unit(units[0])
    assert {k: v.shape for k, v in layer.state_dict().items()} == {
        k: v.shape for k, v in space.searchable_layers(model)[0].state_dict().items()}
    assert set(space.all_units()) >= set(space.units(arch))


def test_the_op_is_opt_in_and_spelled_one_way():
    plain = get_space("mbconv-tiny-64")
    with pytest.raises(ValueError, match="is not allowed"):
        plain.parse(MIXED)
    mix = get_space("mbconv-tiny-64-mix")
    with pytest.raises(ValueError, match="is not allowed"):
        mix.parse(MIXED.replace("e6k3.5.7,e3k3", "e6k7.5.3,e3k3"))  # kernels ascend
    with pytest.raises(ValueError, match="distinct ascending kernels"):
        MBConvOp(6, 5, (3, 7))
    # the spaces without it keep their unit keys (tables measured before stay valid)
    assert all("k=3.5.7" not in u.key for u in plain.all_units())
    assert set(plain.all_units()) < set(mix.all_units())


def test_a_block_supernet_trains_and_runs_its_mixed_candidates():
    space = get_space("mbconv-tiny-64-mix")
    block = 3
    candidates = [c for c in space.block_candidates(block) if any(op.mixed for op in c.ops)]
    assert candidates  # 2 mixed ops of 8, one or two layers: 8*8 - 6*6 + 2 = 30 per width
    arch = space.parse(MIXED)
    shapes = space.describe_blocks(arch)
    teacher_in, teacher_out = tuple(shapes[block]["input_shape"]), tuple(shapes[block]["output_shape"])
    supernet = BlockSupernet(space, block, teacher_in, teacher_out, share_twins=True)
    state = space.blocks_of(arch)[block - 1].width
    x, target = torch.randn(4, *teacher_in), torch.randn(4, *teacher_out)
    candidate = arch.stages[block]
    out = supernet(x, state, candidate)
    loss = torch.nn.functional.mse_loss(out, target)
    loss.backward()
    mixed_layer = supernet.candidate_layers(candidate, state)[0]
    assert isinstance(mixed_layer.conv_dw, MixedConv2d)
    assert all(conv.weight.grad is not None for conv in mixed_layer.conv_dw.values())


def test_a_mixed_child_exports_to_onnx_and_tflite_with_parity_and_its_unit_measures(tmp_path):
    space = get_space("mbconv-tiny-64-mix")
    bundle = load_data("glyphs", space.resolution)
    torch.manual_seed(0)
    model = calibrate_batchnorm(space.build(space.parse(MIXED)), bundle)
    for fmt in ("onnx", "tflite"):
        exported = export_file(model, space, fmt, "fp32", tmp_path, "mixed", bundle)
        checked = parity(model, exported, bundle, limit=32)
        assert checked["max_abs_diff"] < 1e-3 and checked["top1_agreement"] == 1.0
    # its latency unit goes through both runtimes' unit path (what 'hwnas profile' times)
    unit = next(u for u in space.units(space.parse(MIXED)) if "k=3.5.7" in u.key)
    for runtime in ("onnxruntime", "litert"):
        runners = get_runtime(runtime, 1, "fp32").compile(
            {unit.key: (space.build_unit(unit), torch.randn(1, *unit.input_shape))}, tmp_path)
        runners[unit.key]()  # runs (the runners return what the runtime's call returns, None for LiteRT)
