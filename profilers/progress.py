"""Progress of long work: a live bar on a terminal, one log line per finished stage elsewhere.

``progress(...)`` takes tqdm's arguments. When standard error is a terminal it is a tqdm bar; otherwise (a log
file, CI, a pipe) it draws nothing while running and logs one line when closed ("block 2 epoch 3/10: 120 steps in
14.2 s"), so a log holds one line per epoch or stage instead of every redraw.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from tqdm import tqdm

log = logging.getLogger(__name__)


def on_terminal() -> bool:
    """Whether standard error is an interactive terminal."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class LineProgress:
    """tqdm's interface without drawing: counts, then logs one line at ``close``."""

    def __init__(self, iterable: Iterable[Any] | None = None, total: float | None = None, desc: str = "",
                 unit: str = "it", disable: bool = False, logger: logging.Logger = log) -> None:
        self.iterable, self.desc, self.unit, self.disable, self.logger = iterable, desc, unit, disable, logger
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.n = 0
        self.postfix = ""
        self.started = time.perf_counter()
        self.closed = False

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable or ():
            yield item
            self.n += 1
        self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        """Count ``n`` more done."""
        self.n += n

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        """Text for the closing line."""
        self.postfix = text

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **values: Any) -> None:
        """Values for the closing line."""
        self.postfix = ", ".join(f"{k}={v}" for k, v in {**(ordered_dict or {}), **values}.items())

    def set_description(self, desc: str = "", refresh: bool = True) -> None:
        """Rename the stage."""
        self.desc = desc

    def refresh(self) -> None:
        """Nothing to redraw."""

    def close(self) -> None:
        """Log the one line (once)."""
        if self.closed:
            return
        self.closed = True
        if self.disable or not self.n:
            return
        done = f"{self.n:g}" + (f"/{self.total:g}" if self.total and self.total != self.n else "")
        unit = self.unit if self.unit == "it" or self.n == 1 or self.unit.endswith("s") else f"{self.unit}s"
        extra = f" ({self.postfix})" if self.postfix else ""
        self.logger.info("%s: %s %s in %.1f s%s", self.desc, done, unit, time.perf_counter() - self.started, extra)


def progress(iterable: Iterable[Any] | None = None, total: float | None = None, desc: str = "", unit: str = "it",
             disable: bool = False, leave: bool = True, logger: logging.Logger = log, summary: bool = True) -> Any:
    """A tqdm bar on a terminal, else a ``LineProgress`` that logs one line when done (none with ``summary=False``:
    for bars whose caller logs its own line per epoch)."""
    if on_terminal():
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, leave=leave, file=sys.stderr)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, disable=disable or not summary, logger=logger)
