"""TensorRT: an engine built from ONNX with the tensorrt Python API (fp32/fp16/int8), timed with CUDA events.

TensorRT is an optional extra (``pip install 'hwnas[tensorrt]'`` on an NVIDIA machine); it is imported lazily and
its absence gives a clear MissingRuntimeError.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from profilers.onnx_export import export_onnx
from profilers.protocol import Runner
from profilers.runtime import MissingRuntimeError, Runtime


def import_tensorrt() -> object:
    """The tensorrt module, or MissingRuntimeError saying how to get it."""
    try:
        import tensorrt
    except ImportError as error:
        raise MissingRuntimeError(
            "TensorRT is not installed: on a machine with an NVIDIA GPU run pip install 'hwnas[tensorrt]' "
            "(it cannot be installed on CPU-only machines)"
        ) from error
    if not torch.cuda.is_available():
        raise MissingRuntimeError("TensorRT needs an NVIDIA GPU with CUDA; torch sees none here")
    return tensorrt


def build_engine(onnx_bytes: bytes, precision: str = "fp16", calibration: object | None = None) -> bytes:
    """Parse ONNX and build a serialized engine with the precision flag set; int8 needs a calibrator."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ValueError(f"TensorRT could not parse the ONNX model: {errors}")
    config = builder.create_builder_config()
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "int8":
        if calibration is None:
            raise ValueError("an int8 TensorRT engine needs calibration data (a calibrator over real batches)")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibration
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT failed to build the engine (see its log above)")
    return bytes(serialized)


def int8_calibrator(images: np.ndarray, cache: Path) -> object:
    """An entropy calibrator feeding ``images`` (N, C, H, W float32) one at a time; caches its table in ``cache``."""
    trt = import_tensorrt()

    class _Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.index = 0
            self.device = torch.empty((1, *images.shape[1:]), device="cuda")

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.index >= len(images):
                return None
            self.device.copy_(torch.from_numpy(images[self.index:self.index + 1]))
            self.index += 1
            return [int(self.device.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            return Path(cache).read_bytes() if Path(cache).exists() else None

        def write_calibration_cache(self, data: bytes) -> None:
            Path(cache).write_bytes(bytes(data))

    return _Calibrator()


def engine_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """Run a serialized engine on real inputs (numpy in, numpy out) for parity checks."""
    trt = import_tensorrt()
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(Path(path).read_bytes())
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    outputs = [n for n in names if n not in inputs]
    buffers = {n: torch.empty(tuple(engine.get_tensor_shape(n)), device="cuda") for n in names}
    for name, tensor in buffers.items():
        context.set_tensor_address(name, tensor.data_ptr())

    def run(x: np.ndarray) -> np.ndarray:
        buffers[inputs[0]].copy_(torch.from_numpy(x))
        stream = torch.cuda.current_stream()
        context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        return buffers[outputs[0]].cpu().numpy()

    run.keep_alive = (engine, context)  # type: ignore[attr-defined]
    return run


class TensorRT(Runtime):
    """TensorRT engines on the first CUDA GPU."""

    name = "tensorrt"
    file_suffix = ".engine"
    precisions = ("fp32", "fp16", "int8")

    def version(self) -> str:
        return str(import_tensorrt().__version__)

    def accelerator(self) -> str:
        return f"cuda:{torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cuda (absent)"

    def write_model(self, module: nn.Module, example: torch.Tensor, path: Path) -> None:
        if self.precision == "int8":
            raise ValueError("int8 profiling needs calibration batches; profile fp16 or export with --precision int8")
        Path(path).write_bytes(build_engine(export_onnx(module, example), self.precision))

    def infer(self, path: Path) -> Callable[[np.ndarray], np.ndarray]:
        return engine_runner(Path(path))

    def load(self, path: Path) -> dict[str, Runner]:
        trt = import_tensorrt()
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine(Path(path).read_bytes())
        context = engine.create_execution_context()
        buffers = []
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            shape = tuple(engine.get_tensor_shape(name))
            dtype = torch.float16 if engine.get_tensor_dtype(name) == trt.DataType.HALF else torch.float32
            tensor = torch.randn(shape, device="cuda").to(dtype)
            buffers.append(tensor)
            context.set_tensor_address(name, tensor.data_ptr())
        stream = torch.cuda.Stream()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def run() -> float:
            start.record(stream)
            context.execute_async_v3(stream.cuda_stream)
            end.record(stream)
            end.synchronize()
            return float(start.elapsed_time(end))

        run.keep_alive = (engine, context, buffers, stream)  # type: ignore[attr-defined]
        return {"main": run}
