"""The run directory: every long job's state lives in ``runs/NAME/`` so commands chain with ``--run``.

``run.json`` records the space, the data and the teacher; beside it live the teacher checkpoint, the supernet
checkpoints (one per block), the teacher-feature cache, the ratings, the search study and the exports.
"""

from __future__ import annotations

import datetime as _dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from profilers.files import atomic_write_json, read_json, remove_stale_temporaries
from search_spaces import SearchSpace, get_space

log = logging.getLogger(__name__)


@dataclass
class RunDir:
    """A run directory and its recorded settings."""

    path: Path
    config: dict[str, Any]

    @property
    def space(self) -> SearchSpace:
        """The run's search space."""
        return get_space(self.config["space"])

    def file(self, *parts: str) -> Path:
        """A path inside the run (folders created)."""
        target = self.path.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def save(self) -> None:
        """Write run.json atomically."""
        atomic_write_json(self.path / "run.json", self.config)

    def update(self, **values: Any) -> None:
        """Record settings and save."""
        self.config.update(values)
        self.save()


def resolve_run(name: str | Path) -> Path:
    """``NAME`` -> ``runs/NAME`` unless it is already a path with a folder in it."""
    path = Path(name)
    return path if len(path.parts) > 1 or path.is_absolute() else Path("runs") / path


def open_run(name: str | Path) -> RunDir:
    """An existing run; FileNotFoundError says which command creates one."""
    path = resolve_run(name)
    config_path = path / "run.json"
    if not config_path.exists():
        raise FileNotFoundError(f"no run at {path} (no run.json); create it with "
                                f"'hwnas teacher train --run {name} --space SPACE --data digits'")
    for leftover in remove_stale_temporaries(path):
        log.info("removed %s, left by a killed write", leftover)
    return RunDir(path, read_json(config_path, "run configuration"))


def create_or_open_run(name: str | Path, space: str | None, data: str | None) -> RunDir:
    """Open a run, or create it with ``space`` and ``data``; conflicting settings raise ValueError."""
    path = resolve_run(name)
    if (path / "run.json").exists():
        run = open_run(path)
        for key, value in (("space", space), ("data", data)):
            if value is not None and run.config.get(key) != value:
                raise ValueError(f"run {path} was made with --{key} {run.config.get(key)}, not {value}; use another "
                                 "--run or the same settings")
        return run
    if space is None:
        raise ValueError(f"run {path} does not exist yet: give --space (and --data) to create it")
    from hwnas.data import check_data_name

    get_space(space)
    check_data_name(data or "digits")  # a bad --data must not leave a run made with it
    path.mkdir(parents=True, exist_ok=True)
    run = RunDir(path, {"space": space, "data": data or "digits",
                        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")})
    run.save()
    return run
