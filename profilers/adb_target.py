"""Android phones without Python: TFLite models pushed with ``adb`` and timed by TFLite's ``benchmark_model``.

``hwnas profile --runtime litert --target adb:SERIAL`` (or ``adb:`` for the only attached device) converts every
unit here, pushes the files to ``/data/local/tmp/hwnas/`` and times them on the phone with the native
``benchmark_model`` binary (push it once: ``adb push benchmark_model /data/local/tmp/ && adb shell chmod +x
/data/local/tmp/benchmark_model``), with the same protocol as everywhere else: interleaved rounds over all units in a
shuffled order, each (unit, round) one invocation (its own warm-up, then ``runs_per_round`` timed runs), 5 to 10
rounds until the statistic moves less than ``rel_tol``.

benchmark_model reports aggregates, not each run: ``count first curr min max avg std`` and, in current builds,
``p5 median p95``. Each invocation's runs are therefore rebuilt from its quantile function, interpolated linearly
through (0, min), (0.05, p5), (0.5, median), (0.95, p95), (1, max): exact at those points, approximate between them,
and recorded as such in the device metadata (``timing``). Builds that print no percentiles are refused with a
message, rather than guessed from an average.
"""

from __future__ import annotations

import hashlib
import random
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from profilers.machine import processor_record
from profilers.protocol import Protocol, measure_batches
from profilers.runtime import ModelRef, Runtime
from profilers.stats import LatencyStats

REMOTE_DIR = "/data/local/tmp/hwnas"
DEFAULT_BINARY = "/data/local/tmp/benchmark_model"
_STATS_LINE = re.compile(r"count=(\d+)[^\n]*?min=([\d.]+)[^\n]*?max=([\d.]+)[^\n]*?avg=([\d.e+-]+)[^\n]*")
_PERCENTILES = re.compile(r"p5=([\d.]+)\s+median=([\d.]+)\s+p95=([\d.]+)")
QUANTILE_POINTS = (0.0, 0.05, 0.5, 0.95, 1.0)


class AdbError(RuntimeError):
    """adb or benchmark_model failed; the message says what to check."""


def parse_benchmark_output(text: str) -> dict[str, float]:
    """The timed-run statistics (in microseconds) of one benchmark_model invocation.

    benchmark_model prints one statistics line for the warm-up and one for the timed runs; the last one is taken.
    """
    matches = list(_STATS_LINE.finditer(text))
    if not matches:
        tail = "\n".join(text.strip().splitlines()[-5:])
        raise AdbError(f"benchmark_model printed no timing statistics ('count=... min=... max=... avg=...'); its "
                       f"output ended with:\n{tail}")
    line = matches[-1]
    stats = {"count": float(line.group(1)), "min": float(line.group(2)), "max": float(line.group(3)),
             "avg": float(line.group(4))}
    percentiles = _PERCENTILES.search(line.group(0))
    if percentiles is None:
        raise AdbError("this benchmark_model build prints no percentiles (p5/median/p95), only averages; hwnas "
                       "needs them for robust statistics: use a current build of TFLite's benchmark_model")
    stats.update(p5=float(percentiles.group(1)), median=float(percentiles.group(2)), p95=float(percentiles.group(3)))
    return stats


def runs_from_quantiles(stats: Mapping[str, float]) -> list[float]:
    """``count`` run times in ms rebuilt from an invocation's min, p5, median, p95 and max (linear in between)."""
    count = int(stats["count"])
    if count < 1:
        raise AdbError("benchmark_model reported zero timed runs")
    points = [stats[k] / 1000.0 for k in ("min", "p5", "median", "p95", "max")]
    positions = (np.arange(count) + 0.5) / count
    return [float(v) for v in np.interp(positions, QUANTILE_POINTS, np.maximum.accumulate(points))]


def parse_target(url: str) -> str | None:
    """``adb:SERIAL`` -> SERIAL, ``adb:`` -> None (the only attached device)."""
    if not url.startswith("adb:"):
        raise ValueError(f"an adb target is written 'adb:SERIAL' or 'adb:' (the only device), got {url!r}")
    serial = url.removeprefix("adb:").strip()
    return serial or None


class AdbTarget:
    """Measures TFLite files on an Android device through adb and benchmark_model; a profiling target."""

    def __init__(self, runtime: Runtime, serial: str | None = None, adb: str = "adb", binary: str = DEFAULT_BINARY,
                 timeout_s: float = 300.0) -> None:
        if runtime.file_suffix != ".tflite":
            raise ValueError(f"an adb target runs TFLite files with benchmark_model: use --runtime litert (export: "
                             f"--format tflite), not {runtime.name}")
        if shutil.which(adb) is None:
            raise AdbError(f"adb not found ({adb!r}); install Android platform-tools (Debian: apt-get install adb) "
                           "or pass its path")
        self.runtime = runtime
        self.serial = serial
        self.adb = adb
        self.binary = binary
        self.timeout_s = timeout_s
        self._device: dict[str, Any] | None = None
        self._pushed: dict[str, str] = {}

    def _run(self, *args: str) -> str:
        command = [self.adb, *(["-s", self.serial] if self.serial else []), *args]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=self.timeout_s)
        except subprocess.TimeoutExpired as error:
            raise AdbError(f"{shlex.join(command)} took longer than {self.timeout_s:.0f} s") from error
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            raise AdbError(f"{shlex.join(command)} failed ({done.returncode}): {detail[-1] if detail else ''}; is the "
                           "device attached and authorised ('adb devices')?")
        return done.stdout

    def _shell(self, command: str) -> str:
        return self._run("shell", command)

    def device(self) -> dict[str, Any]:
        """The phone's metadata from its system properties and /proc/cpuinfo (its cores' identity and kernel
        features, ``profilers.machine``); cached."""
        if self._device is None:
            props = {}
            for name in ("ro.product.manufacturer", "ro.product.model", "ro.soc.model", "ro.board.platform",
                         "ro.build.version.release", "ro.product.cpu.abi"):
                props[name] = self._shell(f"getprop {name}").strip()
            cores = processor_record(self._shell("cat /proc/cpuinfo"))
            self._check_binary()
            self._device = {
                "device_name": f"{props['ro.product.manufacturer']} {props['ro.product.model']}".strip() or "android",
                "cpu_model": props["ro.soc.model"] or props["ro.board.platform"] or "unknown",
                "cpu_id": cores["cpu_id"], "cpu_features": cores["cpu_features"],
                "os": f"Android {props['ro.build.version.release']}", "machine": props["ro.product.cpu.abi"],
                "adb_serial": self.serial or "(the only device)", "measured_by": f"benchmark_model ({self.binary})",
                "timing": "per-invocation aggregates; runs rebuilt from min/p5/median/p95/max",
            }
        return self._device

    def _check_binary(self) -> None:
        answer = self._shell(f"test -x {shlex.quote(self.binary)} && echo ok || echo missing").strip()
        if answer != "ok":
            raise AdbError(f"no executable benchmark_model at {self.binary} on the device; push TFLite's "
                           f"benchmark_model there ('adb push benchmark_model {self.binary}' then 'adb shell chmod +x "
                           f"{self.binary}') or set HWNAS_BENCHMARK_MODEL to where it is")

    def push(self, path: Path) -> str:
        """Copy a model file to the device once (named by its content); returns its path there."""
        digest = hashlib.sha1(Path(path).read_bytes()).hexdigest()[:20]
        if digest not in self._pushed:
            remote = f"{REMOTE_DIR}/{digest}.tflite"
            self._shell(f"mkdir -p {REMOTE_DIR}")
            self._run("push", str(path), remote)
            self._pushed[digest] = remote
        return self._pushed[digest]

    def invoke(self, remote: str, runs: int, warmup: int) -> list[float]:
        """One benchmark_model invocation: ``warmup`` untimed runs, then ``runs`` timed ones (ms, rebuilt)."""
        command = shlex.join([self.binary, f"--graph={remote}", f"--num_threads={self.runtime.threads}",
                              f"--use_xnnpack={str(getattr(self.runtime, 'xnnpack', True)).lower()}",
                              f"--warmup_runs={warmup}", "--warmup_min_secs=0",
                              f"--num_runs={runs}", "--min_secs=0", "--max_secs=60"])
        return runs_from_quantiles(parse_benchmark_output(self._shell(command + " 2>&1")))

    def measure_files(
        self, refs: Mapping[str, ModelRef], protocol: Protocol, store: Any = None, prefix: str = "",
        on_round: Callable[[int, int], None] | None = None,
    ) -> dict[str, LatencyStats]:
        """Push every file, then measure all of them in interleaved rounds (a batch = one invocation)."""
        self.device()
        remotes = {key: self.push(ref.path) for key, ref in refs.items()}
        timers = {key: (lambda n, r=remote: self.invoke(r, n, protocol.warmup_runs)) for key, remote in remotes.items()}
        runs = dict.fromkeys(refs, protocol.runs_per_round)
        done = store.batches(prefix) if store else None
        on_batch = (lambda key, r, times: store.add_batch(prefix + key, r, times)) if store else None
        return measure_batches(timers, runs, protocol, done=done, on_batch=on_batch, on_round=on_round,
                               rng=random.Random(protocol.seed))

    def measure_modules(
        self, items: Mapping[str, tuple[nn.Module, torch.Tensor]], protocol: Protocol, workdir: Path,
    ) -> dict[str, LatencyStats]:
        """Convert here, measure on the device."""
        return self.measure_files(self.runtime.export(items, workdir), protocol, None, "")

    def outputs(self, path: Path, inputs: np.ndarray) -> None:
        """None: ``benchmark_model`` reports times, not outputs (parity is then checked on the exporting machine)."""
        return None
