"""LiteRT (the TFLite runtime, package ai-edge-litert) with XNNPACK, threads fixed; models converted by litert-torch."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from profilers.protocol import Runner
from profilers.runtime import MissingRuntimeError, Runtime, random_input


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


class LiteRT(Runtime):
    """The LiteRT interpreter with its default XNNPACK delegate and ``threads`` threads."""

    name = "litert"
    file_suffix = ".tflite"

    def version(self) -> str:
        from importlib.metadata import version

        return version("ai-edge-litert")

    def accelerator(self) -> str:
        return "cpu/XNNPACK (default delegate)"

    def interpreter(self, model: Path | bytes) -> object:
        """An interpreter with this runtime's settings, tensors allocated."""
        interpreter_class = _interpreter_class()
        if isinstance(model, Path):
            interpreter = interpreter_class(model_path=str(model), num_threads=self.threads)
        else:
            interpreter = interpreter_class(model_content=model, num_threads=self.threads)
        interpreter.allocate_tensors()
        return interpreter

    def write_model(self, module: nn.Module, example: torch.Tensor, path: Path) -> None:
        convert_tflite(module, example, path)

    def load(self, path: Path) -> dict[str, Runner]:
        interpreter = self.interpreter(Path(path))
        (inp,) = interpreter.get_input_details()
        interpreter.set_tensor(inp["index"], random_input(tuple(inp["shape"]), inp["dtype"]))
        return {"main": interpreter.invoke}
