"""Depthwise convolutions on small CPU maps computed as dense per-channel matrices: the same function and gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hwnas.training.depthwise import dense_depthwise, fast_small_depthwise, is_plain_depthwise, tap_index, uses_dense
from search_spaces import get_space

CASES = [(size, kernel, stride, bias) for size in (1, 2, 3, 4, 8) for kernel in (3, 5, 7) for stride in (1, 2)
         for bias in (False, True) if (size + 2 * (kernel // 2) - kernel) // stride + 1 >= 1]


@pytest.mark.parametrize(("size", "kernel", "stride", "bias"), CASES)
def test_dense_form_matches_conv2d_and_its_gradients(size: int, kernel: int, stride: int, bias: bool) -> None:
    torch.manual_seed(size * 100 + kernel * 10 + stride)
    conv = nn.Conv2d(12, 12, kernel, stride, padding=((stride - 1) + (kernel - 1)) // 2, groups=12, bias=bias)
    x = torch.randn(5, 12, size, size, requires_grad=True)
    reference = conv(x)
    dense = dense_depthwise(x, conv)
    assert dense.shape == reference.shape
    torch.testing.assert_close(dense, reference, atol=1e-5, rtol=1e-5)
    weights = [x, *conv.parameters()]
    upstream = torch.randn_like(reference)
    expected = torch.autograd.grad(reference, weights, upstream)
    got = torch.autograd.grad(dense, weights, upstream)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, atol=1e-4, rtol=1e-4)


def test_taps_outside_the_map_get_no_index():
    index = tap_index(1, 1, (7, 7), (1, 1), (3, 3))
    assert index.tolist() == [[24]]  # the centre tap only: a 7x7 kernel on a 1x1 map is a per-channel scale
    assert tap_index(2, 2, (3, 3), (1, 1), (1, 1))[0].tolist() == [4, 5, 7, 8]
    with pytest.raises(ValueError, match="does not fit"):
        tap_index(2, 2, (7, 7), (1, 1), (0, 0))


def test_rule_picks_small_maps_and_wide_kernels():
    assert uses_dense(1, 1, (3, 3)) and uses_dense(2, 2, (3, 3)) and uses_dense(8, 8, (5, 5))
    assert not uses_dense(4, 4, (3, 3)) and not uses_dense(16, 16, (7, 7)) and not uses_dense(8, 8, (3, 3))


def test_a_timm_child_trains_the_same_and_keeps_its_modules():
    space = get_space("mbconv-tiny")
    torch.manual_seed(0)
    arch = space.parse("24:e6k5,e6k7|40:e6k5,e6k7|80:e6k7|112:e6k5,e6k3|160:e6k3,e3k7|320:e3k3")
    model = space.build(arch).train().double()  # in double precision the two forms agree to rounding (1e-10 here)
    x = torch.randn(8, *space.input_shape, dtype=torch.float64)
    depthwise = [m for m in model.modules() if is_plain_depthwise(m)]
    assert depthwise and all(type(m) is nn.Conv2d for m in depthwise)
    keys = list(model.state_dict())
    reference = model(x)
    expected = torch.autograd.grad(reference.square().sum(), list(model.parameters()))
    with fast_small_depthwise(model) as switched:
        assert switched == len(depthwise)
        with fast_small_depthwise(model) as again:
            assert again == 0  # already switched: nested use changes nothing
        output = model(x)
        got = torch.autograd.grad(output.square().sum(), list(model.parameters()))
        assert list(model.state_dict()) == keys
    torch.testing.assert_close(output, reference, atol=1e-9, rtol=1e-9)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, atol=1e-7, rtol=1e-9)
    assert all("forward" not in m.__dict__ for m in depthwise), "leaving the block restores every layer"
    with fast_small_depthwise(model, enabled=False) as switched:
        assert switched == 0


def test_pointwise_grouped_and_dilated_convolutions_are_left_alone():
    assert not is_plain_depthwise(nn.Conv2d(8, 16, 1))
    assert not is_plain_depthwise(nn.Conv2d(8, 8, 3, groups=2))
    assert not is_plain_depthwise(nn.Conv2d(8, 8, 3, groups=8, dilation=2))
    assert not is_plain_depthwise(nn.Conv2d(8, 8, 3, groups=8, padding="same"))
    assert is_plain_depthwise(nn.Conv2d(8, 8, 3, groups=8, padding=1))
