"""``hwnas progressive``: DNA+'s rounds, each scaled-up searched architecture the next round's teacher."""

from __future__ import annotations

import argparse
from pathlib import Path

from hwnas.cli._args import at_least, positive_float
from hwnas.cli._output import emit, table
from hwnas.cli._recipe import add_device_argument
from hwnas.run import open_run
from hwnas.search.costs import OBJECTIVES


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``progressive`` to the CLI."""
    rounds = commands.add_parser("progressive", help="DNA+: rounds of distill, rate, search, train; a scaled-up "
                                                     "child that beats the teacher becomes the next teacher")
    rounds.add_argument("--run", required=True, help="run with a teacher that is a member of its space")
    rounds.add_argument("--rounds", type=at_least(1), required=True, help="rounds in all (a rerun goes on from there)")
    rounds.add_argument("--budget-ms", "--budget", dest="budget", type=positive_float, required=True,
                        help="the user's budget: ms for latency, millions for macs/params")
    rounds.add_argument("--objective", choices=OBJECTIVES, default="macs", help="what the budget limits (default macs)")
    rounds.add_argument("--table", type=Path, default=None, help="latency table ('hwnas profile'); needed for latency")
    rounds.add_argument("--child-epochs", type=at_least(1), default=30, help="epochs of each child's training")
    rounds.add_argument("--distill-epochs", type=at_least(1), default=20, help="epochs per block supernet")
    rounds.add_argument("--min-gain", type=float, default=0.0,
                        help="validation accuracy (a fraction) the scaled-up child must gain over the teacher to "
                             "replace it (default 0)")
    add_device_argument(rounds)
    rounds.add_argument("--json", action="store_true", help="machine-readable output")
    rounds.set_defaults(handler=run_progressive)


def run_progressive(args: argparse.Namespace) -> int:
    """Run or resume the rounds and print one line per round."""
    from hwnas.progressive import ProgressiveSettings, progress_file, progressive
    from hwnas.supernet.distill import DistillConfig

    run = open_run(args.run)
    settings = ProgressiveSettings(rounds=args.rounds, budget=args.budget, objective=args.objective, table=args.table,
                                   child_epochs=args.child_epochs, distill=DistillConfig(epochs=args.distill_epochs),
                                   min_gain=args.min_gain, device=args.device)
    record = progressive(run, settings)
    rows = [[r["round"], r["teacher"]["arch"], f"{r['teacher']['val_accuracy']:.4f}", r["searched"]["arch"],
             f"{r['searched']['val_accuracy']:.4f}", f"{r['scaled']['val_accuracy']:.4f}",
             "yes" if r["promoted"] else "no"] for r in record["rounds"]]
    text = table(rows, ["round", "teacher", "teacher val", "searched at the budget", "its val", "scaled-up val",
                        "next teacher"])
    ending = record.get("stopped") or record.get("finished") or ""
    emit(record, args.json, f"{text}\n{ending}\nrounds: {progress_file(run)}")
    return 0
