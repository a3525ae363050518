"""Latency tables: per-unit latency statistics of one search space on one device, runtime and setting.

File format (JSON, ``format: hwnas-latency-table``, ``format_version: 1``):

- ``metadata``: device (name, CPU/GPU model, the CPU's identity and kernel features, OS), runtime and version,
  accelerator (execution provider or delegate), threads, precision, batch, input resolution, space name and
  definition hash, date, hwnas version, the measurement protocol and the statistic predictions use;
- ``overhead``: statistics of one call of a trivial model (the per-inference cost every unit measurement holds);
- ``units``: unit key -> statistics (min, p10, median, p90, mean in ms, n runs);
- ``calibration``: the monotone model fitted on whole networks measured end to end, or null;
- ``validation``: the predictor's error on held-out networks next to the re-measure spread, or null.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from profilers.files import atomic_write_json, read_json
from profilers.machine import describe_processor, same_processor
from profilers.stats import LatencyStats
from search_spaces import SearchSpace

FORMAT = "hwnas-latency-table"
FORMAT_VERSION = 1


@dataclass
class LatencyTable:
    """An in-memory latency table; ``save``/``load`` use the documented JSON format."""

    metadata: dict[str, Any]
    units: dict[str, LatencyStats] = field(default_factory=dict)
    overhead: LatencyStats | None = None
    calibration: dict[str, Any] | None = None
    validation: dict[str, Any] | None = None

    @property
    def statistic(self) -> str:
        """The statistic predictions are made of (``p10`` by default)."""
        return str(self.metadata.get("statistic", "p10"))

    def entry(self, key: str) -> float:
        """The chosen statistic of one unit; KeyError says the table does not cover it."""
        if key not in self.units:
            raise KeyError(
                f"latency unit {key} is not in this table ({self.metadata.get('space')}, "
                f"{len(self.units)} units); re-run 'hwnas profile' for this space"
            )
        return self.units[key].get(self.statistic)

    def check_compatible(self, space: SearchSpace, precision: str | None = None, batch: int | None = None) -> None:
        """Raise ValueError when the table was measured for another space, resolution, precision or batch."""
        meta = self.metadata
        wanted = {"space": space.name, "space_hash": space.definition_hash(), "input_resolution": space.resolution}
        if precision is not None:
            wanted["precision"] = precision
        if batch is not None:
            wanted["batch"] = batch
        for name, value in wanted.items():
            if meta.get(name) != value:
                raise ValueError(
                    f"latency table {meta.get('path', '')} was measured for {name}={meta.get(name)!r}, but "
                    f"{name}={value!r} is asked for (space {space.name} at {space.resolution} px); profile it with "
                    f"'hwnas profile --space {space.name} --runtime {meta.get('runtime', 'RUNTIME')} --out TABLE'"
                )
        self.check_quantization(space)

    def check_quantization(self, space: SearchSpace) -> None:
        """ValueError when an int8 table's units were quantized by another recipe than the one its runtime writes
        int8 files with now (its predictions would be for other files)."""
        meta = self.metadata
        if meta.get("precision") != "int8":
            return
        from profilers import runtime_class

        try:
            current = runtime_class(str(meta.get("runtime"))).quantization
        except ValueError:  # a runtime this hwnas does not know: nothing to compare with
            return
        if current is not None and meta.get("quantization") != current:
            raise ValueError(
                f"latency table {meta.get('path', '')} holds int8 units quantized by recipe "
                f"{meta.get('quantization') or '(not recorded: an older hwnas)'}, but {meta.get('runtime')} now "
                f"writes int8 files with {current}; profile it again: 'hwnas profile --space {space.name} --runtime "
                f"{meta.get('runtime')} --precision int8 --out TABLE'"
            )

    def machine_warning(self, device: Mapping[str, Any]) -> str | None:
        """A one-line warning when the table was profiled on another kind of processor than ``device`` (the target
        measuring now: its predictions are another machine's latency), else None; None also where either record
        lacks the processor's identity (``profilers.machine.same_processor``)."""
        if same_processor(self.metadata, device) is not False:
            return None
        return (f"latency table {self.metadata.get('path', '')} was profiled on {describe_processor(self.metadata)}, "
                f"but the target is {describe_processor(device)}: its predictions are not this target's latency; "
                f"profile the target ('hwnas profile --space {self.metadata.get('space')} --runtime "
                f"{self.metadata.get('runtime')} --out TABLE')")

    def to_dict(self) -> dict[str, Any]:
        """The JSON document."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "metadata": {k: v for k, v in self.metadata.items() if k != "path"},
            "overhead": self.overhead.to_dict() if self.overhead else None,
            "units": {key: stats.to_dict() for key, stats in sorted(self.units.items())},
            "calibration": self.calibration,
            "validation": self.validation,
        }

    def save(self, path: Path) -> None:
        """Write the table atomically."""
        atomic_write_json(Path(path), self.to_dict())

    @staticmethod
    def load(path: Path, space: SearchSpace | None = None, precision: str | None = None) -> LatencyTable:
        """Read and check a table; ValueError says what is wrong (format, version, space, precision)."""
        data = read_json(Path(path), "latency table")
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{path} is not an hwnas latency table (no 'format: {FORMAT}'); make one with "
                             "'hwnas profile'")
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path} has table format version {data.get('format_version')}, this hwnas reads "
                             f"version {FORMAT_VERSION}; re-profile with this version")
        try:
            units = {key: LatencyStats.from_dict(value) for key, value in data["units"].items()}
            overhead = LatencyStats.from_dict(data["overhead"]) if data.get("overhead") else None
            metadata = dict(data["metadata"])
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            raise ValueError(f"{path} is a damaged latency table: {error}") from error
        metadata["path"] = str(path)
        table = LatencyTable(metadata, units, overhead, data.get("calibration"), data.get("validation"))
        if space is not None:
            table.check_compatible(space, precision)
            table.check_complete(space)
        return table

    def check_complete(self, space: SearchSpace) -> None:
        """ValueError when the table lacks a unit of ``space`` (a file edited or cut short)."""
        missing = [u.key for u in space.all_units() if u.key not in self.units]
        if missing:
            raise ValueError(f"latency table {self.metadata.get('path', '')} lacks {len(missing)} of the "
                             f"{len(space.all_units())} units of {space.name} (e.g. {missing[0]}); re-profile with "
                             f"'hwnas profile --space {space.name} --out TABLE'")


def _hwnas_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hwnas")
    except PackageNotFoundError:
        return "unknown"


def table_metadata(
    space: SearchSpace, runtime_meta: dict[str, Any], device_meta: dict[str, Any], protocol: dict[str, Any],
    batch: int = 1,
) -> dict[str, Any]:
    """Everything that produced a table's numbers."""
    return {
        **device_meta,
        **runtime_meta,
        "batch": batch,
        "input_resolution": space.resolution,
        "input_shape": [batch, *space.input_shape],
        "space": space.name,
        "space_hash": space.definition_hash(),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "hwnas_version": _hwnas_version(),
        "protocol": protocol,
        "statistic": protocol.get("statistic", "p10"),
    }
