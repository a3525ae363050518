"""Shared by the benchmarks: where results go, how a machine is described, how a table is printed."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any, NoReturn

from profilers.machine import device_metadata

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def refuse(message: str) -> NoReturn:
    """A bad input found after the command line was parsed: ``error: MESSAGE`` on stderr and exit status 2, as
    argparse refuses a bad argument."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def add_device_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """``--device`` for a benchmark that trains: where ``what`` run."""
    parser.add_argument("--device", default="cpu",
                        help=f"where {what} run: cpu (default), auto (a CUDA GPU when torch sees one), cuda or "
                             "cuda:N; the recipe is the same on every device")


def checked_device(parser: argparse.ArgumentParser, text: str) -> str:
    """``--device`` resolved (``hwnas.devices.resolve_device``), or the parser's error (exit 2) saying what is
    accepted."""
    from hwnas.devices import resolve_device

    try:
        return str(resolve_device(text))
    except (ValueError, RuntimeError) as error:
        parser.error(str(error))


def log_stages() -> None:
    """Log the stages of long work (distillation epochs, ratings, child trainings) to standard error as the CLI
    does, so a benchmark run in the background leaves a line per stage in its log."""
    from hwnas.cli import configure_logging

    configure_logging()


def machine() -> dict[str, Any]:
    """The machine a benchmark ran on."""
    return {**device_metadata(), "platform": platform.platform()}


def shown_path(path: Path) -> str:
    """``path`` as results record it: relative to the repository when it lies inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def result_path(benchmark: str, name: str, suffix: str = ".json") -> Path:
    """Where a benchmark's result lives: ``benchmarks/results/BENCHMARK/NAME.json`` (or its plot, ``.png``)."""
    folder = RESULTS / benchmark
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}{suffix}"


def write_result(benchmark: str, name: str, payload: dict[str, Any]) -> Path:
    """``benchmarks/results/BENCHMARK/NAME.json`` (atomically), with the machine recorded; the results index
    (``benchmarks/results/README.md``) is generated again."""
    from index import write_index

    from profilers.files import atomic_write_bytes

    path = result_path(benchmark, name)
    record = {"benchmark": benchmark, "name": name, "machine": machine(), **payload}
    atomic_write_bytes(path, (json.dumps(record, indent=2, default=str, allow_nan=False) + "\n").encode())
    print(f"wrote {path.relative_to(ROOT)}")
    write_index()
    return path


def print_table(rows: list[list[Any]], header: list[str]) -> None:
    """An aligned plain-text table."""
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for index, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
        if index == 0:
            print("  ".join("-" * w for w in widths))


def finish_tau_plot(figure: Any, axis: Any, path: Path, title: str, groups: list[str], width: float,
                    ceilings: list[float | None], **legend: Any) -> None:
    """The ending the grouped Kendall-tau plots share (one group of bars or points per ranking result, ``width``
    apart): each group's noise ceiling dashed, the 0.65 target, labels, legend and grid; written to ``path``."""
    import matplotlib.pyplot as plt

    for group, ceiling in enumerate(ceilings):
        if ceiling is not None:
            axis.hlines(ceiling, group - width / 2, group + 0.8 - width / 2, colors="black", linestyles="--")
    axis.axhline(0.65, color="grey", linewidth=0.8)
    axis.set_xticks([group + 0.4 - width / 2 for group in range(len(groups))], groups)
    axis.set_ylabel("Kendall tau vs stand-alone accuracy")
    axis.set_title(title, fontsize=10)
    axis.legend(**legend)
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
