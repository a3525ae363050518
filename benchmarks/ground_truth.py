"""Benchmark: a ranking ground truth that any rating method is scored against later, without training again.

Architectures of the data's space (``mbconv-tiny-64`` for ``glyphs``, ``mbconv-tiny`` for digits) are sampled at
random, stratified into ``--bands`` equal-count MACs bands (within a band, size cannot rank) with ``--per-band``
architectures each, and trained stand-alone ``--seeds`` times with one fixed recipe (``ranking.stand_alone``: AdamW,
on-the-fly augmentation, gradient clipping), evaluated on the data's large test set. Seed 0 of every architecture is
trained first, then seed 1, and so on; after every training the result JSON is written again, so partial results
can be committed as they come and a killed run resumes from its ``--work`` folder.

Reported: the architecture-to-architecture spread of the seed-averaged accuracy against the seed-to-seed spread of
one training (the issue's target: >= 3x), the same within each band, and the noise ceiling (``rank_noise``). The
JSON keeps every training's accuracy, the recipe, the data, the sampling seed and each architecture's MACs, params
and band: ``rank_scores.py`` scores ratings, SPOS and zero-cost proxies against it. Doc: ``benchmarks/docs/ground_truth.md``.

    python benchmarks/ground_truth.py --data glyphs --bands 5 --per-band 6 --seeds 3 --workers 1
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Any

import torch
from _common import RESULTS, ROOT, add_device_argument, checked_device, print_table, write_result
from rank_noise import noise_ceiling_tau, seed_noise_variance
from ranking import _setup_worker, recipe_tag, space_for, stand_alone


def banded_archs(space: Any, bands: int, per_band: int, seed: int, pool_size: int = 2000) -> list[dict[str, Any]]:
    """``per_band`` architectures from each of ``bands`` equal-count MACs bands of ``pool_size`` random samples
    (distinct architectures), each with its MACs, params and band; ordered so that bands alternate."""
    from search_spaces import count_macs

    rng = random.Random(seed)
    pool = sorted({space.sample(rng) for _ in range(pool_size)}, key=str)
    sized = sorted((count_macs(space.build(a), space.example_input()), str(a)) for a in pool)
    edges = [sized[round(i * (len(sized) - 1) / bands)][0] for i in range(bands + 1)]
    picked: list[list[dict[str, Any]]] = []
    for band in range(bands):
        members = sized[band * len(sized) // bands:(band + 1) * len(sized) // bands]
        chosen = rng.sample(members, per_band)
        picked.append([{"arch": arch, "macs": macs, "band": band,
                        "params": sum(p.numel() for p in space.build(space.parse(arch)).parameters())}
                       for macs, arch in sorted(chosen)])
    return [{**picked[band][i], "band_edges_macs": edges[band:band + 2]}
            for i in range(per_band) for band in range(bands)]


def committed(name: str, archs: list[dict[str, Any]], tag: str, key: str) -> dict[str, Any] | None:
    """The result already written under ``name`` when it holds the same architectures, recipe and accuracy
    measure (its trainings are not run again, so a new machine resumes from what was committed); else None."""
    path = RESULTS / "ground_truth" / f"{name}.json"
    if not path.is_file():
        return None
    earlier = json.loads(path.read_text())
    same = ([a["arch"] for a in earlier.get("archs", [])] == [a["arch"] for a in archs]
            and earlier.get("recipe", {}).get("tag") == tag and earlier.get("accuracy_measure") == key)
    if not same:
        print(f"{path.name} holds another plan (architectures, recipe or measure): starting afresh", flush=True)
    return earlier if same else None


def spread_summary(per_seed: list[list[float | None]], bands: list[int]) -> dict[str, Any]:
    """Architecture spread against seed noise over the architectures trained with every seed so far, overall and
    per band; the noise ceiling when two seeds or more are complete."""
    seeds = [s for s in range(len(per_seed)) if all(v is not None for v in per_seed[s])]
    complete = [i for i in range(len(bands)) if all(per_seed[s][i] is not None for s in range(len(per_seed)))]
    trained = [i for i in range(len(bands)) if sum(per_seed[s][i] is not None for s in range(len(per_seed))) >= 2]
    summary: dict[str, Any] = {"complete_seeds": len(seeds), "archs_with_every_seed": len(complete)}
    if len(trained) >= 2:
        rows = [[per_seed[s][i] for i in trained] for s in range(len(per_seed))]
        by_arch = [[v for v in column if v is not None] for column in zip(*rows)]
        seed_var = statistics.fmean(statistics.variance(v) for v in by_arch)
        means = [statistics.fmean(v) for v in by_arch]
        summary.update(seed_std=math.sqrt(seed_var), arch_std=statistics.pstdev(means),
                       seed_std_from_archs=len(trained))
        summary["spread_over_noise"] = summary["arch_std"] / summary["seed_std"] if seed_var > 0 else None
        summary["per_band"] = {}
        for band in sorted(set(bands)):
            inside = [m for m, i in zip(means, trained) if bands[i] == band]
            if len(inside) >= 2:
                summary["per_band"][str(band)] = {"archs": len(inside), "arch_std": statistics.pstdev(inside),
                                                  "spread_over_noise": statistics.pstdev(inside) / math.sqrt(seed_var)
                                                  if seed_var > 0 else None}
    if len(seeds) >= 2:
        full = [per_seed[s] for s in seeds]
        summary["noise_ceiling_kendall_tau"] = noise_ceiling_tau(full, seed_variance=seed_noise_variance(full))
    return summary


def parse_arguments() -> argparse.Namespace:
    """The command line, checked before any work (a bad argument exits 2 with what is accepted)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="glyphs")
    parser.add_argument("--bands", type=int, default=5, help="equal-count MACs bands")
    parser.add_argument("--per-band", type=int, default=6, help="architectures drawn from each band")
    parser.add_argument("--seeds", type=int, default=3, help="stand-alone trainings per architecture (>= 2)")
    parser.add_argument("--sample-seed", type=int, default=0, help="seed of the architecture sampling")
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--augment-strength", type=float, default=0.5,
                        help="on-the-fly augmentation strength (glyphs are rendered with distortions already)")
    parser.add_argument("--grad-clip", type=float, default=1.0)
    parser.add_argument("--test-copies", type=int, default=32, help="large test set size (see hwnas.data)")
    parser.add_argument("--workers", type=int, default=1,
                        help="trainings at once, 1 CPU thread each (on a GPU they share it)")
    add_device_argument(parser, "the trainings")
    parser.add_argument("--work", default=str(ROOT / "runs" / "bench-ground-truth"))
    parser.add_argument("--name", default="glyphs")
    args = parser.parse_args()
    if args.bands < 1 or args.per_band < 2 or args.seeds < 2 or args.epochs < 1 or args.workers < 1:
        parser.error("needs --bands >= 1, --per-band >= 2, --seeds >= 2, --epochs >= 1, --workers >= 1")
    args.device = checked_device(parser, args.device)
    return args


def main() -> None:
    args = parse_arguments()
    from search_spaces import get_space

    torch.set_num_threads(1)
    started = time.perf_counter()
    space = get_space(space_for(args.data))
    archs = banded_archs(space, args.bands, args.per_band, args.sample_seed)
    print(f"{len(archs)} architectures of {space.name} in {args.bands} MACs bands; {args.seeds} seeds each", flush=True)
    recipe = (args.epochs, True, args.augment_strength, args.grad_clip or None)
    per_seed: list[list[float | None]] = [[None] * len(archs) for _ in range(args.seeds)]
    own_split: list[list[float | None]] = [[None] * len(archs) for _ in range(args.seeds)]
    seconds: list[float] = []
    key = f"test_accuracy_x{args.test_copies}"
    earlier = committed(args.name, archs, recipe_tag(*recipe), key)
    if earlier:
        per_seed, own_split = earlier["test_accuracy_per_seed"], earlier["own_test_split_per_seed"]
        print(f"resuming from the committed result: {earlier['trainings_done']} trainings done", flush=True)
    earlier_wall = float(earlier.get("wall_s", 0.0)) if earlier else 0.0

    def record() -> dict[str, Any]:
        summary = spread_summary(per_seed, [a["band"] for a in archs])
        write_result("ground_truth", args.name, {
            "space": space.name, "data": args.data, "archs": archs, "test_accuracy_per_seed": per_seed,
            "own_test_split_per_seed": own_split, "accuracy_measure": key, "summary": summary,
            "recipe": {"epochs": args.epochs, "augment": True, "augment_strength": args.augment_strength,
                       "grad_clip": args.grad_clip or None, "tag": recipe_tag(*recipe),
                       "train_config": "hwnas.training.TrainConfig defaults otherwise"},
            "sampling": {"seed": args.sample_seed, "bands": args.bands, "per_band": args.per_band, "pool": 2000},
            "trainings_done": sum(v is not None for row in per_seed for v in row),
            "training_devices": sorted({*(earlier or {}).get("training_devices", ["cpu"]), args.device}),
            "trainings_planned": len(archs) * args.seeds,
            "training_seconds_median": (statistics.median(seconds) if seconds
                                        else (earlier or {}).get("training_seconds_median")),
            "wall_s": earlier_wall + time.perf_counter() - started,
        })
        return summary

    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"), initializer=_setup_worker) as pool:
        jobs = {pool.submit(stand_alone, args.work, args.data, a["arch"], seed, *recipe, args.device,
                            args.test_copies):
                (seed, index) for seed in range(args.seeds) for index, a in enumerate(archs)
                if per_seed[seed][index] is None}
        for done, job in enumerate(as_completed(jobs), 1):
            seed, index = jobs[job]
            result = job.result()
            per_seed[seed][index], own_split[seed][index] = result.get(key), result["test_accuracy"]
            if "seconds" in result:
                seconds.append(result["seconds"])
            summary = record()
            print(f"  {done}/{len(jobs)} seed {seed} band {archs[index]['band']} {archs[index]['arch']}: "
                  f"{result.get(key, float('nan')):.4f}"
                  + (f"; spread/noise {summary['spread_over_noise']:.2f}" if summary.get("spread_over_noise") else ""),
                  flush=True)
    summary = record()
    print_table([[k, f"{v:.4f}" if isinstance(v, float) else v] for k, v in summary.items() if k != "per_band"],
                ["measure", "value"])


if __name__ == "__main__":
    main()
