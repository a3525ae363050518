"""LiteRT (the TFLite runtime, package ai-edge-litert), threads fixed; models converted by litert-torch, int8 models
quantized by ai-edge-quantizer.

Two kernel sets: ``litert`` runs the default XNNPACK delegate, ``litert-builtin`` the interpreter's built-in kernels
(XNNPACK off; on Android ``Interpreter.Options.setUseXNNPACK(false)``). The int8 recipe keeps in float the layers whose
int8 kernels were measured slower than fp32 by several times (``int8_recipe``; ``benchmarks/docs/int8_kernels.md``).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from profilers.int8_stem import decide_stem
from profilers.protocol import Runner
from profilers.runtime import MissingRuntimeError, Runtime, random_calibration, random_input


def _import_litert_torch() -> object:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import litert_torch
    except ImportError as error:
        raise MissingRuntimeError(
            "converting PyTorch to TFLite needs litert-torch: pip install litert-torch==0.10.0"
        ) from error
    litert_torch.config.show_progress = False
    return litert_torch


def _interpreter_class() -> type:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as error:
        raise MissingRuntimeError("the TFLite runtime is ai-edge-litert: pip install ai-edge-litert==2.3.0") from error
    return Interpreter


def convert_tflite(module: nn.Module, example: torch.Tensor, path: Path | None = None) -> bytes:
    """Convert ``module`` (eval mode) to a TFLite flatbuffer with litert-torch; write it to ``path`` if given."""
    litert_torch = _import_litert_torch()
    with torch.no_grad():
        model = litert_torch.convert(module.eval(), (example,))
    data = model.model_content()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def _running_min_max(qsv: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Calibration statistics as the running min/max over every sample (not a moving average of per-sample ranges,
    which shrinks ranges when the model's batch is 1 and clips the logits)."""
    if not qsv:
        return new
    return {"min": np.minimum(qsv["min"], new["min"]), "max": np.maximum(qsv["max"], new["max"])}


SLOW_INT8_DEPTHWISE_KERNEL = 7


def float_layers(module: nn.Module) -> list[str]:
    """Paths of the layers the int8 recipe keeps in float: depthwise convolutions with kernels of 7 or more, whose
    int8 path in XNNPACK ran 6-29x slower than its fp32 one (``benchmarks/docs/int8_kernels.md``)."""
    return [name for name, layer in module.named_modules()
            if isinstance(layer, nn.Conv2d) and layer.groups > 1 and layer.groups == layer.in_channels
            and max(layer.kernel_size) >= SLOW_INT8_DEPTHWISE_KERNEL]


STEM_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "LOGISTIC", "MUL", "HARD_SWISH")


def _scope_regex(paths: Sequence[str]) -> str:
    """A regex matching the TFLite tensor names litert-torch gives the outputs of the modules at ``paths`` (each
    module level is written ``Class_name`` and levels are joined by ``/``)."""
    scopes = ["/".join(f"[^;/]*_{re.escape(part)}" for part in path.split(".")) + ";" for path in paths]
    return ".*/(" + "|".join(scopes) + ").*"


def int8_recipe(float_paths: Sequence[str] = (), stem_paths: Sequence[str] = ()) -> list[dict[str, Any]]:
    """ai-edge-quantizer's ``static_wi8_ai8`` (int8 weights per channel, int8 activations) with hard-swish kept in
    float (LiteRT's int8 hard-swish ran 24-39x slower than fp32, MobileNetV3-Large int8 1.58x fp32, 0.64x with it in
    float), the depthwise convolutions at ``float_paths`` too (``float_layers``) and the layers at ``stem_paths``
    (an image stem kept in float: ``profilers.int8_stem``)."""
    from ai_edge_quantizer import recipe

    entries = list(recipe.static_wi8_ai8())
    entries.append({"regex": ".*", "operation": "HARD_SWISH", "algorithm_key": "no_quantize"})
    if float_paths:
        entries.append({"regex": _scope_regex(float_paths), "operation": "DEPTHWISE_CONV_2D",
                        "algorithm_key": "no_quantize"})
    if stem_paths:
        entries += [{"regex": _scope_regex(stem_paths), "operation": op, "algorithm_key": "no_quantize"}
                    for op in STEM_OPS]
    return entries


def quantize_tflite(float_model: bytes, calibration: Sequence[np.ndarray], float_paths: Sequence[str] = (),
                    stem_paths: Sequence[str] = ()) -> bytes:
    """Post-training static int8 of a one-input TFLite model with ``int8_recipe(float_paths, stem_paths)``, ranges
    calibrated on ``calibration`` (inputs of the model's shape)."""
    try:
        from ai_edge_quantizer import calibrator, quantizer
    except ImportError as error:
        raise MissingRuntimeError("int8 TFLite needs ai-edge-quantizer (installed with litert-torch)") from error
    if len(calibration) == 0:
        raise ValueError("int8 quantization needs calibration inputs; got none")
    interpreter = _interpreter_class()(model_content=float_model)
    signatures = interpreter.get_signature_list()
    if len(signatures) != 1:
        raise ValueError(f"expected one signature in the converted model, found {list(signatures)}")
    (key, signature), = signatures.items()
    (input_name,) = signature["inputs"]
    engine = quantizer.Quantizer(float_model, int8_recipe(float_paths, stem_paths))
    statistics = calibrator.Calibrator(float_model, num_threads=1, qsv_update_func=_running_min_max)
    with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):  # its progress bars have no off switch
        statistics.calibrate({key: [{input_name: np.asarray(x, np.float32)} for x in calibration]},
                             engine._recipe_manager)
        result = engine.quantize(statistics.get_model_qsvs(), enable_progress_bar=False,
                                 enable_progress_report=False)
    return bytes(result.quantized_model)


class LiteRT(Runtime):
    """The LiteRT interpreter with its default XNNPACK delegate and ``threads`` threads; ``int8`` models are
    quantized when written (calibrated on random inputs for measuring; ``hwnas export`` calibrates on images)."""

    name = "litert"
    file_suffix = ".tflite"
    precisions = ("fp32", "int8")
    quantization = "static_wi8_ai8+float-hard-swish+float-dw7+float-uneven-stem"
    xnnpack = True

    def version(self) -> str:
        from importlib.metadata import version

        return version("ai-edge-litert")

    def accelerator(self) -> str:
        return "cpu/XNNPACK (default delegate)"

    def interpreter(self, model: Path | bytes) -> Any:
        """An interpreter with this runtime's settings (threads, kernel set), tensors allocated."""
        interpreter_class = _interpreter_class()
        options: dict[str, Any] = {"num_threads": self.threads}
        if not self.xnnpack:
            from ai_edge_litert.interpreter import OpResolverType

            options["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        if isinstance(model, Path):
            interpreter = interpreter_class(model_path=str(model), **options)
        else:
            interpreter = interpreter_class(model_content=model, **options)
        interpreter.allocate_tensors()
        return interpreter

    def write_model(self, module: nn.Module, example: torch.Tensor, path: Path) -> None:
        data = convert_tflite(module, example)
        if self.precision == "int8":
            calibration = random_calibration(example)
            stem = decide_stem(module, example, calibration)
            data = quantize_tflite(data, calibration, float_layers(module), stem.float_layers)
        Path(path).write_bytes(data)

    def load(self, path: Path) -> dict[str, Runner]:
        interpreter = self.interpreter(Path(path))
        (inp,) = interpreter.get_input_details()
        interpreter.set_tensor(inp["index"], random_input(tuple(inp["shape"]), inp["dtype"]))
        return {"main": interpreter.invoke}

    def infer(self, path: Path) -> Callable[[np.ndarray], np.ndarray]:
        run = tflite_runner(self.interpreter(Path(path)))
        return lambda x: np.asarray(run(x), dtype=np.float32)


class LiteRTBuiltin(LiteRT):
    """The LiteRT interpreter with its built-in kernels only (XNNPACK off)."""

    name = "litert-builtin"
    xnnpack = False

    def accelerator(self) -> str:
        return "cpu/built-in kernels (XNNPACK off)"


def tflite_runner(interpreter: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Run a one-input TFLite interpreter on float inputs; int8 input/output tensors are (de)quantized with their own
    parameters."""
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    in_scale, in_zero = inp["quantization"]
    out_scale, out_zero = out["quantization"]

    def run(x: np.ndarray) -> np.ndarray:
        if np.issubdtype(inp["dtype"], np.integer) and in_scale:
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.round(x / in_scale + in_zero), info.min, info.max)
        interpreter.set_tensor(inp["index"], x.astype(inp["dtype"]))
        interpreter.invoke()
        y = np.array(interpreter.get_tensor(out["index"]))
        if np.issubdtype(out["dtype"], np.integer) and out_scale:
            y = (y.astype(np.float32) - out_zero) * out_scale
        return y

    return run
