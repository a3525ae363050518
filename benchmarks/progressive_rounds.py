"""Benchmark: DNA+'s progressive rounds (``hwnas progressive``) on a rated run, recorded with the machine.

Runs (or resumes: a finished run only reads its record) ``hwnas progressive`` on ``--run`` and writes the rounds
(teacher accuracy, the child searched at the budget, the scaled-up child at the teacher's cost, whether it became
the next teacher) to ``results/progressive/NAME.json``; round 1 is what one round (plain DNA) gives, so later rounds
read against it. Doc: ``benchmarks/docs/progressive_rounds.md``.

    python benchmarks/progressive_rounds.py --run runs/dnaplus_dd --rounds 2 --budget 1.2 --child-epochs 20 \\
        --distill-epochs 10 --name digits-distorted-4
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from _common import add_device_argument, checked_device, log_stages, print_table, write_result

from hwnas.progressive import ProgressiveSettings, progressive
from hwnas.run import open_run
from hwnas.supernet.distill import DistillConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a run with a teacher that is a member of its space")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--budget", type=float, default=1.2, help="MACs budget (millions)")
    parser.add_argument("--child-epochs", type=int, default=20)
    parser.add_argument("--distill-epochs", type=int, default=10)
    parser.add_argument("--name", required=True, help="result name")
    add_device_argument(parser, "the distillation and the children")
    args = parser.parse_args()
    args.device = checked_device(parser, args.device)
    log_stages()
    torch.set_num_threads(1)
    started = time.perf_counter()
    run = open_run(args.run)
    record = progressive(run, ProgressiveSettings(rounds=args.rounds, budget=args.budget, objective="macs",
                                                  child_epochs=args.child_epochs,
                                                  distill=DistillConfig(epochs=args.distill_epochs),
                                                  device=args.device))
    print_table([[r["round"], f"{r['teacher']['val_accuracy']:.4f}", r["searched"]["arch"],
                  f"{r['searched']['val_accuracy']:.4f}", f"{r['searched'].get('test_accuracy', float('nan')):.4f}",
                  f"{r['scaled']['val_accuracy']:.4f}", "yes" if r["promoted"] else "no"] for r in record["rounds"]],
                ["round", "teacher val", "searched at the budget", "val", "test", "scaled-up val", "next teacher"])
    write_result("progressive", args.name, {"run": str(args.run), "space": run.space.name, "data": run.config.data,
                                            "budget_mmacs": args.budget, "child_epochs": args.child_epochs,
                                            "distill_epochs": args.distill_epochs, **record,
                                            "wall_s_this_call": time.perf_counter() - started})


if __name__ == "__main__":
    main()
