"""Faster CPU training of depthwise convolutions on small feature maps.

PyTorch's CPU kernels for depthwise convolutions are slow in the backward pass on the small maps a 32 px network ends
with: one training step of a mid-sized ``mbconv-tiny`` child spent most of its time in ``convolution_backward``, and a
7x7 depthwise layer on a 1x1 map (64 x 240 channels) took about 30 ms forward and backward, against under 1 ms for
the same arithmetic as a batched matrix product. On a map of ``H x W`` pixels a depthwise convolution is, per
channel, a fixed ``(H'W') x (HW)`` matrix whose entries are the kernel's taps (zero where a tap falls on padding), so
it can be computed as one ``einsum`` with that matrix gathered from the weights; autograd then gives the input and
weight gradients of the same function.

``fast_small_depthwise(model)`` switches every plain ``nn.Conv2d`` depthwise layer of a model to that form while the
block runs, for inputs on the CPU whose map is small enough that the matrix is cheaper (``uses_dense``); the
parameters and the state dict stay those of the layer, so checkpoints, export and every other use see the timm
module unchanged. The result equals ``F.conv2d`` up to float rounding (tested, forward and both gradients).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import torch
import torch.nn.functional as F
from torch import nn


def uses_dense(height: int, width: int, kernel: tuple[int, int]) -> bool:
    """Whether the dense form is the faster one (measured forward and backward on 1 thread, batch 64): on maps of
    up to 2x2 pixels for every kernel, and up to 8x8 for kernels of 5x5 and wider (3-20x faster). PyTorch's own 3x3
    kernel is as fast or faster from 4x4 up, and on larger maps the dense form's cost, which grows with the map's
    size squared, loses."""
    pixels = height * width
    return pixels <= 4 or (pixels <= 64 and kernel[0] * kernel[1] >= 25)


@cache
def tap_index(height: int, width: int, kernel: tuple[int, int], stride: tuple[int, int],
              padding: tuple[int, int]) -> torch.Tensor:
    """``index[o, i]``: which kernel tap joins input pixel ``i`` to output pixel ``o`` (``kh * kw``: none)."""
    out_h = (height + 2 * padding[0] - kernel[0]) // stride[0] + 1
    out_w = (width + 2 * padding[1] - kernel[1]) // stride[1] + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"a {kernel} kernel with padding {padding} does not fit a {height}x{width} map")
    oy, ox = torch.meshgrid(torch.arange(out_h), torch.arange(out_w), indexing="ij")
    iy, ix = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    dy = iy.reshape(1, -1) - (oy.reshape(-1, 1) * stride[0] - padding[0])
    dx = ix.reshape(1, -1) - (ox.reshape(-1, 1) * stride[1] - padding[1])
    inside = (dy >= 0) & (dy < kernel[0]) & (dx >= 0) & (dx < kernel[1])
    none = kernel[0] * kernel[1]
    return torch.where(inside, dy * kernel[1] + dx, torch.full_like(dy, none))


def dense_depthwise(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv(x)`` for a depthwise ``conv`` (groups = channels, multiplier 1, zero padding), as one batched product
    with each channel's ``(H'W') x (HW)`` matrix of taps."""
    batch, channels, height, width = x.shape
    kernel = tuple(conv.weight.shape[-2:])  # as F.conv2d reads it (a functional_call may pass other weights)
    stride, padding = conv.stride, conv.padding
    index = tap_index(height, width, kernel, stride, padding)
    taps = torch.cat([conv.weight.reshape(channels, -1), conv.weight.new_zeros(channels, 1)], dim=1)
    out = torch.einsum("nci,coi->nco", x.reshape(batch, channels, height * width), taps[:, index])
    out_h = (height + 2 * padding[0] - kernel[0]) // stride[0] + 1
    out = out.reshape(batch, channels, out_h, -1)
    return out if conv.bias is None else out + conv.bias.view(1, channels, 1, 1)


def is_plain_depthwise(module: nn.Module) -> bool:
    """A plain ``nn.Conv2d`` (not a subclass with its own padding rule) that is depthwise with multiplier 1, zero
    numeric padding and no dilation: the layers ``dense_depthwise`` computes exactly."""
    return (type(module) is nn.Conv2d and module.groups == module.in_channels == module.out_channels
            and module.groups > 1 and module.dilation == (1, 1) and module.padding_mode == "zeros"
            and isinstance(module.padding, tuple))


def _forward(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    if x.device.type == "cpu" and x.dim() == 4 and uses_dense(x.shape[-2], x.shape[-1], tuple(conv.weight.shape[-2:])):
        return dense_depthwise(x, conv)
    return F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)


@contextmanager
def fast_small_depthwise(model: nn.Module, enabled: bool = True) -> Iterator[int]:
    """Within the block, every plain depthwise layer of ``model`` computes small CPU maps in the dense form; yields
    how many layers were switched. Nested or repeated use is harmless; leaving the block restores every layer."""
    switched = []
    if enabled:
        for module in model.modules():
            if is_plain_depthwise(module) and "forward" not in module.__dict__:
                module.forward = _forward.__get__(module)  # an instance attribute: the class stays nn.Conv2d
                switched.append(module)
    try:
        yield len(switched)
    finally:
        for module in switched:
            del module.forward
