"""``hwnas search``: the best-rated architecture under a budget (exact combiner, then Optuna with measurements)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from hwnas.cli._output import emit
from hwnas.run import open_run
from hwnas.search import OBJECTIVES
from profilers import Protocol


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``search`` to the CLI."""
    search = commands.add_parser("search", help="search under a latency (or MACs/params) budget")
    search.add_argument("--run", required=True, help="run with ratings ('hwnas rate')")
    search.add_argument("--table", type=Path, default=None, help="latency table ('hwnas profile'); needed for latency")
    search.add_argument("--budget-ms", "--budget", dest="budget", type=float, required=True,
                        help="budget: ms for latency, millions for macs/params")
    search.add_argument("--objective", choices=OBJECTIVES, default="latency", help="what the budget limits")
    search.add_argument("--refine-trials", type=int, default=20, help="Optuna trials with real measurements (0: none)")
    search.add_argument("--multi-objective", action="store_true", help="NSGA-II over (rating, measured latency)")
    search.add_argument("--storage", default=None, help="Optuna storage URL (default: SQLite in the run)")
    search.add_argument("--target", default=None, help="URL of an 'hwnas agent serve' to measure on")
    search.add_argument("--token", default=os.environ.get("HWNAS_AGENT_TOKEN"), help="agent token")
    search.add_argument("--quick", action="store_true", help="short, noisier measurement protocol")
    search.add_argument("--json", action="store_true", help="machine-readable output")
    search.set_defaults(handler=run_search)


def run_search(args: argparse.Namespace) -> int:
    """Search and print the chosen architecture."""
    from hwnas.distill_seeds import describe
    from hwnas.stages import search

    run = open_run(args.run)
    protocol = Protocol.quick() if args.quick else Protocol()
    result = search(run, args.table, args.budget, args.refine_trials, args.target, args.token, args.objective,
                    args.storage, args.multi_objective, protocol)
    chosen = result["chosen"]
    lines = [f"chosen ({chosen['source']}): {chosen['arch']}",
             f"rating {chosen['rating']:.4f} ({describe(result.get('rating_seeds'))}); params {result['params']:,}; "
             f"MACs {result['macs']:,}"]
    if "measured_ms" in chosen:
        lines.append(f"latency: predicted {chosen['predicted_ms']:.3f} ms, measured {chosen['measured_ms']:.3f} ms "
                     f"(budget {args.budget:g} ms: {'met' if chosen['within_budget'] else 'NOT met'})")
        if chosen.get("stepped_down"):
            stepped = chosen["stepped_down"]
            lines.append(f"no finalist measured within the budget (the machine read {stepped['ratio']:.2f}x the "
                         f"table): {len(stepped['added'])} cheaper architectures from the front measured with them")
        if chosen.get("measurement_warning"):
            lines.append(f"warning: {chosen['measurement_warning']}")
    lines.append(f"front of {result['front_size']} architectures: {result['files']['plot']}")
    emit(result, args.json, "\n".join(lines))
    return 0
