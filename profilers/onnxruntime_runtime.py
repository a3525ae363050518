"""ONNX Runtime: CPU execution provider (CUDA provider where present), threads fixed and recorded."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from profilers.onnx_export import export_onnx
from profilers.protocol import Runner
from profilers.runtime import MissingRuntimeError, Runtime, random_input


class OnnxRuntime(Runtime):
    """ONNX Runtime on the CPU, sequential execution, ``threads`` intra-op threads, all graph optimisations."""

    name = "onnxruntime"
    file_suffix = ".onnx"
    provider = "CPUExecutionProvider"

    def version(self) -> str:
        import onnxruntime

        return onnxruntime.__version__

    def accelerator(self) -> str:
        return self.provider

    def session(self, model: Path | bytes) -> object:
        """An inference session with this runtime's settings."""
        import onnxruntime as ort

        if self.provider not in ort.get_available_providers():
            raise MissingRuntimeError(
                f"ONNX Runtime here has no {self.provider} (available: {', '.join(ort.get_available_providers())});"
                " install onnxruntime-gpu on a CUDA machine, or use --runtime onnxruntime"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        source = str(model) if isinstance(model, Path) else model
        return ort.InferenceSession(source, options, providers=[self.provider])

    def write_model(self, module: nn.Module, example: torch.Tensor, path: Path) -> None:
        export_onnx(module, example, path)

    def load(self, path: Path) -> dict[str, Runner]:
        session = self.session(Path(path))
        (inp,) = session.get_inputs()
        if any(not isinstance(d, int) for d in inp.shape):
            raise ValueError(f"{path}: input {inp.name} has a dynamic shape {inp.shape}; export with a fixed shape")
        feed = {inp.name: random_input(tuple(inp.shape))}
        return {"main": lambda: session.run(None, feed)}


class OnnxRuntimeCuda(OnnxRuntime):
    """ONNX Runtime with the CUDA execution provider (needs onnxruntime-gpu and an NVIDIA GPU)."""

    name = "onnxruntime-cuda"
    provider = "CUDAExecutionProvider"
    precisions = ("fp32",)
