"""The ``hwnas`` command line: one sub-command module per concept, human output by default, ``--json`` for scripts."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import typing
from collections.abc import Sequence

from hwnas import __version__
from hwnas.cli import agent, data, demo, evolve, profile, progressive, search, ship, space, supernet
from profilers.progress import on_terminal

_COMMAND_MODULES = (space, data, profile, supernet, search, ship, progressive, evolve, agent, demo)


class UsageError(Exception):
    """A command line that does not parse; ``main`` prints it as one line and returns 2."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: ``PROG: error: what was wrong (see 'PROG --help')``."""

    def error(self, message: str) -> typing.NoReturn:
        raise UsageError(f"{self.prog}: error: {message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (every sub-command registers itself)."""
    parser = _Parser(
        prog="hwnas",
        description="Hardware-aware NAS: profile a device, search under a latency budget, ship to the edge.",
    )
    parser.add_argument("--version", action="version", version=f"hwnas {__version__}")
    _add_loudness(parser, default=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _COMMAND_MODULES:
        module.register(commands)
    _add_loudness_below(parser)
    return parser


def _add_loudness(parser: argparse.ArgumentParser, default: object) -> None:
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-q", "--quiet", action="store_true", default=default, help="warnings and errors only")
    loudness.add_argument("-v", "--verbose", action="store_true", default=default, help="debug messages too")


def _add_loudness_below(parser: argparse.ArgumentParser) -> None:
    """``-q`` / ``-v`` after any sub-command too (``hwnas demo -q``), without overriding one given before it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                _add_loudness(sub, default=argparse.SUPPRESS)
                _add_loudness_below(sub)


class _Formatter(logging.Formatter):
    """Messages as they are; warnings prefixed ``warning:`` and debug lines with their logger."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"warning: {message}"
        if record.levelno < logging.INFO:
            return f"[{record.name}] {message}"
        return message


LOGGED_PACKAGES = ("hwnas", "profilers", "search_spaces")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a message is logged (tests and callers may replace it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> object:  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def configure_logging(quiet: bool = False, verbose: bool = False) -> None:
    """One handler on standard error for each of the project's packages' loggers, at INFO (``-q``: WARNING,
    ``-v``: DEBUG). Replaces the handler an earlier call installed (tests call ``main`` many times)."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    for name in LOGGED_PACKAGES:
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if getattr(h, "_hwnas_cli", False)]:
            logger.removeHandler(handler)
        handler = _StderrHandler()
        handler._hwnas_cli = True  # type: ignore[attr-defined]
        handler.setFormatter(_Formatter())
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hwnas`` console script; returns the process exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as error:
        print(error, file=sys.stderr)
        return 2
    configure_logging(args.quiet, args.verbose)
    if getattr(args, "cpu_threads", None):
        import torch

        torch.set_num_threads(args.cpu_threads)
    if not on_terminal():  # libraries' own tqdm bars (the quantizer's, the converter's) print nothing to a log
        os.environ.setdefault("TQDM_DISABLE", "1")
    try:
        return int(args.handler(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError, ImportError) as error:
        print(f"hwnas {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except OSError as error:  # the file system said no: say which file and why, in plain words
        where = f"{error.filename}: " if error.filename else ""
        print(f"hwnas {args.command}: error: {where}{error.strerror or error} (check the path and its permissions)",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hwnas {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


def _one_line(error: BaseException) -> str:
    """The error's message on one line (a library's multi-line message folded)."""
    return " ".join(str(error).split()) or type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
