"""Benchmark: do block-wise ratings rank architectures the way stand-alone training does? (DNA vs SPOS)

On ``mbconv-tiny`` with digits (default ``digits-distorted-4``) or ``mbconv-tiny-64`` with ``--data glyphs``: the
teacher, block-wise distillation and rating of every candidate (hwnas) and, side by side, an SPOS supernet trained
end to end on labels (rated by validation accuracy after BN re-estimation). ``--archs`` architectures spread across
hwnas's rating range (plus ``--full-range-archs`` from its best to its worst) are each trained stand-alone
``--seeds`` times with one fixed recipe (AdamW, on-the-fly augmentation, gradient clipping), evaluated on a large
fixed test set (``hwnas.data.large_test_set``) with the data's own split beside it.

Reported: Kendall tau and Spearman rho of each score (hwnas, SPOS, parameters, MACs) against the seed-averaged
accuracy; the spread across architectures next to the seed-to-seed spread; the noise ceiling (``rank_noise``: the tau
a perfect score would reach against these accuracies). Results and their history: ``benchmarks/docs/ranking.md``.

Work lives in ``--work`` (default ``runs/bench-ranking``); every stage and training is checkpointed, so a killed run
resumes. Seed 0 of every architecture is trained first, then seed 1, and so on; ``--done-only`` ranks what is trained
so far without training. Result JSONs record every training's accuracies, so ``--restore-children RESULT...`` writes
them back into a lost ``--work``. ``--device cuda`` trains on a GPU with the same recipe.

    python benchmarks/ranking.py --archs 20 --seeds 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Hashable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
from _common import ROOT, print_table, refuse, result_path, write_result
from scipy.stats import kendalltau, spearmanr

Ratings = list[dict[str, float]]
SPACES = {"digits": "mbconv-tiny", "glyphs": "mbconv-tiny-64"}  # the space each embedded data family is ranked on


def space_for(data: str) -> str:
    """The space a data set is ranked on: ``mbconv-tiny`` (32 px, 10 classes) for digits, ``mbconv-tiny-64`` (64 px,
    62 classes) for glyphs."""
    return SPACES["glyphs" if data.startswith("glyphs") else "digits"]


def resolution_for(data: str) -> int:
    """The resolution of the space a data set is ranked on."""
    from search_spaces import get_space

    return get_space(space_for(data)).resolution


def _setup_worker() -> None:
    torch.set_num_threads(1)


def hwnas_stage(work: str, data: str, teacher_epochs: int, distill_epochs: int, distill_lr: float, augment: bool,
                strength: float, clip: float | None, device: str, share_twins: bool = True) -> float:
    """Teacher, block-wise distillation, rating (each resumable); returns the teacher's test accuracy."""
    from hwnas.run import create_or_open_run
    from hwnas.supernet.distill import DistillConfig, distill
    from hwnas.supernet.ratings import rate
    from hwnas.supernet.teacher import train_teacher
    from hwnas.training import TrainConfig

    run = create_or_open_run(Path(work) / "run", space_for(data), data)
    config = TrainConfig(epochs=teacher_epochs, augment=augment, augment_strength=strength, grad_clip=clip)
    teacher = train_teacher(run, config=config, show_progress=False, device=device)
    distill(run, config=DistillConfig(epochs=distill_epochs, lr=distill_lr, share_twins=share_twins),
            show_progress=False, device=device)
    rate(run, show_progress=False, device=device)
    return float(teacher["test_accuracy"])


def rating_seed_stage(work: str, seed: int, distill_epochs: int, distill_lr: float, device: str,
                      share_twins: bool = True) -> str:
    """Block supernets distilled again with another seed from the same teacher (``work/run-seedK``, the teacher and
    feature cache copied from ``work/run``), then rated: how much of the rating is the supernets' own noise."""
    import shutil

    from hwnas.run import open_run
    from hwnas.supernet.distill import DistillConfig, distill
    from hwnas.supernet.ratings import rate

    source, target = Path(work) / "run", Path(work) / f"run-seed{seed}"
    if not (target / "run.json").exists():
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        for name in ("run.json", "teacher.pt", "teacher_training.pt"):
            shutil.copy2(source / name, partial / name)
        if (source / "cache").exists():
            shutil.copytree(source / "cache", partial / "cache")
        partial.rename(target)
    run = open_run(target)
    distill(run, config=DistillConfig(epochs=distill_epochs, lr=distill_lr, seed=seed, share_twins=share_twins),
            show_progress=False, device=device)
    rate(run, show_progress=False, device=device)
    return str(target)


def spos_checkpoint(work: Path, sharing: str) -> Path:
    """Where the SPOS supernet of one weight sharing lives (``spos.pt``: separate ops, as before sharing existed)."""
    return work / ("spos.pt" if sharing == "separate" else f"spos_{sharing}.pt")


def spos_stage(work: str, data: str, epochs: int, augment: bool, clip: float | None, sharing: str,
               warmup: int, device: str) -> list[dict[str, float]]:
    """The SPOS supernet, trained (or resumed) to ``epochs``; returns its history."""
    from spos import SPOSConfig, SPOSSupernet, train_spos

    from hwnas.data import load_data
    from search_spaces import get_space

    torch.manual_seed(0)
    supernet = SPOSSupernet(get_space(space_for(data)), sharing=sharing)
    config = SPOSConfig(epochs=epochs, augment=augment, grad_clip=clip, sharing=sharing, warmup_epochs=warmup)
    return train_spos(supernet, load_data(data, resolution_for(data)), config, spos_checkpoint(Path(work), sharing),
                      show_progress=False, device=device)


def large_test_accuracy(model: torch.nn.Module, data: str, copies: int) -> float | None:
    """Accuracy on the data's large test set (``hwnas.data.large_test_set``), or None for an image folder."""
    from hwnas.data import large_test_set
    from hwnas.training import evaluate

    bundle = large_test_set(data, resolution_for(data), copies) if copies else None
    return evaluate(model, bundle, "test") if bundle is not None else None


def recipe_tag(epochs: int, augment: bool, strength: float, clip: float | None) -> str:
    """The part of a child's file name that says which recipe trained it (``_e20_aug_clip1``)."""
    tag = ("_aug" if strength == 1 else f"_aug{strength:g}") if augment else ""
    return f"_e{epochs}{tag}" + ("" if clip is None else f"_clip{clip:g}")


def child_name(arch: str, seed: int, epochs: int, augment: bool, strength: float, clip: float | None) -> str:
    """The file name (without suffix) of one stand-alone training in ``work/children``."""
    return f"{hashlib.sha1(arch.encode()).hexdigest()[:12]}{recipe_tag(epochs, augment, strength, clip)}_s{seed}"


def recipe_seed_variance(folder: Path, tag: str, key: str) -> tuple[float, int] | None:
    """Seed-to-seed variance of one training with the recipe ``tag``, pooled over every architecture in ``folder``
    trained with at least two seeds (accuracy ``key``), and how many architectures that is; None when there are
    none. It lets a ranking of one seed per architecture still estimate its noise ceiling."""
    from profilers.files import read_json

    by_arch: dict[str, list[float]] = {}
    for path in folder.glob(f"*{tag}_s*.json"):  # ``_e20_aug_clip1_s`` matches neither ``_clip10_s`` nor ``_aug0.5``
        result = read_json(path, "stand-alone result")
        if result.get(key) is not None:
            by_arch.setdefault(result["arch"], []).append(result[key])
    variances = [statistics.variance(values) for values in by_arch.values() if len(values) >= 2]
    return (statistics.fmean(variances), len(variances)) if variances else None


def restore_children(folder: Path, sources: list[Path], data: str, epochs: int, augment: bool, strength: float,
                     clip: float | None, test_copies: int) -> tuple[int, int]:
    """Write the stand-alone trainings that earlier result JSONs of this recipe recorded into ``folder`` (the
    ``work/children`` a run reads), so a fresh clone, or a work folder that was lost, resumes a long ranking run
    instead of training them again; returns (written, already there). A source of another recipe, data set or
    accuracy measure is refused, and so is a record in the folder that disagrees with a source (other trainings
    under the same name). The restored records say where they came from (``restored_from``); their weights are not
    restored, so they cannot be evaluated on another test set."""
    from profilers.files import atomic_write_json, read_json

    key = f"test_accuracy_x{test_copies}" if test_copies else None
    wanted = {"epochs": epochs, "augment": augment, "augment_strength": strength if augment else None,
              "grad_clip": clip}
    splits: dict[Path, tuple[list[str], list[list[float]], list[list[float]] | None]] = {}
    for source in sources:  # every source checked before anything is written
        result = read_json(source, "earlier ranking result")
        recipe = {name: result.get("recipe", {}).get(name) for name in wanted}
        problems = [f"{name} {recipe[name]!r} (this run: {value!r})" for name, value in wanted.items()
                    if recipe[name] != value]
        if result.get("data") != data:
            problems.append(f"data {result.get('data')!r} (this run: {data!r})")
        measure = result.get("accuracy_measure") or "test_accuracy"  # None: results from before the large test set
        own = (result["own_test_split"]["test_accuracy_per_seed"] if "own_test_split" in result
               else result["test_accuracy_per_seed"] if measure == "test_accuracy" else None)
        if own is None or (key and measure != key):
            problems.append(f"accuracy measure {measure!r} (this run: {key or 'test_accuracy'!r}, and the data's own "
                            "test split)")
        if problems:
            raise SystemExit(f"error: --restore-children {source}: its trainings do not match this run's: "
                             + "; ".join(problems) + ". Restore from results of the same recipe, or drop it.")
        splits[source] = (result["archs"], result["test_accuracy_per_seed"], own)
    folder.mkdir(parents=True, exist_ok=True)
    written = present = 0
    for source, (archs, measured, own) in splits.items():
        for seed, (values, own_values) in enumerate(zip(measured, own, strict=True)):
            for arch, value, own_value in zip(archs, values, own_values, strict=True):
                record = {"arch": arch, "seed": seed, "test_accuracy": own_value, "restored_from": source.name}
                if key:
                    record[key] = value
                path = folder / f"{child_name(arch, seed, epochs, augment, strength, clip)}.json"
                if path.exists():
                    existing = read_json(path, "stand-alone result")
                    if any(existing.get(name) != record[name] for name in ("test_accuracy", key) if name):
                        raise SystemExit(f"error: {path} ({arch}, seed {seed}) disagrees with {source}: "
                                         f"{existing.get(key or 'test_accuracy')} vs {record[key or 'test_accuracy']}"
                                         "; they are different trainings. Move one of them away.")
                    present += 1
                    continue
                atomic_write_json(path, record)
                written += 1
    return written, present


def stand_alone(work: str, data: str, arch: str, seed: int, epochs: int, augment: bool, strength: float,
                clip: float | None, device: str, test_copies: int) -> dict[str, Any]:
    """Train one architecture from scratch with the fixed recipe (resumable); the result is kept as JSON and the
    final weights beside it (so a later run can evaluate them on another test set)."""
    from hwnas.data import load_data
    from hwnas.devices import load_checkpoint
    from hwnas.training import TrainConfig, train_classifier
    from profilers.files import atomic_torch_save, atomic_write_json, read_json
    from search_spaces import get_space

    folder = Path(work) / "children"
    folder.mkdir(parents=True, exist_ok=True)
    name = child_name(arch, seed, epochs, augment, strength, clip)
    result_path, weights = folder / f"{name}.json", folder / f"{name}_weights.pt"
    space = get_space(space_for(data))
    if result_path.exists():
        result = read_json(result_path, "stand-alone result")
        key = f"test_accuracy_x{test_copies}"
        if test_copies and key not in result and weights.exists():
            model = space.build(space.parse(arch))
            model.load_state_dict(load_checkpoint(weights))
            result[key] = large_test_accuracy(model, data, test_copies)
            atomic_write_json(result_path, result)
        return result
    torch.manual_seed(seed)
    model = space.build(space.parse(arch)).train()
    started = time.perf_counter()
    config = TrainConfig(epochs=epochs, seed=seed, augment=augment, augment_strength=strength, grad_clip=clip)
    trained = train_classifier(model, load_data(data, resolution_for(data)), config, folder / f"{name}.pt",
                               show_progress=False, device=device)
    result = {"arch": arch, "seed": seed, "test_accuracy": trained["test_accuracy"],
              "val_accuracy": trained["history"][-1]["val_accuracy"], "seconds": time.perf_counter() - started,
              "device": device}
    if test_copies:
        result[f"test_accuracy_x{test_copies}"] = large_test_accuracy(model, data, test_copies)
    atomic_torch_save(model.state_dict(), weights)
    atomic_write_json(result_path, result)
    (folder / f"{name}.pt").unlink(missing_ok=True)
    return result


def spread_archs(space: Any, ratings: Ratings, count: int, seed: int = 0) -> list[Hashable]:
    """``count`` architectures at evenly spaced quantiles of hwnas's rating over 4000 random samples."""
    rng = random.Random(seed)
    pool = sorted({space.sample(rng) for _ in range(4000)}, key=str)
    scored = sorted(pool, key=lambda a: rating_of(space, ratings, a))
    return [scored[round(i * (len(scored) - 1) / (count - 1))] for i in range(count)]


def full_range_archs(space: Any, ratings: Ratings, count: int) -> list[Hashable]:
    """``count`` architectures from hwnas's best to its worst over the whole space: the ``i``-th takes, in every
    block, the candidate at quantile ``i / (count - 1)`` of that block's ratings (random samples never reach the
    ends: the deepest, widest and the smallest networks)."""
    ranked = [sorted(space.block_candidates(b), key=lambda c, b=b: (ratings[b][str(c)], str(c)))
              for b in range(space.num_blocks)]
    return [space.assemble([block[round(i / (count - 1) * (len(block) - 1))] for block in ranked])
            for i in range(count)]


def rating_of(space: Any, ratings: Ratings, arch: Hashable) -> float:
    """An architecture's hwnas score: the sum of its blocks' ratings (lower is better)."""
    return sum(ratings[b][str(c)] for b, c in enumerate(space.blocks_of(arch)))


def correlation(scores: list[float], accuracies: list[float]) -> dict[str, float]:
    """Kendall tau and Spearman rho (higher score should mean higher accuracy)."""
    return {"kendall_tau": float(kendalltau(scores, accuracies).statistic),
            "spearman_rho": float(spearmanr(scores, accuracies).statistic)}


def plot(path: Path, ratings: list[float], spos: list[float], accuracies: list[float], taus: dict[str, float]) -> None:
    """Scatter plots: each method's score against the stand-alone accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, scores, label, name in ((axes[0], ratings, "hwnas rating (sum of block l1_rel, lower is better)",
                                       "hwnas (DNA block-wise)"),
                                      (axes[1], spos, "SPOS supernet val accuracy", "SPOS baseline")):
        axis.scatter(scores, [100 * a for a in accuracies])
        axis.set_xlabel(label)
        axis.set_ylabel("stand-alone test accuracy (%)")
        axis.set_title(f"{name}: Kendall tau {taus[name]:.3f}")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", type=int, default=20,
                        help="architectures at evenly spaced quantiles of hwnas's rating over random samples (0: none, "
                             "only --full-range-archs)")
    parser.add_argument("--seeds", type=int, default=2, help="stand-alone trainings per architecture (>= 2)")
    parser.add_argument("--data", default="digits-distorted-4")
    parser.add_argument("--epochs", type=int, default=20, help="stand-alone training epochs (the fixed recipe)")
    parser.add_argument("--no-augment", dest="augment", action="store_false",
                        help="train teacher, SPOS and children without on-the-fly augmentation")
    parser.add_argument("--augment-strength", type=float, default=1.0,
                        help="scale of the augmentation's distortion ranges, in (0, 1] (teacher and children); 0.5 "
                             "trains a better teacher but narrows the spread between architectures (ranking_m5)")
    parser.add_argument("--grad-clip", type=float, default=1.0,
                        help="gradient norm clip of every training (teacher, SPOS, children); 0 turns it off (the "
                             "results before clipping existed: ranking_noclip, ranking_s2, ranking_m5)")
    parser.add_argument("--spos-augment", action="store_true",
                        help="augment SPOS's training too (off: the one-shot supernet learns faster without)")
    parser.add_argument("--teacher-epochs", type=int, default=20)
    parser.add_argument("--distill-epochs", type=int, default=10)
    parser.add_argument("--distill-lr", type=float, default=0.02,
                        help="block supernets' Adam learning rate (0.002, DNA's, gave every result before ``ranking``: "
                             "under-trained supernets)")
    parser.add_argument("--no-share-twins", dest="share_twins", action="store_false",
                        help="distill every kernel as its own module (the supernets of every result before twins "
                             "shared a module; needed to reuse their work folders)")
    parser.add_argument("--spos-epochs", type=int, default=40)
    parser.add_argument("--spos-sharing", choices=("entangled", "separate"), default="entangled",
                        help="SPOS weight sharing: one sliced weight per layer (default) or the SPOS paper's separate "
                             "ops (every result before ``ranking`` was measured with it: the supernet did not learn)")
    parser.add_argument("--spos-warmup", type=int, default=5,
                        help="SPOS epochs on the largest path before uniform sampling (0 for results before "
                             "``ranking``)")
    parser.add_argument("--archs-from", type=Path, default=None,
                        help="take the architectures of an earlier result JSON instead of spreading new ones over "
                             "this run's ratings (the stand-alone trainings in --work are then reused: a new rating "
                             "recipe is judged on the same architectures and trainings)")
    parser.add_argument("--full-range-archs", type=int, default=0,
                        help="add this many architectures spread from hwnas's best to its worst over the whole space "
                             "(per-block rating quantiles; random samples never reach the ends)")
    parser.add_argument("--rating-seeds", type=int, default=1,
                        help="distill and rate the block supernets with this many seeds (the teacher is shared): the "
                             "hwnas row is seed 0's; the others measure the rating's agreement with itself")
    parser.add_argument("--test-copies", type=int, default=32,
                        help="also evaluate every child on the test digits under this many fixed distortions of their "
                             "own (hwnas.data.large_distorted_test_set) and rank by that accuracy: less sampling noise "
                             "than the data's own test split (0: the data's test split only)")
    parser.add_argument("--done-only", action="store_true",
                        help="train no child: rank the architectures whose first --seeds stand-alone trainings are "
                             "already in --work (an interim result of a long run; --seeds 1 allowed, the seed spread "
                             "then pooled over the folder's architectures trained with more seeds)")
    parser.add_argument("--restore-children", type=Path, nargs="+", default=[], metavar="RESULT",
                        help="first write the stand-alone trainings recorded in these earlier result JSONs (same "
                             "recipe, data and accuracy measure) into --work's children folder: a lost or fresh work "
                             "folder resumes the run instead of training them again (their weights are not kept)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="auto", help="where every training runs: auto (a CUDA GPU when torch "
                        "sees one), cpu, cuda or cuda:N; the recipe is the same, so a GPU runs more seeds in less time")
    parser.add_argument("--work", default=str(ROOT / "runs" / "bench-ranking"))
    parser.add_argument("--name", default="ranking", help="result name: benchmarks/results/ranking/NAME.json and NAME.png")
    return parser


def parse_arguments() -> argparse.Namespace:
    """The command line, checked before any work (a bad argument exits 2 with what is accepted); ``clip`` is the
    gradient clip or None."""
    parser = build_parser()
    args = parser.parse_args()
    args.clip = args.grad_clip or None
    if args.full_range_archs == 1 or args.full_range_archs < 0:
        parser.error("--full-range-archs needs 0 or >= 2 (the two ends at least)")
    if args.test_copies < 0:
        parser.error(f"--test-copies must be >= 0 (0: the data's own test split only), got {args.test_copies}")
    if args.seeds < (1 if args.done_only else 2) or args.archs in (1, 2) or args.archs < 0 \
            or args.archs + args.full_range_archs < 3 or args.rating_seeds < 1:
        parser.error("the benchmark needs --seeds >= 2 (seed-to-seed spread; >= 1 with --done-only), --archs 0 or "
                     ">= 3, at least 3 architectures in all (--archs plus --full-range-archs) and --rating-seeds >= 1")
    if args.done_only and not (Path(args.work) / "run" / "ratings.json").exists():
        parser.error(f"--done-only needs a rated run at {Path(args.work) / 'run'} (it trains nothing); run without "
                     "--done-only first")
    return args


@dataclass
class Trained:
    """What the training stages produced: hwnas's teacher and ratings, SPOS's history, the extra rating seeds' runs
    and every stand-alone training's record, by (architecture, seed)."""

    teacher_accuracy: float
    hwnas_s: float
    space: Any
    ratings: Ratings
    distill_config: Any
    archs: list[str]
    spos_history: list[dict[str, Any]]
    seed_runs: list[Path]
    results: dict[tuple[str, int], dict[str, Any]]


def chosen_archs(args: argparse.Namespace, space: Any, ratings: Ratings, work: Path) -> list[str]:
    """The architectures to rank: an earlier result's, or spread over this run's ratings (plus the full-range
    ones); with ``--done-only``, those whose first ``--seeds`` trainings are in ``work`` (exits when fewer than 3)."""
    from profilers.files import read_json

    if args.archs_from:
        archs = [str(space.parse(a)) for a in read_json(args.archs_from, "earlier ranking result")["archs"]]
    elif args.archs:
        archs = [str(a) for a in spread_archs(space, ratings, args.archs)]
    else:
        archs = []
    if args.full_range_archs:
        archs += [str(a) for a in full_range_archs(space, ratings, args.full_range_archs) if str(a) not in archs]
    if not args.done_only:
        return archs
    recipe = (args.epochs, args.augment, args.augment_strength, args.clip)
    planned = len(archs)
    archs = [a for a in archs if all((work / "children" / f"{child_name(a, s, *recipe)}.json").exists()
                                     for s in range(args.seeds))]
    print(f"--done-only: {len(archs)} of {planned} architectures have their first {args.seeds} seed(s) trained",
          flush=True)
    if len(archs) < 3:
        refuse(f"--done-only needs >= 3 architectures with their first {args.seeds} seed(s) trained in "
                 f"{work / 'children'}, found {len(archs)}; train more or lower --seeds")
    return archs


def train_all(args: argparse.Namespace, work: Path, device: str, started: float) -> Trained:
    """hwnas (teacher, distillation, rating), SPOS, the extra rating seeds and every stand-alone child, in a pool of
    ``--workers`` processes; each stage resumes from ``work``."""
    from hwnas.run import create_or_open_run
    from hwnas.supernet.ratings import load_ratings
    from search_spaces import get_space

    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"), initializer=_setup_worker) as pool:
        hwnas_job = pool.submit(hwnas_stage, str(work), args.data, args.teacher_epochs, args.distill_epochs,
                                args.distill_lr, args.augment, args.augment_strength, args.clip, device,
                                args.share_twins)
        spos_args = (str(work), args.data, args.spos_epochs, args.spos_augment, args.clip, args.spos_sharing,
                     args.spos_warmup, device)
        # --done-only checks what is trained before it starts SPOS: a refusal must not wait for a training
        spos_job = None if args.done_only else pool.submit(spos_stage, *spos_args)
        teacher_accuracy = hwnas_job.result()
        hwnas_s = time.perf_counter() - started
        print(f"hwnas: teacher {teacher_accuracy:.4f}, distilled and rated ({hwnas_s:.0f} s)", flush=True)
        space = get_space(space_for(args.data))
        hwnas_run = create_or_open_run(work / "run", space_for(args.data), args.data)
        ratings = load_ratings(hwnas_run, pooled=False)
        archs = chosen_archs(args, space, ratings, work)
        if spos_job is None:
            spos_job = pool.submit(spos_stage, *spos_args)
        seed_jobs = [pool.submit(rating_seed_stage, str(work), seed, args.distill_epochs, args.distill_lr, device,
                                 args.share_twins) for seed in range(1, args.rating_seeds)]
        jobs = {(arch, seed): pool.submit(stand_alone, str(work), args.data, arch, seed, args.epochs, args.augment,
                                          args.augment_strength, args.clip, device, args.test_copies)
                for seed in range(args.seeds) for arch in archs}
        spos_history = spos_job.result()
        print(f"SPOS: trained {len(spos_history)} epochs, last loss {spos_history[-1]['loss']:.3f}, sampled-path "
              f"train accuracy {spos_history[-1]['train_accuracy']:.3f} ({time.perf_counter() - started:.0f} s)",
              flush=True)
        seed_runs = [job.result() for job in seed_jobs]
        results: dict[tuple[str, int], dict[str, Any]] = {}
        for index, (key, job) in enumerate(jobs.items()):
            results[key] = job.result()
            took = (f"restored from {results[key]['restored_from']}" if "restored_from" in results[key]
                    else f"{results[key]['seconds']:.0f} s")
            print(f"  {index + 1}/{len(jobs)} seed {key[1]} {key[0]}: test accuracy "
                  f"{results[key]['test_accuracy']:.4f} ({took})", flush=True)
    return Trained(teacher_accuracy, hwnas_s, space, ratings, hwnas_run.config.distill, archs, spos_history,
                   seed_runs, results)


@dataclass
class SeedNoise:
    """One training's seed-to-seed variance on the ranking's test set and on the data's own split (None where not
    measured), and where it was measured."""

    variance: float | None
    small_variance: float | None
    source: str


def seed_noise(args: argparse.Namespace, per_seed: list[list[float]], small_split: list[list[float]],
               accuracy_key: str, work: Path) -> SeedNoise:
    """Pooled over the ranked architectures with 2 seeds or more; with one seed (``--done-only``), over the work
    folder's other architectures trained with the same recipe and more seeds."""
    from rank_noise import seed_noise_variance

    if args.seeds >= 2:
        return SeedNoise(seed_noise_variance(per_seed), seed_noise_variance(small_split),
                         f"pooled over all {len(per_seed[0])} archs")
    tag, folder = recipe_tag(args.epochs, args.augment, args.augment_strength, args.clip), work / "children"
    measured, small_measured = (recipe_seed_variance(folder, tag, key) for key in (accuracy_key, "test_accuracy"))
    return SeedNoise(measured[0] if measured else None, small_measured[0] if small_measured else None,
                     f"pooled over the {measured[1]} archs of {folder} trained with >= 2 seeds" if measured
                     else "not measured: one seed, and no architecture in the folder has two")


def accuracy_table(args: argparse.Namespace, trained: Trained) -> tuple[str, list[list[float]], list[list[float]]]:
    """The accuracy the ranking reads (the large test set when every child has it, else the data's own split) and,
    per seed, every architecture's accuracy on it and on the data's own split."""
    large_key = f"test_accuracy_x{args.test_copies}"
    large = bool(args.test_copies) and all(r.get(large_key) is not None for r in trained.results.values())
    if args.test_copies and not large:
        print(f"note: some children lack {large_key} (trained before it existed, weights not kept): ranking by the "
              "data's own test split", flush=True)
    key = large_key if large else "test_accuracy"
    per_seed = [[trained.results[(a, s)][key] for a in trained.archs] for s in range(args.seeds)]
    small_split = [[trained.results[(a, s)]["test_accuracy"] for a in trained.archs] for s in range(args.seeds)]
    return key, per_seed, small_split


def rating_agreement(space: Any, archs: list[str], ratings_by_seed: list[list[float]], rating_runs: list[Ratings],
                     accuracies: list[float]) -> dict[str, Any]:
    """The distillation seeds' ratings against each other and against accuracy: each seed, their mean and the
    reliability-weighted combination (None with one seed)."""
    from hwnas.supernet.reliability import reliability_weighted

    several = len(rating_runs) > 1
    weighted_tau = None
    if several:  # each block trusted as far as its candidates' order reproduces across the seeds
        weighted = reliability_weighted(rating_runs)
        weighted_tau = correlation([-rating_of(space, weighted, space.parse(a)) for a in archs],
                                   accuracies)["kendall_tau"]
    return {"ratings": ratings_by_seed,
            "vs_each_other_kendall_tau": [correlation(ratings_by_seed[i], ratings_by_seed[j])["kendall_tau"]
                                          for i in range(len(rating_runs)) for j in range(i + 1, len(rating_runs))],
            "vs_accuracy_kendall_tau": [correlation([-r for r in values], accuracies)["kendall_tau"]
                                        for values in ratings_by_seed],
            "mean_rating_vs_accuracy_kendall_tau": correlation(
                [-statistics.fmean(v) for v in zip(*ratings_by_seed)], accuracies)["kendall_tau"] if several else None,
            "reliability_weighted_vs_accuracy_kendall_tau": weighted_tau}


def score_table(trained: Trained, rating: list[float], spos_scores: list[float], accuracies: list[float]
                ) -> tuple[dict[str, dict[str, float]], list[int], list[int]]:
    """Kendall tau and Spearman rho of every score against the accuracies, with the architectures' params and
    MACs."""
    from hwnas.supernet.twins import pool_equivalent
    from search_spaces import count_macs

    space, archs = trained.space, trained.archs
    params = [sum(p.numel() for p in space.build(space.parse(a)).parameters()) for a in archs]
    macs = [count_macs(space.build(space.parse(a)), space.example_input()) for a in archs]
    pooled = pool_equivalent(space, trained.ratings)
    table = {
        "hwnas (DNA block-wise)": correlation([-r for r in rating], accuracies),
        "hwnas, twins pooled (the search's rating)": correlation(
            [-rating_of(space, pooled, space.parse(a)) for a in archs], accuracies),
        "SPOS baseline": correlation(spos_scores, accuracies),
        "parameters (proxy)": correlation(params, accuracies),
        "MACs (proxy)": correlation(macs, accuracies),
    }
    return table, params, macs


def print_summary(args: argparse.Namespace, accuracies: list[float], noise: SeedNoise, ceiling: float | None,
                  seed_vs_seed: list[float]) -> None:
    """The spread across architectures beside the seed-to-seed spread and the noise ceiling."""
    seed_std = None if noise.variance is None else math.sqrt(noise.variance)
    print(f"stand-alone accuracy across {len(accuracies)} archs (mean of {args.seeds} seeds): std "
          f"{100 * statistics.pstdev(accuracies):.2f} pts, range {100 * min(accuracies):.1f}-"
          f"{100 * max(accuracies):.1f}%; seed-to-seed std of one training "
          + (f"{100 * seed_std:.2f} pts ({noise.source}), so the mean of {args.seeds} has "
             f"{100 * seed_std / math.sqrt(args.seeds):.2f} pts" if seed_std is not None else noise.source)
          + (f"; stand-alone ranking vs itself across seeds: Kendall tau {statistics.fmean(seed_vs_seed):.3f}"
             if seed_vs_seed else "")
          + (f"; a perfect score would reach Kendall tau {ceiling:.3f} (noise ceiling)" if ceiling is not None else ""))


def print_own_split(args: argparse.Namespace, images: int, rating: list[float], small_split: list[list[float]],
                    seed_std: float | None, ceiling: float | None) -> None:
    """What the ranking reads on the data's own test split (``images`` of them) beside the large test set."""
    small_tau = correlation([-r for r in rating], [statistics.fmean(v) for v in zip(*small_split)])["kendall_tau"]
    print(f"accuracies on the large test set ({args.test_copies} distortions of each test digit); on the data's "
          f"own test split ({images} images) "
          + (f"the seed-to-seed std is {100 * seed_std:.2f} pts, its noise ceiling {ceiling:.3f}, "
             if seed_std is not None and ceiling is not None else "")
          + f"hwnas tau {small_tau:.3f}")


def print_rating_seeds(agreement: dict[str, Any]) -> None:
    """How the distillation seeds' ratings agree, when there are several."""
    if agreement["vs_each_other_kendall_tau"]:
        print(f"hwnas over {len(agreement['ratings'])} distillation seeds: ratings vs each other Kendall tau "
              f"{statistics.fmean(agreement['vs_each_other_kendall_tau']):.3f}; each seed vs accuracy "
              f"{', '.join(f'{t:.3f}' for t in agreement['vs_accuracy_kendall_tau'])}; their mean rating vs accuracy "
              f"{agreement['mean_rating_vs_accuracy_kendall_tau']:.3f}; weighted by each block's reproducibility "
              f"{agreement['reliability_weighted_vs_accuracy_kendall_tau']:.3f}")


def spos_validation(args: argparse.Namespace, trained: Trained, work: Path, device: str, bundle: Any) -> list[float]:
    """Each architecture's path accuracy in the trained SPOS supernet (BatchNorm re-estimated per path)."""
    from spos import SPOSSupernet, spos_accuracy

    from hwnas.devices import load_checkpoint

    supernet = SPOSSupernet(trained.space, sharing=args.spos_sharing)
    supernet.load_state_dict(load_checkpoint(spos_checkpoint(work, args.spos_sharing))["model"])
    supernet.to(device)
    return [spos_accuracy(supernet, trained.space.parse(a), bundle) for a in trained.archs]


def main() -> None:
    args = parse_arguments()
    from rank_noise import noise_ceiling_tau

    from hwnas.data import load_data
    from hwnas.devices import resolve_device
    from hwnas.run import create_or_open_run
    from hwnas.supernet.ratings import load_ratings

    device = str(resolve_device(args.device))
    torch.set_num_threads(1)
    started = time.perf_counter()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.restore_children:
        written, present = restore_children(work / "children", args.restore_children, args.data, args.epochs,
                                            args.augment, args.augment_strength, args.clip, args.test_copies)
        print(f"--restore-children: {written} trainings written to {work / 'children'}, {present} already there "
              "(and agreeing)", flush=True)
    trained = train_all(args, work, device, started)
    space, archs = trained.space, trained.archs

    bundle = load_data(args.data, space.resolution)
    spos_scores = spos_validation(args, trained, work, device, bundle)
    accuracy_key, per_seed, small_split = accuracy_table(args, trained)
    accuracies = [statistics.fmean(values) for values in zip(*per_seed)]
    rating_runs = [trained.ratings, *(load_ratings(create_or_open_run(path, space_for(args.data), args.data),
                                                   pooled=False) for path in trained.seed_runs)]
    ratings_by_seed = [[rating_of(space, r, space.parse(a)) for a in archs] for r in rating_runs]
    rating = ratings_by_seed[0]  # the hwnas row: seed 0, the recipe's own supernets
    table, params, macs = score_table(trained, rating, spos_scores, accuracies)
    agreement = rating_agreement(space, archs, ratings_by_seed, rating_runs, accuracies)
    seed_vs_seed = [correlation(per_seed[i], per_seed[j])["kendall_tau"]
                    for i in range(args.seeds) for j in range(i + 1, args.seeds)]
    noise = seed_noise(args, per_seed, small_split, accuracy_key, work)
    seed_std = None if noise.variance is None else math.sqrt(noise.variance)
    small_split_seed_std = None if noise.small_variance is None else math.sqrt(noise.small_variance)
    ceiling = None if noise.variance is None else noise_ceiling_tau(per_seed, seed_variance=noise.variance)
    small_ceiling = (None if noise.small_variance is None
                     else noise_ceiling_tau(small_split, seed_variance=noise.small_variance))
    print_table([[name, f"{v['kendall_tau']:.3f}", f"{v['spearman_rho']:.3f}"] for name, v in table.items()],
                ["score", "Kendall tau", "Spearman rho"])
    print_summary(args, accuracies, noise, ceiling, seed_vs_seed)
    if accuracy_key != "test_accuracy":
        print_own_split(args, len(bundle.datasets["test"]), rating, small_split, small_split_seed_std, small_ceiling)
    print_rating_seeds(agreement)
    taus = {name: v["kendall_tau"] for name, v in table.items()}
    png = result_path("ranking", args.name, ".png")
    plot(png, rating, spos_scores, accuracies, taus)
    hwnas_tau, spos_tau = taus["hwnas (DNA block-wise)"], taus["SPOS baseline"]
    arch_std = statistics.pstdev(accuracies)
    write_result("ranking", args.name, {
        "space": space_for(args.data), "data": args.data, "data_sizes": {k: len(v) for k, v in bundle.datasets.items()},
        "archs": archs, "ratings": rating, "spos_val_accuracy": spos_scores, "test_accuracy": accuracies,
        "test_accuracy_per_seed": per_seed, "accuracy_measure": accuracy_key,
        "own_test_split": {"test_accuracy_per_seed": small_split, "seed_std": small_split_seed_std,
                           "noise_ceiling_kendall_tau": small_ceiling},
        "params": params, "macs": macs, "methods": table,
        "seed_vs_seed_kendall_tau": seed_vs_seed, "rating_seeds": agreement,
        "noise_ceiling_kendall_tau": ceiling,
        "recipe": {"epochs": args.epochs, "seeds": args.seeds, "augment": args.augment,
                   "augment_strength": args.augment_strength if args.augment else None, "grad_clip": args.clip,
                   "train_config": "hwnas.training.TrainConfig defaults"},
        "archs_from": str(args.archs_from) if args.archs_from else None, "full_range_archs": args.full_range_archs,
        "distill": trained.distill_config,
        "teacher_epochs": args.teacher_epochs, "distill_epochs": args.distill_epochs, "spos_epochs": args.spos_epochs,
        "spos_augment": args.spos_augment, "spos_sharing": args.spos_sharing, "spos_warmup_epochs": args.spos_warmup,
        "spos_history": trained.spos_history, "teacher_test_accuracy": trained.teacher_accuracy,
        "accuracy_std_across_archs": arch_std, "accuracy_std_across_seeds": seed_std,
        "seed_std_measured_on": noise.source, "done_only": args.done_only,
        "hwnas_teacher_distill_rate_s": trained.hwnas_s, "training_device": device,
        "wall_s": time.perf_counter() - started, "plot": str(png.relative_to(ROOT)),
        "targets": {"tau>=0.65": bool(hwnas_tau >= 0.65), "tau>=spos+0.2": bool(hwnas_tau >= spos_tau + 0.2),
                    "arch_spread>seed_spread": None if seed_std is None else bool(arch_std > seed_std),
                    "noise_ceiling>=0.65": None if ceiling is None else bool(ceiling >= 0.65)},
    })
    print(json.dumps({"hwnas_tau": hwnas_tau, "spos_tau": spos_tau}), file=sys.stderr)


if __name__ == "__main__":
    main()
