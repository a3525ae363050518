"""PyTorch eager: CPU timed by the host clock, CUDA timed with CUDA events."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from profilers.protocol import Runner
from profilers.runtime import MissingRuntimeError, Runtime


class TorchEager(Runtime):
    """PyTorch eager mode on the CPU with ``threads`` intra-op threads (``torch.set_num_threads``)."""

    name = "torch"
    device = "cpu"

    def version(self) -> str:
        return torch.__version__

    def accelerator(self) -> str:
        return self.device

    def compile(self, items: Mapping[str, tuple[nn.Module, torch.Tensor]], workdir: Path) -> dict[str, Runner]:
        torch.set_num_threads(self.threads)
        return {key: self._runner(module, example) for key, (module, example) in items.items()}

    def _runner(self, module: nn.Module, example: torch.Tensor) -> Runner:
        module = module.eval()

        def run() -> None:
            with torch.inference_mode():
                module(example)

        return run


class TorchCuda(TorchEager):
    """PyTorch eager on the first CUDA GPU; each run timed with CUDA events (fp32 or fp16)."""

    name = "torch-cuda"
    device = "cuda"
    precisions = ("fp32", "fp16")

    def accelerator(self) -> str:
        return f"cuda:{torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cuda (absent)"

    def compile(self, items: Mapping[str, tuple[nn.Module, torch.Tensor]], workdir: Path) -> dict[str, Runner]:
        if not torch.cuda.is_available():
            raise MissingRuntimeError("runtime torch-cuda needs an NVIDIA GPU and a CUDA build of torch; none here")
        return super().compile(items, workdir)

    def _runner(self, module: nn.Module, example: torch.Tensor) -> Runner:
        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        module = module.eval().to("cuda", dtype)
        example = example.to("cuda", dtype)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def run() -> float:
            with torch.inference_mode():
                start.record()
                module(example)
                end.record()
            end.synchronize()
            return float(start.elapsed_time(end))

        return run
