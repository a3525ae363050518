"""Argument types that refuse bad values before any work starts (argparse turns their message into a one-line error
and exit code 2)."""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable
from pathlib import Path


def positive_float(text: str) -> float:
    """A finite number > 0 (budgets, learning rates)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (gradient clipping, 0 = off)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def at_least(minimum: int) -> Callable[[str], int]:
    """A whole number >= ``minimum`` (counts, epochs, threads, block indices)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = f"whole number >= {minimum}"
    return parse


def block_or_any(text: str) -> int | str:
    """A block index (>= 0) or ``any`` (whichever block no other worker is training)."""
    return "any" if text == "any" else at_least(0)(text)


def port(text: str) -> int:
    """A TCP port, 0-65535 (0: any free port)."""
    value = at_least(0)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535, got {value}")
    return value


_URL = re.compile(r"https?://[^/\s:]+(:\d{1,5})?/?")


def target(text: str) -> str:
    """Where to measure: ``http://HOST:PORT`` (an agent) or ``adb:SERIAL`` (``adb:`` for the only phone)."""
    if text.startswith("adb:") and not any(c.isspace() for c in text):
        return text
    if _URL.fullmatch(text):
        return text
    raise argparse.ArgumentTypeError(f"write http://HOST:PORT (an 'hwnas agent serve') or adb:SERIAL (adb: for the "
                                     f"only attached phone), got {text!r}")


def storage_url(text: str) -> str:
    """An Optuna storage URL (an SQLAlchemy database URL such as ``sqlite:///study.db`` or
    ``postgresql://user@host/db``)."""
    if not re.fullmatch(r"[a-z][a-z0-9+]*://.*", text):
        raise argparse.ArgumentTypeError(f"must be a database URL such as sqlite:///study.db or "
                                         f"postgresql://user@host/db, got {text!r}")
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(text)
        url.get_dialect()
    except (ArgumentError, ValueError) as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not a database URL SQLAlchemy knows ({error})") from None
    except ImportError as error:
        raise argparse.ArgumentTypeError(f"{text!r} needs a database driver that is not installed ({error})") from None
    except Exception as error:  # sqlalchemy.exc.NoSuchModuleError and friends
        raise argparse.ArgumentTypeError(f"{text!r}: {error}") from None
    return text


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_file(path: Path, flag: str) -> None:
    """ValueError before any work when ``path`` cannot be written as a file (a folder, or a read-only place)."""
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder; give a file name such as {path / 'table.json'}")
    where = _nearest_existing(path.parent)
    if not where.is_dir() or not os.access(where, os.W_OK):
        raise ValueError(f"{flag} {path}: cannot write in {where} (not a writable folder)")


def check_output_folder(path: Path, flag: str) -> None:
    """ValueError before any work when ``path`` cannot be written as a folder (a file, or a read-only place)."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} is a file; give a folder")
    where = _nearest_existing(path)
    if not where.is_dir() or not os.access(where, os.W_OK):
        raise ValueError(f"{flag} {path}: cannot write in {where} (not a writable folder)")
