"""Benchmark: scale-out on one machine. Block supernets distilled by 1 worker against 2 (``hwnas distill --block
any``, 1 thread each), and search refinement by 4 workers sharing a study on PostgreSQL against 1 on SQLite (trials
per minute, duplicated trials). Results and their history: ``benchmarks/docs/scale_out.md``.

    python benchmarks/scale_out.py --epochs 2 --trials 24
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import postgres_server
from _common import ROOT, print_table, write_result

HWNAS = [sys.executable, "-m", "hwnas.cli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _run_all(commands: list[list[str]]) -> float:
    """Run the commands at once; their wall time (s). SystemExit when one fails."""
    started = time.perf_counter()
    workers = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
               for c in commands]
    for worker in workers:
        _, err = worker.communicate()
        if worker.returncode != 0:
            raise SystemExit(f"a worker failed: {err[-2000:]}")
    return time.perf_counter() - started


def distill_workers(base: Path, epochs: int) -> dict[str, float]:
    """All blocks of one seed distilled by 1 worker, then by 2, from the same teacher and cache."""
    times = {}
    for count in (1, 2):
        run = base.parent / f"distill-{count}"
        shutil.copytree(base, run, ignore=shutil.ignore_patterns("supernet", "ratings*", "search*", "seeds"))
        command = [*HWNAS, "-q", "distill", "--run", str(run), "--block", "any", "--epochs", str(epochs)]
        times[f"{count} worker(s)"] = _run_all([command] * count)
    times["speedup"] = times["1 worker(s)"] / times["2 worker(s)"]
    return times


def search_workers(base: Path, table: Path, trials: int, url: str) -> dict[str, dict[str, float]]:
    """The same refinement by 1 worker on SQLite and by 4 on PostgreSQL: trials per minute, duplicates."""
    import optuna

    out = {}
    for label, storage, count in (("1 worker, SQLite", f"sqlite:///{base.parent / 'alone.db'}", 1),
                                  ("4 workers, PostgreSQL", url, 4)):
        run = base.parent / f"search-{count}"
        shutil.copytree(base, run, ignore=shutil.ignore_patterns("search*"))
        command = [*HWNAS, "-q", "search", "--run", str(run), "--table", str(table), "--budget-ms", "10",
                   "--refine-trials", str(trials), "--storage", storage, "--quick", "--json"]
        seconds = _run_all([command] * count)
        (name,) = optuna.get_all_study_names(storage)
        finished = [t for t in optuna.load_study(study_name=name, storage=storage).trials if t.state.is_finished()]
        archs = [t.user_attrs.get("arch") for t in finished]
        enqueued = [json.dumps(t.params, sort_keys=True) for t in optuna.load_study(study_name=name, storage=storage)
                    .trials if "fixed_params" in t.system_attrs]
        out[label] = {"seconds": seconds, "trials": len(finished), "trials_per_min": 60 * len(finished) / seconds,
                      "repeated_archs": len(archs) - len(set(archs)),
                      "start_points_taken_twice": len(enqueued) - len(set(enqueued))}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2, help="distillation epochs per block (default 2)")
    parser.add_argument("--trials", type=int, default=24, help="refinement trials in all (default 24)")
    args = parser.parse_args()
    if args.epochs < 1 or args.trials < 1:
        parser.error(f"--epochs and --trials must be >= 1, got {args.epochs} and {args.trials}")
    reason = postgres_server.why_not()
    if reason:
        parser.error(f"no PostgreSQL server can be started here: {reason}")
    with tempfile.TemporaryDirectory() as tmp, postgres_server.start() as url:
        base = Path(tmp) / "run"
        subprocess.run([*HWNAS, "-q", "teacher", "train", "--run", str(base), "--space", "mbconv-tiny", "--data",
                        "digits", "--epochs", "2"], check=True, env=ENV)
        subprocess.run([*HWNAS, "-q", "distill", "--run", str(base), "--epochs", "1"], check=True, env=ENV)
        subprocess.run([*HWNAS, "-q", "rate", "--run", str(base)], check=True, env=ENV)
        table = Path(tmp) / "table.json"
        subprocess.run([*HWNAS, "-q", "profile", "--space", "mbconv-tiny", "--out", str(table), "--quick",
                        "--calibrate", "6", "--validate", "4"], check=True, env=ENV)
        distill = distill_workers(base, args.epochs)
        search = search_workers(base, table, args.trials, url)
    print_table([[k, f"{v:.1f}" if k != "speedup" else f"{v:.2f}x"] for k, v in distill.items()],
                ["distill all blocks", "wall s"])
    print_table([[k, f"{v['seconds']:.0f}", v["trials"], f"{v['trials_per_min']:.1f}", v["repeated_archs"],
                  v["start_points_taken_twice"]] for k, v in search.items()],
                ["search", "wall s", "trials", "trials/min", "repeated archs", "start points taken twice"])
    write_result("scale_out", "scale_out", {
        "space": "mbconv-tiny", "threads_per_worker": 1, "distill_epochs": args.epochs, "distill": distill,
        "trials": args.trials, "search": search,
        "targets": {"2 distill workers faster": distill["speedup"] > 1,
                    "no start point taken twice": all(v["start_points_taken_twice"] == 0 for v in search.values())}})


if __name__ == "__main__":
    main()
