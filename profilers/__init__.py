"""How a device is measured: runtimes, the measurement protocol, latency tables and the calibrated predictor.

Heavy or platform-bound runtimes (LiteRT, TensorRT, CUDA) are imported only when asked for.
"""

from __future__ import annotations

import importlib

from profilers.protocol import Protocol, measure
from profilers.runtime import MissingRuntimeError, ModelRef, Runtime
from profilers.stats import LatencyStats

_RUNTIMES = {
    "onnxruntime": ("profilers.onnxruntime_runtime", "OnnxRuntime"),
    "onnxruntime-cuda": ("profilers.onnxruntime_runtime", "OnnxRuntimeCuda"),
    "litert": ("profilers.litert_runtime", "LiteRT"),
    "litert-builtin": ("profilers.litert_runtime", "LiteRTBuiltin"),
    "torch": ("profilers.torch_runtime", "TorchEager"),
    "torch-cuda": ("profilers.torch_runtime", "TorchCuda"),
    "tensorrt": ("profilers.tensorrt_runtime", "TensorRT"),
}


def list_runtimes() -> list[str]:
    """Names of every runtime hwnas can measure with (some need optional packages or a GPU)."""
    return sorted(_RUNTIMES)


def runtime_class(name: str) -> type[Runtime]:
    """The Runtime class registered as ``name``."""
    if name not in _RUNTIMES:
        raise ValueError(f"unknown runtime {name!r}; choose one of: {', '.join(list_runtimes())}")
    module_name, class_name = _RUNTIMES[name]
    return getattr(importlib.import_module(module_name), class_name)


def get_runtime(name: str, threads: int = 1, precision: str = "fp32") -> Runtime:
    """A runtime instance with fixed threads and precision."""
    return runtime_class(name)(threads=threads, precision=precision)


__all__ = ["LatencyStats", "MissingRuntimeError", "ModelRef", "Protocol", "Runtime", "get_runtime",
           "list_runtimes", "measure", "runtime_class"]
