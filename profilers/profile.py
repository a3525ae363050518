"""Profile a search space on a device: every latency unit, then (optionally) calibration and validation.

State lives beside the output table in ``TABLE.work/``: exported model files and a SQLite store of every timed
batch. A killed profile resumes from there and loses at most the batch in flight; the table itself is written
atomically once, at the end, and the work folder is removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
from torch import nn

from profilers.files import remove_stale_temporaries
from profilers.predictor import LatencyPredictor, fit_calibration, min_layers, plot_validation, validation_report
from profilers.progress import progress
from profilers.protocol import Protocol, measure
from profilers.runtime import ModelRef, Runtime
from profilers.table import LatencyTable, table_metadata
from profilers.targets import Target, open_target
from search_spaces import SearchSpace, get_space

log = logging.getLogger(__name__)


OVERHEAD_KEY = "__call_overhead__"


class _CallOverhead(nn.Module):
    """A trivial model: what one inference call costs with (almost) no work."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1.0


class SampleStore:
    """SQLite store of timed batches and finished results, keyed by what was measured."""

    def __init__(self, path: Path, settings: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.connection = sqlite3.connect(path)
        self.connection.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")
        self.connection.execute(
            "CREATE TABLE IF NOT EXISTS batches (key TEXT, round INTEGER, times TEXT, PRIMARY KEY (key, round))"
        )
        self.connection.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT)")
        wanted = json.dumps(settings, sort_keys=True)
        row = self.connection.execute("SELECT value FROM meta WHERE name = 'settings'").fetchone()
        if row is None:
            self.connection.execute("INSERT INTO meta VALUES ('settings', ?)", (wanted,))
            self.connection.commit()
        elif row[0] != wanted:
            raise ValueError(
                f"{path} holds an unfinished profile made with other settings ({row[0]}); finish it with the "
                "same options, or delete that folder to start over"
            )

    def batches(self, prefix: str) -> dict[str, list[list[float]]]:
        """Batches stored under keys that start with ``prefix`` (prefix removed), in round order."""
        found: dict[str, list[list[float]]] = {}
        rows = self.connection.execute(
            "SELECT key, times FROM batches WHERE substr(key, 1, ?) = ? ORDER BY key, round", (len(prefix), prefix)
        )
        for key, times in rows:
            found.setdefault(key[len(prefix):], []).append(json.loads(times))
        return found

    def add_batch(self, key: str, round_index: int, times: list[float]) -> None:
        """Store one batch durably."""
        self.connection.execute("INSERT OR REPLACE INTO batches VALUES (?, ?, ?)", (key, round_index, json.dumps(times)))
        self.connection.commit()

    def result(self, key: str) -> Any:
        """A finished result, or None."""
        row = self.connection.execute("SELECT value FROM results WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_result(self, key: str, value: Any) -> None:
        """Store a finished result durably."""
        self.connection.execute("INSERT OR REPLACE INTO results VALUES (?, ?)", (key, json.dumps(value)))
        self.connection.commit()

    def close(self) -> None:
        """Close the database."""
        self.connection.close()


def _file_name(key: str, suffix: str) -> str:
    return hashlib.sha1(key.encode()).hexdigest()[:20] + suffix


def _member(space: SearchSpace, key: str, unit: bool) -> tuple[nn.Module, torch.Tensor]:
    """A unit (by its key) or an architecture (by its text) of ``space``, built, with its example input."""
    if unit:
        found = next(u for u in space.all_units() if u.key == key)
        return space.build_unit(found), space.unit_input(found)
    return space.build(space.parse(key)), space.example_input()


def _export_member(runtime: Runtime, space_name: str, key: str, unit: bool, target: Path) -> None:
    """Worker: export one unit or architecture of a registered space to ``target`` atomically."""
    torch.set_num_threads(1)
    _export_atomic(runtime, key, *_member(get_space(space_name), key, unit), target)


def _export_missing(space: SearchSpace, runtime: Runtime, targets: dict[str, Path], unit: bool, jobs: int,
                    done: Callable[[], object] = lambda: None) -> None:
    """Export each unit or architecture (keyed by its key or text) to its target file, in ``jobs`` processes for a
    registered space (a worker rebuilds it by name), else here; ``done`` is called after each."""
    if jobs > 1 and len(targets) > 1 and _is_registered(space):
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            for future in [pool.submit(_export_member, runtime, space.name, key, unit, path)
                           for key, path in targets.items()]:
                future.result()
                done()
    else:
        for key, path in targets.items():
            _export_atomic(runtime, key, *_member(space, key, unit), path)
            done()


def export_archs(space: SearchSpace, runtime: Runtime, archs: Sequence[Hashable], folder: Path,
                 jobs: int = 1) -> dict[str, ModelRef]:
    """Export each architecture once into ``folder`` (``jobs`` processes for a registered space), keyed by its
    text; a file already there is kept, so a later pass over the same networks (the re-measure) converts nothing."""
    assert runtime.file_suffix is not None
    folder.mkdir(parents=True, exist_ok=True)
    refs = {str(a): ModelRef(folder / _file_name(f"{space.definition_hash()}|{a}", runtime.file_suffix), "main")
            for a in archs}
    _export_missing(space, runtime, {key: ref.path for key, ref in refs.items() if not ref.path.exists()}, False, jobs)
    return refs


def _export_atomic(runtime: Runtime, key: str, module: nn.Module, example: torch.Tensor, target: Path) -> None:
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        ref = runtime.export({key: (module, example)}, Path(tmp))[key]
        ref.path.replace(target)


def export_units(
    space: SearchSpace, runtime: Runtime, models_dir: Path, jobs: int = 1, show_progress: bool = True,
) -> dict[str, ModelRef]:
    """Export every unit of ``space`` (and the call-overhead model) once; files already there are kept."""
    assert runtime.file_suffix is not None
    models_dir.mkdir(parents=True, exist_ok=True)
    keys = [u.key for u in space.all_units()]
    refs = {key: ModelRef(models_dir / _file_name(key, runtime.file_suffix), "main") for key in [OVERHEAD_KEY, *keys]}
    missing = [key for key, ref in refs.items() if not ref.path.exists()]
    bar = progress(total=len(missing), desc=f"export {runtime.name}", unit="unit", disable=not show_progress)
    if OVERHEAD_KEY in missing:
        _export_atomic(runtime, OVERHEAD_KEY, _CallOverhead(), torch.zeros(1, 8), refs[OVERHEAD_KEY].path)
        missing.remove(OVERHEAD_KEY)
        bar.update()
    _export_missing(space, runtime, {key: refs[key].path for key in missing}, True, jobs, bar.update)
    bar.close()
    return refs


def _is_registered(space: SearchSpace) -> bool:
    try:
        return get_space(space.name).definition_hash() == space.definition_hash()
    except ValueError:
        return False






def profile_space(
    space: SearchSpace,
    runtime: Runtime,
    out: Path,
    protocol: Protocol | None = None,
    target_url: str | None = None,
    token: str | None = None,
    calibrate: int = 0,
    validate: int = 0,
    jobs: int = 1,
    device_name: str | None = None,
    show_progress: bool = True,
    seed: int = 0,
) -> LatencyTable:
    """Measure every unit of ``space`` on the target and write the table to ``out`` (resumable).

    Many parameters because each is one flag of ``hwnas profile``: the command's whole surface, passed through."""
    protocol = protocol or Protocol()
    if runtime.file_suffix is None and target_url is not None:
        raise ValueError(f"runtime {runtime.name} has no model file to send to {target_url}: profile it on the "
                         f"machine itself (leave --target out), or use a runtime with files (onnxruntime, litert)")
    out = Path(out)
    work = out.parent / f"{out.name}.work"
    target = open_target(runtime, target_url, token)
    target.device()  # an unreachable agent or phone fails now, before any unit is converted
    remove_stale_temporaries(out.parent, out.name)
    settings = {"space": space.name, "space_hash": space.definition_hash(), "runtime": runtime.metadata(),
                "protocol": protocol.to_dict(), "target": target_url, "calibrate": calibrate,
                "validate": validate, "seed": seed}
    store = SampleStore(work / "samples.sqlite", settings)
    try:
        stats = _measure_units(space, runtime, target, protocol, store, work / "models", jobs, show_progress)
        device = dict(target.device())
        if device_name:
            device["device_name"] = device_name
        table = LatencyTable(
            metadata=table_metadata(space, runtime.metadata(), device, protocol.to_dict()),
            units={key: s for key, s in stats.items() if key != OVERHEAD_KEY},
            overhead=stats[OVERHEAD_KEY],
        )
        if calibrate or validate:
            calibrate_table(table, space, target, protocol, work, store, calibrate, validate, seed, show_progress,
                            jobs)
        table.save(out)
        if table.validation:
            plot_validation(table.validation, f"{space.name} on {runtime.name}, {runtime.threads} thread(s)",
                            out.with_suffix(".validation.png"))
    finally:
        store.close()
    shutil.rmtree(work, ignore_errors=True)
    return table


def _measure_units(space: SearchSpace, runtime: Runtime, target: Target, protocol: Protocol, store: SampleStore,
                   models: Path, jobs: int, show_progress: bool) -> dict[str, Any]:
    """Every unit (and the call-overhead model) measured interleaved, resumable through ``store``: exported to files
    and measured on the target, or, for a runtime without a model file (``torch``, ``torch-cuda``), built and timed
    in this process."""
    refs = None if runtime.file_suffix is None else export_units(space, runtime, models, jobs=jobs,
                                                                   show_progress=show_progress)
    bar = progress(total=protocol.max_rounds, desc="measure rounds", unit="round", disable=not show_progress)

    def on_round(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    if refs is not None:
        stats = target.measure_files(refs, protocol, store, "unit:", on_round=on_round)
    else:
        items: dict[str, tuple[nn.Module, torch.Tensor]] = {OVERHEAD_KEY: (_CallOverhead(), torch.zeros(1, 8))}
        items |= {u.key: (space.build_unit(u), space.unit_input(u)) for u in space.all_units()}
        models.mkdir(parents=True, exist_ok=True)
        stats = measure(runtime.compile(items, models), protocol, done=store.batches("unit:"),
                        on_batch=lambda key, r, times: store.add_batch("unit:" + key, r, times), on_round=on_round)
    bar.close()
    return stats


def sample_distinct(space: SearchSpace, n: int, seed: int, exclude: Sequence[Hashable] = ()) -> list[Hashable]:
    """``n`` distinct random architectures not in ``exclude`` (bounded tries; fewer if the space is small)."""
    rng = random.Random(seed)
    seen, archs = set(exclude), []
    for _ in range(50 * max(n, 1)):
        if len(archs) == n:
            break
        arch = space.sample(rng)
        if arch not in seen:
            seen.add(arch)
            archs.append(arch)
    return archs


def measure_archs(
    space: SearchSpace, archs: Sequence[Hashable], target: Target, protocol: Protocol, workdir: Path,
    store: SampleStore | None = None, phase: str = "", files: Path | None = None, jobs: int = 1,
) -> list[float]:
    """End-to-end latency (the protocol's statistic, ms) of each architecture; a stored phase is reused. With
    ``files`` (a folder of this caller's own), model files are exported there by ``export_archs`` and kept for the
    next call; otherwise into a temporary folder. Many parameters because a profile passes its state in: its sample
    store and phase, the folder its network files stay in and how many processes convert them."""
    if store is not None and (cached := store.result(f"e2e:{phase}")) is not None:
        return [float(v) for v in cached]
    if files is not None and target.runtime.file_suffix is not None:
        refs = export_archs(space, target.runtime, archs, files, jobs)
        stats = target.measure_files(refs, protocol)
    else:
        items = {str(arch): (space.build(arch), space.example_input()) for arch in archs}
        Path(workdir).mkdir(parents=True, exist_ok=True)
        # a folder of this call's own: workers sharing a run folder must not overwrite each other's model files
        with tempfile.TemporaryDirectory(dir=workdir, prefix=f"e2e_{phase or 'run'}_") as folder:
            stats = target.measure_modules(items, protocol, Path(folder))
    values = [stats[str(arch)].get(protocol.statistic) for arch in archs]
    if store is not None:
        store.set_result(f"e2e:{phase}", values)
    return values


def _fit(predictor: LatencyPredictor, archs: Sequence[Hashable], measured_ms: Sequence[float]) -> dict[str, Any]:
    """The calibration fitted on ``archs`` measured end to end: their raw sums and layer counts, the table's call
    overhead and the space's fewest layers (what both a fresh profile and a refit pass to ``fit_calibration``)."""
    space = predictor.space
    return fit_calibration([predictor.raw(a) for a in archs], measured_ms, [str(a) for a in archs],
                           [len(space.units(a)) for a in archs], predictor.overhead, min_layers(space))


def calibrate_table(
    table: LatencyTable, space: SearchSpace, target: Any, protocol: Protocol, work: Path, store: SampleStore | None,
    calibrate: int, validate: int, seed: int = 0, show_progress: bool = True, jobs: int = 1,
) -> None:
    """Fit the calibration on ``calibrate`` random networks and report on ``validate`` held-out ones (many
    parameters because the profile's state is passed in: its table, target, protocol, work folder and sample store).

    Calibration and held-out networks are measured in one interleaved pass (drift between them would otherwise
    show up as predictor error), then the held-out networks once more for the re-measure spread (from the same
    files: each network is converted once, by ``jobs`` processes).
    """
    predictor = LatencyPredictor(table, space)
    calibration_archs = sample_distinct(space, calibrate, seed + 1)
    held_out = sample_distinct(space, validate, seed + 2, exclude=calibration_archs)
    if show_progress:
        log.info("measuring %d calibration and %d held-out networks end to end", len(calibration_archs),
                 len(held_out))
    files = work / "networks"
    first = measure_archs(space, calibration_archs + held_out, target, protocol, work, store, "networks-1", files, jobs)
    if calibrate:
        table.calibration = _fit(predictor, calibration_archs, first[:calibrate])
    if validate:
        if show_progress:
            log.info("re-measuring the %d held-out networks", len(held_out))
        second = measure_archs(space, held_out, target, protocol, work, store, "networks-2", files, jobs)
        predicted = [predictor.predict(a) for a in held_out]
        table.validation = validation_report(predicted, first[calibrate:], second, [str(a) for a in held_out])


def refit_calibration(table: LatencyTable, space: SearchSpace) -> None:
    """Refit the table's calibration (with the per-layer term) from the networks it already measured, and redo the
    validation report's predictions against its stored held-out measurements; nothing is measured again."""
    calibration, validation = table.calibration, table.validation
    if not calibration or "measured_ms" not in calibration:
        raise ValueError("this table has no stored calibration measurements; profile it with --calibrate N")
    predictor = LatencyPredictor(table, space)
    archs = [space.parse(a) for a in calibration["archs"]]
    table.calibration = _fit(predictor, archs, calibration["measured_ms"])
    if validation:
        predictor = LatencyPredictor(table, space)
        predicted = [predictor.predict(space.parse(a)) for a in validation["archs"]]
        table.validation = validation_report(predicted, validation["measured_ms"], validation["remeasured_ms"],
                                             validation["archs"])
