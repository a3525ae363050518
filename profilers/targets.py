"""Where a measurement runs: one contract for this machine, a remote agent and an Android phone over adb.

``open_target(runtime, where)`` takes ``None`` (this machine, in this process), ``http://HOST:PORT`` (an ``hwnas agent
serve``), ``adb:SERIAL`` (``adb:`` for the only attached phone) or a ``Target`` already made, and returns a ``Target``.
Profile, measure, search and export all measure through it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from profilers.machine import device_metadata
from profilers.protocol import Protocol as MeasureProtocol
from profilers.protocol import Runner, measure
from profilers.runtime import ModelRef, Runtime
from profilers.stats import LatencyStats

if TYPE_CHECKING:
    from profilers.profile import SampleStore


@runtime_checkable
class Target(Protocol):
    """What every measurement target does.

    - ``runtime``: the runtime (with threads and precision) the target measures with;
    - ``device()``: the metadata of the device that measures (name, CPU model, OS...), recorded with every number;
    - ``measure_files(refs, protocol, store, prefix, on_round)``: model files in the runtime's format, measured
      interleaved under ``protocol``; with a ``store``, finished work is recorded under ``prefix`` so a restart
      resumes; ``on_round(done, total)`` reports progress;
    - ``measure_modules(items, protocol, workdir)``: modules exported here (into ``workdir``) and measured there;
    - ``outputs(path, inputs)``: a model file's first output on each of ``inputs`` (stacked on the first axis, each
      run at batch 1) computed by the target's runtime and kernels, or None where the target cannot return outputs
      (a phone's benchmark binary reports times only).
    """

    runtime: Runtime

    def device(self) -> dict[str, Any]: ...

    def measure_files(
        self, refs: Mapping[str, ModelRef], protocol: MeasureProtocol, store: SampleStore | None = None,
        prefix: str = "", on_round: Callable[[int, int], None] | None = None,
    ) -> dict[str, LatencyStats]: ...

    def measure_modules(
        self, items: Mapping[str, tuple[nn.Module, torch.Tensor]], protocol: MeasureProtocol, workdir: Path,
    ) -> dict[str, LatencyStats]: ...

    def outputs(self, path: Path, inputs: np.ndarray) -> np.ndarray | None: ...


class LocalTarget:
    """Measure on this machine, in this process."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def device(self) -> dict[str, Any]:
        """This machine's metadata."""
        return device_metadata()

    def measure_files(
        self, refs: Mapping[str, ModelRef], protocol: MeasureProtocol, store: SampleStore | None = None,
        prefix: str = "", on_round: Callable[[int, int], None] | None = None,
    ) -> dict[str, LatencyStats]:
        """Load each file and measure all of them interleaved under ``protocol``."""
        loaded: dict[Path, dict[str, Runner]] = {}
        for ref in refs.values():
            if ref.path not in loaded:
                loaded[ref.path] = self.runtime.load(ref.path)
        runners = {key: loaded[ref.path][ref.entry] for key, ref in refs.items()}
        done = store.batches(prefix) if store else None
        on_batch = (lambda key, r, times: store.add_batch(prefix + key, r, times)) if store else None
        return measure(runners, protocol, done=done, on_batch=on_batch, on_round=on_round)

    def measure_modules(
        self, items: Mapping[str, tuple[nn.Module, torch.Tensor]], protocol: MeasureProtocol, workdir: Path,
    ) -> dict[str, LatencyStats]:
        """Measure modules end to end (runtimes without a file format included)."""
        if self.runtime.file_suffix is None:
            return measure(self.runtime.compile(items, workdir), protocol)
        refs = self.runtime.export(items, workdir)
        return self.measure_files(refs, protocol)

    def outputs(self, path: Path, inputs: np.ndarray) -> np.ndarray:
        """Run the file here on each input."""
        infer = self.runtime.infer(Path(path))
        return np.concatenate([infer(inputs[i:i + 1]) for i in range(len(inputs))])


def open_target(runtime: Runtime, where: None | str | Target = None, token: str | None = None) -> Target:
    """The target ``where`` names, measuring with ``runtime``: this machine (None), an agent (``http://HOST:PORT``,
    with ``token``), an Android phone (``adb:SERIAL``; ``$HWNAS_ADB`` names the adb program,
    ``$HWNAS_BENCHMARK_MODEL`` the benchmark binary's path on the phone) or a target already made."""
    if where is None:
        return LocalTarget(runtime)
    if not isinstance(where, str):
        if not isinstance(where, Target):
            raise TypeError(f"a target is None, a URL or a Target, not {type(where).__name__}")
        return where
    if where.startswith("adb:"):
        from profilers.adb_target import DEFAULT_BINARY, AdbTarget, parse_target

        return AdbTarget(runtime, parse_target(where), adb=os.environ.get("HWNAS_ADB", "adb"),
                         binary=os.environ.get("HWNAS_BENCHMARK_MODEL", DEFAULT_BINARY))
    if where.startswith(("http://", "https://")):
        from profilers.agent import AgentClient

        if runtime.file_suffix is None:
            raise ValueError(f"runtime {runtime.name} has no model file to send to an agent; use onnxruntime or "
                             "litert")
        return AgentClient(where, runtime, token=token)
    raise ValueError(f"--target {where!r}: write http://HOST:PORT (an 'hwnas agent serve'), adb:SERIAL (adb: for the "
                     "only attached phone), or leave it out to measure on this machine")
