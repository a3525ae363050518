"""``hwnas search``: the best-rated architecture under a budget (exact combiner, then Optuna with measurements)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from hwnas.cli._args import at_least, positive_float, storage_url, target
from hwnas.cli._output import emit
from hwnas.run import open_run
from hwnas.search.costs import OBJECTIVES
from hwnas.supernet.seeds import describe
from profilers import Protocol


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``search`` to the CLI."""
    search = commands.add_parser("search", help="search under a latency (or MACs/params) budget")
    search.add_argument("--run", required=True, help="run with ratings ('hwnas rate')")
    search.add_argument("--table", type=Path, default=None, help="latency table ('hwnas profile'); needed for latency")
    search.add_argument("--budget-ms", "--budget", dest="budget", type=positive_float, required=True,
                        help="budget: ms for latency, millions for macs/params")
    search.add_argument("--objective", choices=OBJECTIVES, default="latency", help="what the budget limits")
    search.add_argument("--refine-trials", type=at_least(0), default=20,
                        help="Optuna trials with real measurements (default 20; 0: none)")
    search.add_argument("--multi-objective", action="store_true", help="NSGA-II over (rating, measured latency)")
    search.add_argument("--naswot", type=at_least(0), default=0, metavar="K",
                        help="choose among the K best-rated front points under the budget (and the measured "
                             "finalists) by the mean rank of rating and NASWOT at initialisation (default 0: rating "
                             "alone)")
    search.add_argument("--stale-after", type=positive_float, default=60.0, metavar="S",
                        help="a trial whose worker sent no heartbeat for S seconds (killed, machine lost) is marked "
                             "failed by the next worker (default 60)")
    search.add_argument("--storage", default=None, type=storage_url, help="Optuna storage URL (default: SQLite in the run)")
    search.add_argument("--target", default=None, type=target,
                        help="where to measure: http://HOST:PORT (an 'hwnas agent serve'), adb:SERIAL (a phone), or "
                             "this machine (default)")
    search.add_argument("--token", default=os.environ.get("HWNAS_AGENT_TOKEN"), help="agent token")
    search.add_argument("--quick", action="store_true", help="short, noisier measurement protocol")
    search.add_argument("--json", action="store_true", help="machine-readable output")
    search.set_defaults(handler=run_search)


def run_search(args: argparse.Namespace) -> int:
    """Search and print the chosen architecture."""
    from hwnas.search.budgeted import SearchSettings, search

    run = open_run(args.run)
    settings = SearchSettings(objective=args.objective, refine_trials=args.refine_trials,
                              multi_objective=args.multi_objective, storage=args.storage,
                              stale_after_s=args.stale_after, target=args.target,
                              token=args.token, protocol=Protocol.quick() if args.quick else Protocol(),
                              naswot_candidates=args.naswot)
    result = search(run, args.table, args.budget, settings)
    chosen = result.chosen
    lines = [f"chosen ({chosen.source}): {chosen.arch}",
             f"rating {chosen.rating:.4f} ({describe(result.rating_seeds)}); params {result.params:,}; "
             f"MACs {result.macs:,}"]
    measured = chosen.measured
    if measured is not None:
        lines.append(f"latency: predicted {measured.predicted_ms:.3f} ms, measured {measured.measured_ms:.3f} ms "
                     f"(budget {args.budget:g} ms: {'met' if measured.within_budget else 'NOT met'})")
        if measured.stepped_down:
            stepped = measured.stepped_down
            lines.append(f"no finalist measured within the budget (the machine read {stepped.ratio:.2f}x the "
                         f"table): {len(stepped.added)} cheaper architectures from the front measured with them")
        if measured.warning:
            lines.append(f"warning: {measured.warning}")
    lines.append(f"front of {result.front_size} architectures: {result.files['plot']}")
    emit(result.to_dict(), args.json, "\n".join(lines))
    return 0
