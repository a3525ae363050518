"""The runtime interface: turn models into files the runtime loads, and load them into timed runners."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from profilers.protocol import Runner

PRECISIONS = ("fp32", "fp16", "int8")


class MissingRuntimeError(ImportError):
    """A runtime's package (or its hardware) is not available on this machine."""


@dataclass(frozen=True)
class ModelRef:
    """Where an exported model lives: a file and the entry (graph or signature) inside it."""

    path: Path
    entry: str


class Runtime(ABC):
    """A way to run models on this machine, with a fixed thread count and precision.

    Contract: ``export`` writes models to files in the runtime's own format (several models may share one file,
    told apart by entry names); ``load`` turns a file into one runner per entry; a runner executes one inference on
    a fixed input and returns None (timed by the caller's clock) or its own time in ms (GPU event timing);
    ``infer`` runs a one-input file on real inputs (output parity checks).
    Runtimes without a file format (PyTorch eager) override ``compile`` instead.
    """

    name: ClassVar[str]
    file_suffix: ClassVar[str | None] = None
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    quantization: ClassVar[str | None] = None  # names how int8 files are quantized; changes when the recipe does

    def __init__(self, threads: int = 1, precision: str = "fp32") -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if precision not in self.precisions:
            raise ValueError(
                f"runtime {self.name} measures precisions {', '.join(self.precisions)}, not {precision!r}"
            )
        self.threads = threads
        self.precision = precision

    @abstractmethod
    def version(self) -> str:
        """The runtime package's version."""

    def metadata(self) -> dict[str, object]:
        """Runtime name and version, provider/delegate, threads and precision (and at int8, the quantization
        recipe: a table of int8 units predicts files quantized the same way only)."""
        meta: dict[str, object] = {"runtime": self.name, "runtime_version": self.version(), "threads": self.threads,
                                   "precision": self.precision, "accelerator": self.accelerator()}
        if self.precision == "int8" and self.quantization is not None:
            meta["quantization"] = self.quantization
        return meta

    def accelerator(self) -> str:
        """Execution provider, delegate or device the runtime uses."""
        return "cpu"

    def write_model(self, module: nn.Module, example: torch.Tensor, path: Path) -> None:
        """Write one module (batch and shape fixed by ``example``) in the runtime's file format."""
        raise NotImplementedError(f"runtime {self.name} has no file format; use compile()")

    def export(self, items: Mapping[str, tuple[nn.Module, torch.Tensor]], workdir: Path) -> dict[str, ModelRef]:
        """Write each (module, example input) to its own file; returns where each key went."""
        if self.file_suffix is None:
            raise NotImplementedError(f"runtime {self.name} has no file format; use compile()")
        refs = {}
        for index, (key, (module, example)) in enumerate(items.items()):
            path = Path(workdir) / f"model_{index:04d}{self.file_suffix}"
            self.write_model(module, example, path)
            refs[key] = ModelRef(path, "main")
        return refs

    def load(self, path: Path) -> dict[str, Runner]:
        """One runner per entry of a model file."""
        raise NotImplementedError(f"runtime {self.name} has no file format; use compile()")

    def infer(self, path: Path) -> Callable[[np.ndarray], np.ndarray]:
        """A function running a one-input model file on a float32 input of the file's shape, returning its first
        output as float32 (quantized inputs and outputs converted with the file's own parameters)."""
        raise NotImplementedError(f"runtime {self.name} has no file format to run")

    def compile(self, items: Mapping[str, tuple[nn.Module, torch.Tensor]], workdir: Path) -> dict[str, Runner]:
        """Runners for modules, through the runtime's file format."""
        refs = self.export(items, workdir)
        loaded: dict[Path, dict[str, Runner]] = {}
        for ref in refs.values():
            if ref.path not in loaded:
                loaded[ref.path] = self.load(ref.path)
        return {key: loaded[ref.path][ref.entry] for key, ref in refs.items()}


def random_input(shape: tuple[int, ...], dtype: np.dtype = np.float32) -> np.ndarray:
    """A deterministic random input of ``shape``."""
    return np.random.default_rng(0).standard_normal(shape).astype(dtype)


def random_calibration(example: torch.Tensor, samples: int = 8) -> list[np.ndarray]:
    """Calibration inputs for a latency measurement: standard-normal tensors of the example's shape (the ranges
    they give decide the scales, not which kernels run)."""
    rng = np.random.default_rng(0)
    return [rng.standard_normal(tuple(example.shape)).astype(np.float32) for _ in range(samples)]
