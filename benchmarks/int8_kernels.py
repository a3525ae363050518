"""Benchmark: where int8 is faster than fp32 and where it is not, op by op and network by network.

Each case is written fp32 and int8 (``profilers``' own writers: litert-torch + ai-edge-quantizer ``static_wi8_ai8``
for TFLite, ``onnxruntime.quantization`` static QDQ, uint8 activations and per-channel int8 weights, for ONNX) and
measured in one interleaved pass per runtime (1 thread, p10 of the profilers' protocol) on three kernel sets: LiteRT
with XNNPACK (``litert``, the default), LiteRT's built-in kernels (``litert-builtin``) and ONNX Runtime's CPU provider.

Ops are chains of 4 identical layers (depthwise convolutions with 3x3, 5x5 and 7x7 kernels at 16x16, 4x4 and 1x1
maps, 1x1 convolutions, swish, hard-swish, squeeze-excite); networks are the demo's child at 32 px, three sampled
``mbconv`` children at 224 px, timm's EfficientNet-B0 and MobileNetV3-Large (random weights: latency only).
Doc: ``benchmarks/docs/int8_kernels.md``.

    python benchmarks/int8_kernels.py --name xeon   # about 15 min on 2 cores; --ops-only for the op table
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path
from typing import Any

import torch
from _common import print_table, write_result
from torch import nn

RUNTIMES = ("litert", "litert-builtin", "onnxruntime")


class SqueezeExcite(nn.Module):
    """The squeeze-excite of an MBConv block: mean, reduce, swish, expand, sigmoid, scale."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.reduce, self.expand = nn.Conv2d(channels, channels // 4, 1), nn.Conv2d(channels // 4, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.expand(nn.functional.silu(self.reduce(x.mean((2, 3), keepdim=True)))))


def op_cases(channels: int = 96) -> dict[str, tuple[nn.Module, torch.Tensor]]:
    """Chains of 4 identical layers, each with its input."""
    cases: dict[str, tuple[nn.Module, torch.Tensor]] = {}
    for kernel in (3, 5, 7):
        for size in (16, 4, 1):
            layers = [nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels) for _ in range(4)]
            cases[f"depthwise {kernel}x{kernel} @{size}x{size}"] = (nn.Sequential(*layers),
                                                                   torch.randn(1, channels, size, size))
    x = torch.randn(1, channels, 16, 16)
    cases["conv 1x1 @16x16"] = (nn.Sequential(*[nn.Conv2d(channels, channels, 1) for _ in range(4)]), x)
    for name, make in (("swish", nn.SiLU), ("hard-swish", nn.Hardswish), ("relu", nn.ReLU)):
        cases[f"{name} @16x16"] = (nn.Sequential(*[make() for _ in range(4)]), x)
    cases["squeeze-excite @16x16"] = (nn.Sequential(*[SqueezeExcite(channels) for _ in range(4)]), x)
    return cases


def network_cases(archs: int) -> dict[str, tuple[nn.Module, torch.Tensor]]:
    """The demo's child, ``archs`` sampled ``mbconv`` children and two timm networks."""
    import timm

    from search_spaces import get_space

    tiny, full = get_space("mbconv-tiny"), get_space("mbconv")
    cases = {"demo child (mbconv-tiny, 32 px)": (tiny.build(tiny.sample(random.Random(1))), tiny.example_input())}
    rng = random.Random(0)
    for index in range(archs):
        arch = full.sample(rng)
        cases[f"mbconv child {index} (224 px): {arch}"] = (full.build(arch), full.example_input())
    for name in ("efficientnet_b0", "mobilenetv3_large_100"):
        cases[f"{name} (timm, 224 px)"] = (timm.create_model(name, pretrained=False), torch.randn(1, 3, 224, 224))
    return cases


def measure_cases(cases: dict[str, tuple[nn.Module, torch.Tensor]], protocol: Any) -> dict[str, dict[str, float]]:
    """p10 (ms) of every case, fp32 and int8, on each runtime: one interleaved pass per runtime."""
    from profilers import get_runtime
    from profilers.protocol import measure

    out: dict[str, dict[str, float]] = {name: {} for name in cases}
    items = {(name, precision): (module.eval(), example) for name, (module, example) in cases.items()
             for precision in ("fp32", "int8")}
    with tempfile.TemporaryDirectory() as tmp:
        for runtime_name in RUNTIMES:
            runners = {}
            for (name, precision), item in items.items():
                runtime = get_runtime(runtime_name, 1, precision)
                folder = Path(tmp) / f"{runtime_name}-{precision}-{len(runners)}"
                folder.mkdir()
                runners[f"{name}|{precision}"] = runtime.compile({"m": item}, folder)["m"]
            print(f"{runtime_name}: measuring {len(runners)} models", flush=True)
            stats = measure(runners, protocol)
            for key, value in stats.items():
                name, precision = key.rsplit("|", 1)
                out[name][f"{runtime_name} {precision}"] = value.get(protocol.statistic)
    return out


def ratio_rows(measured: dict[str, dict[str, float]]) -> list[list[str]]:
    """One row per case: fp32 ms and int8/fp32 on each runtime."""
    rows = []
    for name, values in measured.items():
        row = [name]
        for runtime in RUNTIMES:
            fp32, int8 = values[f"{runtime} fp32"], values[f"{runtime} int8"]
            row += [f"{fp32:.3f}", f"{int8 / fp32:.2f}x"]
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=3, help="sampled mbconv children at 224 px")
    parser.add_argument("--ops-only", action="store_true", help="the op table only (a few minutes)")
    parser.add_argument("--quick", action="store_true", help="the short, noisier protocol")
    parser.add_argument("--name", default="int8_kernels")
    args = parser.parse_args()
    from profilers import Protocol, get_runtime

    torch.set_num_threads(1)
    protocol = Protocol.quick() if args.quick else Protocol(min_span_s=2.0)
    header = ["case"] + [f"{r} {k}" for r in RUNTIMES for k in ("fp32 ms", "int8/fp32")]
    ops = measure_cases(op_cases(), protocol)
    print_table(ratio_rows(ops), header)
    networks = {} if args.ops_only else measure_cases(network_cases(args.archs), protocol)
    if networks:
        print_table(ratio_rows(networks), header)
    write_result("int8_kernels", args.name, {
        "ops": ops, "networks": networks, "protocol": protocol.to_dict(), "threads": 1, "batch": 1,
        "runtimes": {r: {"accelerator": get_runtime(r).accelerator(), "version": get_runtime(r).version()}
                     for r in RUNTIMES},
        "recipes": {"tflite int8": "profilers.litert_runtime.int8_recipe: ai-edge-quantizer static_wi8_ai8 with "
                                   "hard-swish and depthwise convolutions of kernel >= 7 kept in float; 8 "
                                   "random-normal calibration inputs",
                    "onnx int8": "onnxruntime.quantization.quantize_static, QDQ, uint8 activations, per-channel "
                                 "int8 weights, 8 random-normal calibration inputs; spatial means (squeeze-excite) "
                                 "as global pools (profilers.onnxruntime_runtime.spatial_means_as_pools)"},
        "note": "random weights: latency only (top-1 agreement of trained children: tests/test_export.py)",
    })


if __name__ == "__main__":
    main()
