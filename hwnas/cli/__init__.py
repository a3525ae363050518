"""The ``hwnas`` command line: one sub-command module per concept, human output by default, ``--json`` for scripts."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hwnas import __version__
from hwnas.cli import agent, demo, profile, search, ship, space, supernet

_COMMAND_MODULES = (space, profile, supernet, search, ship, agent, demo)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (every sub-command registers itself)."""
    parser = argparse.ArgumentParser(
        prog="hwnas",
        description="Hardware-aware NAS: profile a device, search under a latency budget, ship to the edge.",
    )
    parser.add_argument("--version", action="version", version=f"hwnas {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _COMMAND_MODULES:
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hwnas`` console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError, ImportError) as error:
        print(f"hwnas {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hwnas {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
