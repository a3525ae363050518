"""Benchmark: do block-wise ratings rank architectures the way stand-alone training does? (DNA vs SPOS)

On digits and the tiny MBConv space: teacher, block-wise distillation and rating of every candidate (hwnas), and side
by side an SPOS supernet (one supernet trained end to end on labels with uniform path sampling, rated by accuracy
after BN re-estimation). Then >= 20 architectures spread across hwnas's rating range are trained stand-alone with
one fixed recipe, and Kendall tau / Spearman rho between each method's score and test accuracy are reported, with
the spread of accuracies across architectures next to the seed-to-seed spread of one architecture.

    python benchmarks/ranking.py --archs 24
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Hashable
from pathlib import Path

import torch
from _common import print_table, write_result
from scipy.stats import kendalltau, spearmanr

from hwnas.data import DataBundle, load_data
from hwnas.distill import DistillConfig
from hwnas.run import create_or_open_run
from hwnas.spos import SPOSSupernet, spos_accuracy, train_spos
from hwnas.stages import distill, load_ratings, rate, train_teacher
from hwnas.training import TrainConfig, train_classifier
from search_spaces import SearchSpace

Ratings = list[dict[str, float]]

torch.set_num_threads(1)


def spread_archs(space: SearchSpace, ratings: Ratings, count: int, seed: int = 0) -> list[Hashable]:
    rng = random.Random(seed)
    pool = {space.sample(rng) for _ in range(4000)}
    scored = sorted(pool, key=lambda a: _rating(space, ratings, a))
    return [scored[round(i * (len(scored) - 1) / (count - 1))] for i in range(count)]


def _rating(space: SearchSpace, ratings: Ratings, arch: Hashable) -> float:
    return sum(ratings[b][str(c)] for b, c in enumerate(space.blocks_of(arch)))


def stand_alone(space: SearchSpace, arch: Hashable, bundle: DataBundle, recipe: TrainConfig, folder: Path,
                seed: int = 0) -> float:
    torch.manual_seed(seed)
    model = space.build(arch).train()
    config = TrainConfig(**{**vars(recipe), "seed": seed})
    return train_classifier(model, bundle, config, folder / f"{abs(hash((str(arch), seed)))}.pt",
                            show_progress=False)["test_accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=6, help="stand-alone training epochs (the fixed recipe)")
    parser.add_argument("--distill-epochs", type=int, default=10)
    parser.add_argument("--spos-epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=3, help="seeds for the seed-to-seed spread")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        run = create_or_open_run(Path(tmp) / "run", "mbconv-tiny", "digits")
        space = run.space
        bundle = load_data("digits", space.resolution)
        teacher = train_teacher(run, config=TrainConfig(epochs=20), show_progress=False)
        distill(run, config=DistillConfig(epochs=args.distill_epochs), show_progress=False)
        rate(run, show_progress=False)
        ratings = load_ratings(run)
        hwnas_s = time.perf_counter() - started
        archs = spread_archs(space, ratings, args.archs)

        start = time.perf_counter()
        spos = SPOSSupernet(space)
        train_spos(spos, bundle, args.spos_epochs, show_progress=False)
        spos_scores = [spos_accuracy(spos, arch, bundle) for arch in archs]
        spos_s = time.perf_counter() - start

        recipe = TrainConfig(epochs=args.epochs)
        folder = Path(tmp) / "children"
        folder.mkdir()
        accuracies = []
        for index, arch in enumerate(archs):
            accuracies.append(stand_alone(space, arch, bundle, recipe, folder))
            print(f"  {index + 1}/{len(archs)} {arch}: rating {_rating(space, ratings, arch):.3f}, test accuracy "
                  f"{accuracies[-1]:.4f}, SPOS {spos_scores[index]:.4f}", flush=True)
        reference = archs[len(archs) // 2]
        seeds = [stand_alone(space, reference, bundle, recipe, folder, seed) for seed in range(args.seeds)]
    dna = [-_rating(space, ratings, a) for a in archs]
    table = {
        "hwnas (DNA block-wise)": {"kendall_tau": kendalltau(dna, accuracies).statistic,
                                   "spearman_rho": spearmanr(dna, accuracies).statistic},
        "SPOS baseline": {"kendall_tau": kendalltau(spos_scores, accuracies).statistic,
                          "spearman_rho": spearmanr(spos_scores, accuracies).statistic},
    }
    arch_spread, seed_spread = statistics.pstdev(accuracies), statistics.pstdev(seeds)
    print_table([[name, f"{v['kendall_tau']:.3f}", f"{v['spearman_rho']:.3f}"] for name, v in table.items()],
                ["method", "Kendall tau", "Spearman rho"])
    print(f"accuracy spread across {len(archs)} archs: std {100 * arch_spread:.2f} pts "
          f"(range {100 * min(accuracies):.1f}-{100 * max(accuracies):.1f}%); seed-to-seed std of one arch: "
          f"{100 * seed_spread:.2f} pts over {len(seeds)} seeds")
    write_result("ranking", {
        "space": space.name, "data": "digits", "archs": [str(a) for a in archs], "ratings": [-d for d in dna],
        "spos_val_accuracy": spos_scores, "test_accuracy": accuracies, "methods": table,
        "recipe": vars(recipe), "distill_epochs": args.distill_epochs, "spos_epochs": args.spos_epochs,
        "teacher_test_accuracy": teacher["test_accuracy"], "accuracy_std_across_archs": arch_spread,
        "accuracy_std_across_seeds": seed_spread, "seed_accuracies": seeds, "reference_arch": str(reference),
        "hwnas_teacher_distill_rate_s": hwnas_s, "spos_train_rate_s": spos_s,
        "wall_s": time.perf_counter() - started,
        "targets": {"tau>=0.65": table["hwnas (DNA block-wise)"]["kendall_tau"] >= 0.65,
                    "tau>=spos+0.2": table["hwnas (DNA block-wise)"]["kendall_tau"]
                    >= table["SPOS baseline"]["kendall_tau"] + 0.2,
                    "arch_spread>seed_spread": arch_spread > seed_spread},
    })


if __name__ == "__main__":
    main()
