"""Benchmark: the rating methods (DNA, DNA++, Pi-NAS) side by side on a ranking ground truth, each timed whole.

For each method, a run of the ground truth's space and data is made in ``--work`` and taken through its pipeline
with the hwnas CLI, every step timed on the wall clock: DNA trains its teacher (``--teacher-epochs``), then distills
and rates; the teacher-free methods distill and rate. Every method gets ``--seeds`` distillation seeds of
``--epochs`` epochs per block. Methods run side by side (``--parallel``, one torch thread each: on a 2-core machine
give it the whole machine), so their times are comparable with each other, not with a run alone. Each run's times
go to ``RUN/pipeline_seconds.json``; then ``rank_scores.py`` scores every run against the ground truth (tau,
partial tau given MACs, tau within bands, budgeted regret, bootstrap intervals; the children are not trained again)
and writes ``results/rank_scores/NAME.json``. Steps resume: a killed benchmark run again continues where it was.

    python benchmarks/rating_methods.py --truth benchmarks/results/ranking/ranking_100.json --work runs/methods
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import RESULTS, log_stages, print_table
from rank_scores import load_truth

HERE = Path(__file__).resolve().parent
METHODS = ("dna", "dnapp", "pinas")


def _step(command: list[str], log: Path) -> float:
    """Run one hwnas command (appending its output to ``log``); its wall seconds. Exits on failure."""
    started = time.perf_counter()
    with open(log, "a") as out:
        out.write(f"$ hwnas {' '.join(command)}\n")
        out.flush()
        done = subprocess.run([sys.executable, "-m", "hwnas.cli", *command, "--cpu-threads", "1"], stdout=out,
                              stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise SystemExit(f"'hwnas {' '.join(command)}' failed (exit {done.returncode}); see {log}")
    return time.perf_counter() - started


def pipeline(method: str, run: Path, space: str, data: str, args: argparse.Namespace) -> dict[str, float]:
    """Take one method's run through teacher (DNA), distillation and rating; the wall seconds of each step."""
    timed = run / "pipeline_seconds.json"
    if timed.exists():
        return json.loads(timed.read_text())
    run.parent.mkdir(parents=True, exist_ok=True)
    log = run.parent / f"{run.name}.log"
    seconds = {"teacher_s": 0.0}
    if method == "dna":
        seconds["teacher_s"] = _step(["teacher", "train", "--run", str(run), "--space", space, "--data", data,
                                      "--epochs", str(args.teacher_epochs), "-q"], log)
        create = []
    else:
        create = ["--space", space, "--data", data]
    seconds["distill_s"] = _step(["distill", "--run", str(run), "--method", method, *create, "--epochs",
                                  str(args.epochs), "--seeds", str(args.seeds), "-q"], log)
    seconds["rate_s"] = _step(["rate", "--run", str(run), "-q"], log)
    seconds["total_s"] = sum(seconds.values())
    timed.write_text(json.dumps(seconds | {"method": method, "parallel": args.parallel}, indent=1))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--truth", type=Path, default=RESULTS / "ranking" / "ranking_100.json",
                        help="a ground truth (ground_truth.py or ranking.py result)")
    parser.add_argument("--work", type=Path, required=True, help="folder for the runs (kept: steps resume)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--epochs", type=int, default=10, help="distillation epochs per block (ranking_100: 10)")
    parser.add_argument("--teacher-epochs", type=int, default=20, help="DNA's teacher epochs (ranking_100: 20)")
    parser.add_argument("--seeds", type=int, default=3, help="distillation seeds per method")
    parser.add_argument("--parallel", type=int, default=2, help="methods run at once, one thread each")
    parser.add_argument("--name", default=None, help="result name (default: methods_ + the ground truth's)")
    args = parser.parse_args()
    log_stages()
    if not args.truth.exists():
        parser.error(f"--truth {args.truth} does not exist")
    if min(args.epochs, args.teacher_epochs, args.seeds, args.parallel) < 1:
        parser.error("--epochs, --teacher-epochs, --seeds and --parallel must be >= 1")
    truth = load_truth(args.truth)
    runs = {m: (args.work / m).resolve() for m in args.methods}
    with ThreadPoolExecutor(args.parallel) as pool:
        times = dict(zip(runs, pool.map(lambda m: pipeline(m, runs[m], truth["space"], truth["data"], args), runs)))
    print_table([[m, f"{t['teacher_s']:.0f}", f"{t['distill_s']:.0f}", f"{t['rate_s']:.0f}", f"{t['total_s']:.0f}"]
                 for m, t in times.items()], ["method", "teacher s", "distill s", "rate s", "total s"])
    command = [sys.executable, str(HERE / "rank_scores.py"), "--truth", str(args.truth),
               "--name", args.name or f"methods_{truth['name']}"]
    for run in runs.values():
        command += ["--run", str(run)]
    subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
