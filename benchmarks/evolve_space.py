"""Benchmark: NSE's evolved op set against the fixed space, by the trained accuracy of what each search picks.

In ``--work``: a run of ``--space`` on ``--data`` with its teacher; the fixed space distilled for ``rounds x epochs``
epochs per block and rated; ``hwnas evolve`` on the same run (``--rounds`` rounds of ``--epochs`` epochs adding
``--pool``: so every op the evolution keeps had at most as many epochs as the fixed space's). At each MACs budget
the exact combiner picks the best-rated member of each space; every distinct pick is trained stand-alone
(``--child-epochs``, ``--seeds`` seeds, the same recipe for all) and its test accuracy averaged over seeds. Every step
resumes (runs, evolution and children are kept in ``--work``).

    python benchmarks/evolve_space.py --work runs/evolve_space      # about 40 min on 2 cores
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from pathlib import Path
from typing import Any

from _common import add_device_argument, checked_device, log_stages, print_table, write_result

from hwnas.evolve import EvolveSettings, evolve
from hwnas.run import RunDir, create_or_open_run, open_run
from hwnas.search.budgeted import SearchSettings, search
from hwnas.ship.child import train_child
from hwnas.supernet.distill import DistillConfig, distill
from hwnas.supernet.ratings import rate
from hwnas.supernet.teacher import teacher_path, train_teacher
from hwnas.training import TrainConfig


def prepare(args: argparse.Namespace) -> tuple[RunDir, RunDir]:
    """The fixed space's rated run and the evolved space's final run."""
    run = create_or_open_run(args.work / "run", args.space, args.data)
    if not teacher_path(run).exists():
        train_teacher(run, config=TrainConfig(epochs=args.teacher_epochs), device=args.device)
    distill(run, config=DistillConfig(epochs=args.rounds * args.epochs), device=args.device)
    rate(run, device=args.device)
    record = evolve(run, EvolveSettings(rounds=args.rounds, pool=tuple(args.pool.split(",")), epochs=args.epochs),
                    device=args.device)
    return run, open_run(record["final_run"])


def trained_accuracy(run: RunDir, arch: str, args: argparse.Namespace) -> list[float]:
    """Test accuracy of ``arch`` trained stand-alone with each seed (kept in ``--work/children``)."""
    label = hashlib.sha1(arch.encode()).hexdigest()[:12]
    accuracies = []
    for seed in range(args.seeds):
        folder = args.work / "children" / label / f"seed{seed}"
        result = train_child(run, arch, TrainConfig(epochs=args.child_epochs, seed=seed), folder=folder,
                             device=args.device)
        accuracies.append(float(result["test_accuracy"]))
    return accuracies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--space", default="mbconv-tiny")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.8, 1.2, 2.0], help="MACs budgets (millions)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10, help="distillation epochs per round")
    parser.add_argument("--pool", default="e6k9,e4k5,e3k3.5.7,e6k3.5.7")
    parser.add_argument("--teacher-epochs", type=int, default=20)
    parser.add_argument("--child-epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--name", default=None)
    add_device_argument(parser, "the teacher, the distillation and the children")
    args = parser.parse_args()
    args.device = checked_device(parser, args.device)
    log_stages()
    started = time.perf_counter()
    fixed, evolved = prepare(args)
    rows, entries = [], []
    for budget in args.budgets:
        entry: dict[str, Any] = {"budget_mmacs": budget}
        for label, run in (("fixed", fixed), ("evolved", evolved)):
            chosen = search(run, None, budget, SearchSettings(objective="macs", refine_trials=0),
                            show_progress=False).to_dict()
            accuracy = trained_accuracy(run, chosen["chosen"]["arch"], args)
            entry[label] = {"arch": chosen["chosen"]["arch"], "macs": chosen["macs"], "rating": chosen["chosen"]["rating"],
                            "test_accuracy_per_seed": accuracy, "test_accuracy": statistics.fmean(accuracy)}
        entries.append(entry)
        rows.append([budget, f"{entry['fixed']['macs'] / 1e6:.2f}", f"{entry['fixed']['test_accuracy']:.4f}",
                     f"{entry['evolved']['macs'] / 1e6:.2f}", f"{entry['evolved']['test_accuracy']:.4f}",
                     f"{100 * (entry['evolved']['test_accuracy'] - entry['fixed']['test_accuracy']):+.2f}",
                     entry["evolved"]["arch"]])
    print_table(rows, ["budget M", "fixed M", "fixed acc", "evolved M", "evolved acc", "gain pts", "evolved pick"])
    record = open_run(fixed.path).path / "evolve" / "evolution.json"
    write_result("evolve_space", args.name or f"{args.space}_{args.data}", {
        "space": args.space, "data": args.data, "evolved_space": evolved.config.space, "settings": vars(args) | {
            "work": str(args.work)}, "evolution": json.loads(record.read_text()), "budgets": entries,
        "wall_s": time.perf_counter() - started})


if __name__ == "__main__":
    main()
