"""Benchmark: how much of a stand-alone accuracy's seed-to-seed spread is the test set's sampling noise?

One architecture of the tiny MBConv space is trained ``--seeds`` times with the ranking benchmark's recipe
(``ranking.stand_alone``: 20 epochs, augmentation, gradient clipping) on ``digits-distorted-4``, and each training is
evaluated on the data's own test split (360 digits x 4 distortions = 1440 images) and on the large test set (the same
360 digits under ``--test-copies`` fixed distortions of their own, ``hwnas.data.large_distorted_test_set``). The
seed-to-seed spread on each says how much of the ranking benchmark's noise is which test images a training happened
to get wrong rather than the training itself; the noise ceiling of a ranking grows when that part shrinks.

    python benchmarks/eval_noise.py --seeds 4
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from _common import ROOT, print_table, write_result
from ranking import _setup_worker, stand_alone

# the 6th architecture of ranking_wide (mid-range rating; 96.7% mean test accuracy over 3 seeds there)
DEFAULT_ARCH = "24:e6k3|40:e6k7,e3k5|80:e6k7|96:e6k3|192:e6k3|320:e3k5"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default=DEFAULT_ARCH)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--data", default="digits-distorted-4")
    parser.add_argument("--test-copies", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work", default=str(ROOT / "runs" / "bench-eval-noise"))
    args = parser.parse_args()
    if args.seeds < 2 or args.test_copies < 1:
        parser.error("needs --seeds >= 2 and --test-copies >= 1")
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"), initializer=_setup_worker) as pool:
        jobs = [pool.submit(stand_alone, args.work, args.data, args.arch, seed, args.epochs, True, 1.0, 1.0,
                            args.device, args.test_copies) for seed in range(args.seeds)]
        results = [job.result() for job in jobs]
    key = f"test_accuracy_x{args.test_copies}"
    own = [r["test_accuracy"] for r in results]
    large = [r[key] for r in results]
    own_std, large_std = statistics.stdev(own), statistics.stdev(large)
    rows = [[r["seed"], f"{100 * r['test_accuracy']:.2f}", f"{100 * r[key]:.2f}"] for r in results]
    rows.append(["std", f"{100 * own_std:.2f}", f"{100 * large_std:.2f}"])
    print_table(rows, ["seed", "own test split (%)", f"{args.test_copies}-copy test set (%)"])
    explained = 1 - (large_std / own_std) ** 2 if own_std > 0 else 0.0
    print(f"seed-to-seed std {100 * own_std:.2f} -> {100 * large_std:.2f} pts: {100 * explained:.0f}% of the variance "
          "on the own test split was the evaluation set's sampling")
    write_result("eval_noise", "eval_noise", {
        "arch": args.arch, "data": args.data, "epochs": args.epochs, "seeds": args.seeds,
        "test_copies": args.test_copies, "own_test_accuracy": own, "large_test_accuracy": large,
        "own_seed_std": own_std, "large_seed_std": large_std, "variance_share_of_evaluation": explained,
        "training_device": args.device, "wall_s": time.perf_counter() - started,
    })


if __name__ == "__main__":
    main()
