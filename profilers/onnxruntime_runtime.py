"""ONNX Runtime: CPU execution provider (CUDA provider where present), threads fixed and recorded; int8 models by
static QDQ quantization (``onnxruntime.quantization``)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from profilers.int8_stem import decide_stem
from profilers.machine import device_metadata
from profilers.onnx_export import export_onnx
from profilers.protocol import Runner
from profilers.runtime import MissingRuntimeError, Runtime, random_calibration, random_input


def spatial_means_as_pools(model: Any) -> int:
    """Rewrite, in place, every ``ReduceMean`` over the two spatial axes of a 4-D tensor (keepdims) as the
    ``GlobalAveragePool`` it equals; the number rewritten. Squeeze-excite's mean has no int8 kernel in ONNX Runtime
    (it runs in float between a dequantize and a quantize, 7x its fp32 time in EfficientNet-B0); a global pool runs
    as ``QLinearGlobalAveragePool`` (``benchmarks/docs/int8_kernels.md``). Needs shapes inferred (ranks known)."""
    from onnx import helper, numpy_helper

    ranks = {info.name: len(info.type.tensor_type.shape.dim)
             for info in [*model.graph.value_info, *model.graph.input] if info.type.tensor_type.HasField("shape")}
    constants = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    rewritten = 0
    for index, node in enumerate(model.graph.node):
        if node.op_type != "ReduceMean" or ranks.get(node.input[0]) != 4:
            continue
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        axes = attributes.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1] in constants:
            axes = constants[node.input[1]].tolist()
        if attributes.get("keepdims", 1) != 1 or axes is None or sorted(int(a) % 4 for a in axes) != [2, 3]:
            continue
        model.graph.node.remove(node)
        model.graph.node.insert(index, helper.make_node("GlobalAveragePool", [node.input[0]], list(node.output),
                                                        name=f"{node.name}_as_pool"))
        rewritten += 1
    return rewritten


ELEMENTWISE = {"Sigmoid", "Mul", "HardSwish", "HardSigmoid", "Relu", "Clip", "LeakyRelu", "Tanh"}


def image_stem_nodes(model: Any) -> list[str]:
    """Names of the nodes an int8 file keeps in float when its image stem does (``profilers.int8_stem``) and the graph
    reads an image (a 3-channel 4-D input): the first convolution, the activation nodes after it, and the
    convolutions that read that activation (``int8_stem.image_stem_layers``, found on the graph). Empty for any other
    graph (a latency unit inside the network)."""
    graph = model.graph
    if not graph.input:
        return []
    dims = graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4 or dims[1].dim_value != 3:
        return []
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    stem = next((n for n in readers.get(graph.input[0].name, []) if n.op_type == "Conv"), None)
    if stem is None:
        return []
    kept, tensors, seen = [stem], list(stem.output), set(stem.output)
    while tensors:
        for node in readers.get(tensors.pop(), []):
            if any(node is k for k in kept) or node.op_type not in ELEMENTWISE | {"Conv"}:
                continue
            kept.append(node)
            if node.op_type != "Conv":
                tensors += [t for t in node.output if t not in seen]
                seen.update(node.output)
    return [node.name for node in kept]


def name_nodes(model: Any) -> int:
    """Give every unnamed node a unique name (nodes are excluded from quantization by name); the number named."""
    taken = {node.name for node in model.graph.node}
    named = 0
    for index, node in enumerate(model.graph.node):
        if not node.name:
            node.name = next(f"{node.op_type}_{index}_{k}" for k in range(len(taken) + 1)
                             if f"{node.op_type}_{index}_{k}" not in taken)
            taken.add(node.name)
            named += 1
    return named


WEIGHT_BITS = {"auto": "7 where the target is an x86 CPU without VNNI (u8s8_saturates), else 8",
               "8": "int8 weights in [-127, 127]", "7": "weights in [-64, 63] (onnxruntime's reduce_range)"}
VNNI = ("avx512_vnni", "avx_vnni", "amx_int8")


def u8s8_saturates(device: Mapping[str, Any]) -> bool:
    """Whether ONNX Runtime's uint8 x int8 kernels saturate on ``device`` (a ``profilers.machine`` record): on x86
    without VNNI they sum pairs of products in 16 bits (VPMADDUBSW), which 8-bit weights can overflow (2 x 255 x 127 >
    32767), so a file's int8 convolutions compute something else than its graph says; 7-bit weights cannot. False
    where the record has no kernel features (nothing known) and on ARM (its int8 dot products widen)."""
    features = set(device.get("cpu_features") or [])
    return "sse4_2" in features and not features & set(VNNI)


def weight_bits(choice: str, device: Mapping[str, Any]) -> int:
    """The weight bits an int8 ONNX file gets for ``choice`` (``WEIGHT_BITS``) on the target ``device``."""
    if choice not in WEIGHT_BITS:
        raise ValueError(f"unknown int8 weight bits {choice!r}; choose one of: {', '.join(WEIGHT_BITS)}")
    if choice == "auto":
        return 7 if u8s8_saturates(device) else 8
    return int(choice)


CALIBRATIONS = {"minmax": "min/max of the calibration activations (onnxruntime's default)",
                "percentile": "the 0.01 and 99.99 percentiles of the calibration activations (outliers clipped)"}


def quantize_onnx(float_model: bytes, calibration: Sequence[np.ndarray], method: str = "minmax",
                  float_stem: bool = False, bits: int = 8) -> bytes:
    """Post-training static int8 of a one-input ONNX model: QDQ format, int8 weights per channel (``bits`` 7 keeps
    them in [-64, 63], for targets where ``u8s8_saturates``), uint8 activations (ONNX Runtime's fast path on x86),
    activation ranges calibrated on ``calibration`` (inputs of the model's shape) by ``method`` (``CALIBRATIONS``);
    the model is pre-processed (shape inference, graph optimisation) first, as ``onnxruntime.quantization``
    recommends, its spatial means become global pools (``spatial_means_as_pools``) and, with ``float_stem``
    (``profilers.int8_stem.decide_stem``), an image stem stays in float (``image_stem_nodes``). The method and the
    bits change values, not the graph, so not the latency."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calibration) == 0:
        raise ValueError("int8 quantization needs calibration inputs; got none")
    if bits not in (7, 8):
        raise ValueError(f"int8 weights have 8 or 7 bits, not {bits}")
    if method not in CALIBRATIONS:
        raise ValueError(f"unknown int8 calibration {method!r}; choose one of: {', '.join(CALIBRATIONS)}")
    ranges = ({"calibrate_method": CalibrationMethod.Percentile, "extra_options": {"CalibPercentile": 99.99}}
              if method == "percentile" else {"calibrate_method": CalibrationMethod.MinMax})

    class Reader(CalibrationDataReader):
        def __init__(self, name: str) -> None:
            self.items = iter([{name: np.asarray(x, np.float32)} for x in calibration])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as tmp:
        source, prepared, quantized = (Path(tmp) / name for name in ("float.onnx", "prepared.onnx", "int8.onnx"))
        source.write_bytes(float_model)
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        import onnx

        model = onnx.load(str(prepared))
        if spatial_means_as_pools(model) + name_nodes(model):
            onnx.save(model, str(prepared))
        name = model.graph.input[0].name
        try:
            quantize_static(str(prepared), str(quantized), Reader(name), quant_format=QuantFormat.QDQ,
                            per_channel=True, reduce_range=bits == 7, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8,
                            nodes_to_exclude=image_stem_nodes(model) if float_stem else [], **ranges)
        except ValueError as error:
            if method != "percentile":
                raise
            raise ValueError(f"percentile calibration failed on this model ({error}: a tensor's values over the "
                             "calibration images span too narrow a range for its histogram); calibrate it with "
                             "minmax") from error
        return quantized.read_bytes()


class OnnxRuntime(Runtime):
    """ONNX Runtime on the CPU, sequential execution, ``threads`` intra-op threads, all graph optimisations;
    ``int8`` models are quantized when written (calibrated on random inputs for measuring, with this machine's weight
    bits; ``hwnas export`` calibrates on images)."""

    name = "onnxruntime"
    file_suffix = ".onnx"
    provider = "CPUExecutionProvider"
    precisions = ("fp32", "int8")
    quantization = "qdq-u8s8-per-channel-minmax+mean-pools+float-uneven-stem"

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
        data = export_onnx(module, example)
        if self.precision == "int8":
            calibration = random_calibration(example)
            data = quantize_onnx(data, calibration, float_stem=decide_stem(module, example, calibration).in_float,
                                 bits=weight_bits("auto", device_metadata()))
        Path(path).write_bytes(data)

    def load(self, path: Path) -> dict[str, Runner]:
        session = self.session(Path(path))
        (inp,) = session.get_inputs()
        if any(not isinstance(d, int) for d in inp.shape):
            raise ValueError(f"{path}: input {inp.name} has a dynamic shape {inp.shape}; export with a fixed shape")
        feed = {inp.name: random_input(tuple(inp.shape))}
        return {"main": lambda: session.run(None, feed)}

    def infer(self, path: Path) -> Callable[[np.ndarray], np.ndarray]:
        session = self.session(Path(path))
        name = session.get_inputs()[0].name
        return lambda x: np.asarray(session.run(None, {name: x.astype(np.float32)})[0], dtype=np.float32)


class OnnxRuntimeCuda(OnnxRuntime):
    """ONNX Runtime with the CUDA execution provider (needs onnxruntime-gpu and an NVIDIA GPU)."""

    name = "onnxruntime-cuda"
    provider = "CUDAExecutionProvider"
    precisions = ("fp32",)
