"""The run folder: every long job's state lives in ``runs/NAME/`` so commands chain with ``--run``.

This module owns the folder's layout (every file's place is a ``RunDir`` property) and ``run.json``, whose settings
are a typed ``RunConfig``:

- ``run.json``: space, data, creation time, the teacher's description, the distillation recipe, ``seed_of``;
- ``teacher.pt`` (and ``teacher_training.pt`` while it trains), ``cache/`` (the teacher's features);
- ``supernet/blockN.pt``, ``ratings/blockN.json``, ``ratings.json``, ``ratings_seeds.json``, ``seeds/seedK/``;
- ``search.db`` (the Optuna study), ``search/OBJECTIVE-BUDGET/``, ``children/ID/``, ``tmp/`` (scratch).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
from collections.abc import Hashable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from profilers.files import atomic_write_json, read_json, remove_stale_temporaries
from search_spaces import SearchSpace, get_space

log = logging.getLogger(__name__)


@dataclass
class RunConfig:
    """What ``run.json`` records: the space and data the run was made with, when, the teacher's description (once
    one is trained or registered), the distillation recipe (once distilled) and, for an extra distillation seed,
    the relative path of the run it belongs to. Keys this version does not know are kept as they are."""

    space: str
    data: str = "digits"
    created: str | None = None
    teacher: dict[str, Any] | None = None
    distill: dict[str, Any] | None = None
    seed_of: str | None = None
    other: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def from_json(data: Any, path: Path) -> RunConfig:
        """The settings of a ``run.json``; ValueError names what is wrong."""
        if not isinstance(data, dict) or not isinstance(data.get("space"), str):
            raise ValueError(f"{path} is not a run configuration (no 'space'); recreate the run")
        known = {f.name for f in fields(RunConfig)} - {"other"}
        for key, kind in (("data", str), ("created", str), ("teacher", dict), ("distill", dict), ("seed_of", str)):
            if data.get(key) is not None and not isinstance(data[key], kind):
                raise ValueError(f"{path}: {key!r} should be a {kind.__name__}, got {data[key]!r}")
        return RunConfig(**{k: v for k, v in data.items() if k in known},
                         other={k: v for k, v in data.items() if k not in known})

    def to_json(self) -> dict[str, Any]:
        """The ``run.json`` document (unset settings left out)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "other"}
        return {k: v for k, v in out.items() if v is not None} | self.other


@dataclass
class RunDir:
    """A run folder, its settings and where each of its files lives."""

    path: Path
    config: RunConfig

    @property
    def space(self) -> SearchSpace:
        """The run's search space."""
        return get_space(self.config.space)

    def file(self, *parts: str) -> Path:
        """A path inside the run (folders created)."""
        target = self.path.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def save(self) -> None:
        """Write run.json atomically."""
        atomic_write_json(self.path / "run.json", self.config.to_json())

    def update(self, **values: Any) -> None:
        """Record settings (``RunConfig`` fields) and save."""
        for key, value in values.items():
            if key not in {f.name for f in fields(RunConfig)} - {"other"}:
                raise KeyError(f"run.json has no setting {key!r}")
            setattr(self.config, key, value)
        self.save()

    # -- the layout ------------------------------------------------------------------------------------------------
    @property
    def teacher_checkpoint(self) -> Path:
        """The trained (or registered) teacher."""
        return self.file("teacher.pt")

    @property
    def teacher_training(self) -> Path:
        """The teacher's training checkpoint (resumed per epoch)."""
        return self.file("teacher_training.pt")

    @property
    def cache_folder(self) -> Path:
        """The teacher's feature cache."""
        return self.path / "cache"

    def supernet_checkpoint(self, block: int) -> Path:
        """One block's supernet."""
        return self.file("supernet", f"block{block}.pt")

    def block_ratings(self, block: int) -> Path:
        """One block's candidate ratings."""
        return self.file("ratings", f"block{block}.json")

    @property
    def ratings_file(self) -> Path:
        """Every block's ratings, assembled."""
        return self.file("ratings.json")

    @property
    def combined_ratings_file(self) -> Path:
        """The distillation seeds' ratings combined."""
        return self.file("ratings_seeds.json")

    @property
    def seeds_folder(self) -> Path:
        """Extra distillation seeds, each a run of its own (``seeds/seedK``)."""
        return self.path / "seeds"

    @property
    def search_db(self) -> Path:
        """The default Optuna storage (SQLite)."""
        return self.file("search.db")

    def search_folder(self, objective: str, budget: float) -> Path:
        """One search's result, front and plot."""
        return self.path / "search" / f"{objective}-{budget:g}"

    def child_folder(self, arch: Hashable) -> Path:
        """One stand-alone child: its training checkpoint, weights and history."""
        return self.path / "children" / hashlib.sha1(str(arch).encode()).hexdigest()[:12]

    @property
    def scratch(self) -> Path:
        """A scratch folder (models being measured)."""
        folder = self.path / "tmp"
        folder.mkdir(parents=True, exist_ok=True)
        return folder


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
    return RunDir(path, RunConfig.from_json(read_json(config_path, "run configuration"), config_path))


def create_or_open_run(name: str | Path, space: str | None, data: str | None) -> RunDir:
    """Open a run, or create it with ``space`` and ``data``; conflicting settings raise ValueError."""
    path = resolve_run(name)
    if (path / "run.json").exists():
        run = open_run(path)
        for key, value in (("space", space), ("data", data)):
            if value is not None and getattr(run.config, key) != value:
                raise ValueError(f"run {path} was made with --{key} {getattr(run.config, key)}, not {value}; use another "
                                 "--run or the same settings")
        return run
    if space is None:
        raise ValueError(f"run {path} does not exist yet: give --space (and --data) to create it")
    from hwnas.data import data_classes

    classes = get_space(space).num_classes
    found = data_classes(data or "digits")  # a bad --data must not leave a run made with it
    if found is not None and found != classes:
        raise ValueError(f"--data {data or 'digits'} has {found} classes, space {space} classifies {classes}: choose a "
                         "space made for it ('hwnas space list' shows each space's classes; glyphs: mbconv-tiny-64)")
    path.mkdir(parents=True, exist_ok=True)
    run = RunDir(path, RunConfig(space, data or "digits", _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")))
    run.save()
    return run
