"""``hwnas teacher train|set``, ``hwnas distill``, ``hwnas rate``: the accuracy half (DNA's block-wise supernets)."""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from hwnas.cli._args import at_least, block_or_any, positive_float
from hwnas.cli._output import emit, table
from hwnas.cli._recipe import add_device_argument, add_recipe_arguments, recipe_settings
from hwnas.run import create_or_open_run, open_run
from hwnas.supernet.distill import DistillConfig
from hwnas.supernet.rating import DEFAULT_MAX_CANDIDATES
from hwnas.supernet.selfsup import METHODS, SELF_SUPERVISED, check_method
from hwnas.training import TrainConfig


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``teacher train``, ``distill`` and ``rate`` to the CLI."""
    teacher = commands.add_parser("teacher", help="the run's teacher")
    sub = teacher.add_subparsers(dest="teacher_command", metavar="SUBCOMMAND", required=True)
    train = sub.add_parser("train", help="train (or register) the teacher and report its test accuracy")
    train.add_argument("--run", required=True, help="run name (runs/NAME) or path; created if new")
    train.add_argument("--space", default=None, help="search space (required when the run is new)")
    train.add_argument("--data", default=None, help="'digits' (default), 'digits-distorted[-K]' (K distorted "
                       "copies per image, default 8), 'glyphs' (62 classes at 64 px, for mbconv-tiny-64) or an "
                       "ImageNet-layout image folder ('hwnas data list')")
    train.add_argument("--arch", default=None, help="teacher = this member of the space (default: the largest)")
    train.add_argument("--teacher", default=None, help="teacher = this timm model name instead")
    train.add_argument("--pretrained", action="store_true", help="load the timm teacher's pretrained weights")
    train.add_argument("--epochs", type=at_least(0), default=30, help="training epochs (0: register without training)")
    train.add_argument("--lr", type=positive_float, default=3e-3, help="AdamW learning rate")
    add_recipe_arguments(train)
    add_device_argument(train)
    train.add_argument("--json", action="store_true", help="machine-readable output")
    train.set_defaults(handler=run_teacher_train)
    chosen = sub.add_parser("set", help="make a trained child the run's teacher (DNA+); the previous teacher and what "
                                        "was distilled from it move to RUN/teachers/DIGEST/")
    chosen.add_argument("--run", required=True, help="run name or path")
    chosen.add_argument("--arch", required=True, help="the child's architecture string (trained by 'hwnas train')")
    chosen.add_argument("--weights", type=Path, default=None,
                        help="its weights (default: the run's own training of that child)")
    chosen.add_argument("--json", action="store_true", help="machine-readable output")
    chosen.set_defaults(handler=run_teacher_set)

    distill = commands.add_parser("distill", help="train block supernets to mimic the teacher's stages")
    distill.add_argument("--run", default=os.environ.get("HWNAS_RUN"), required="HWNAS_RUN" not in os.environ,
                         help="run name or path (default: $HWNAS_RUN; under torchrun, whose parser claims --run, "
                              "set HWNAS_RUN)")
    distill.add_argument("--method", default="dna", help="how block supernets learn: " + "; ".join(
        f"{name}: {text}" for name, text in METHODS.items()) + " (default dna; a run holds one method)")
    distill.add_argument("--space", default=None, help="search space, to create a new run (teacher-free methods; a DNA "
                                                       "run is created by 'hwnas teacher train')")
    distill.add_argument("--data", default=None, help="data set, to create a new run (teacher-free methods)")
    distill.add_argument("--block", type=block_or_any, default=None,
                         help="train only this block, or 'any': take whichever block (of any seed) no other worker "
                              "is training, until all are trained (default: all, in turn)")
    distill.add_argument("--epochs", type=at_least(1), default=20, help="epochs per block (default 20, DNA's)")
    distill.add_argument("--lr", type=positive_float, default=0.02,
                         help="Adam learning rate, x0.9 per epoch (default 0.02; DNA's ImageNet recipe: 0.002; "
                              "'rate' warns when supernets look under-trained)")
    distill.add_argument("--batch-size", type=at_least(1), default=64)
    distill.add_argument("--seed", type=int, default=0, help="seed of the sampled paths and the data order")
    distill.add_argument("--seeds", type=at_least(1), default=1,
                         help="distill this many seeds (--seed, --seed+1, ...; the extra ones in RUN/seeds/, same "
                              "teacher): 'hwnas rate' combines them, each block weighted by how well its candidates' "
                              "order reproduces across seeds, and the search uses that (default 1; the demo uses 3)")
    distill.add_argument("--no-cache", action="store_true", help="run the teacher every step (no feature cache)")
    distill.add_argument("--no-share-twins", dest="share_twins", action="store_false",
                         help="train every kernel as its own module, even one wider than its map can reach (as "
                              "supernets were trained before twins shared a module: to resume such a run)")
    distill.add_argument("--separate-depths", action="store_true",
                         help="train each depth of a block as its own cell, as DNA does (default: a shallow "
                              "candidate shares its layers with the deeper candidates that start with them)")
    add_device_argument(distill)
    distill.add_argument("--json", action="store_true", help="machine-readable output")
    distill.set_defaults(handler=run_distill)

    rate = commands.add_parser("rate", help="rate every candidate of every block")
    rate.add_argument("--run", required=True, help="run name or path")
    rate.add_argument("--block", type=at_least(0), default=None, help="rate only this block")
    rate.add_argument("--max-candidates", type=at_least(1), default=DEFAULT_MAX_CANDIDATES,
                      help="refuse blocks with more candidate evaluations than this")
    rate.add_argument("--calibration-samples", type=at_least(1), default=256, help="training samples for BN re-estimation")
    add_device_argument(rate)
    rate.add_argument("--json", action="store_true", help="machine-readable output")
    rate.set_defaults(handler=run_rate)


def run_teacher_train(args: argparse.Namespace) -> int:
    """Train the teacher of a run."""
    from hwnas.run import resolve_run
    from hwnas.supernet.teacher import train_teacher

    if args.teacher and args.arch:
        raise ValueError("--teacher (a timm model) and --arch (a member of the space) both name the teacher; give one")
    if args.pretrained and not args.teacher:
        raise ValueError("--pretrained loads a timm teacher's weights: give --teacher NAME with it")
    new = not (resolve_run(args.run) / "run.json").exists()
    run = create_or_open_run(args.run, args.space, args.data)
    train = args.epochs > 0
    config = TrainConfig(epochs=args.epochs, lr=args.lr, **recipe_settings(args)) if train else None
    try:
        result = train_teacher(run, arch=args.arch, timm_name=args.teacher, pretrained=args.pretrained,
                               config=config, train=train, device=args.device)
    except Exception:
        if new and not (run.teacher_checkpoint.exists() or run.teacher_training.exists()):
            shutil.rmtree(run.path, ignore_errors=True)  # nothing was trained: the corrected retry starts afresh
        raise
    accuracy = result.get("test_accuracy")
    emit(result, args.json, f"teacher {result['teacher']['name']} for {run.path}: test accuracy "
                            f"{'n/a (not trained here)' if accuracy is None else f'{accuracy:.4f}'}")
    return 0


def run_teacher_set(args: argparse.Namespace) -> int:
    """Register a trained child as the run's teacher."""
    from hwnas.supernet.teacher import set_teacher

    result = set_teacher(open_run(args.run), args.arch, args.weights)
    accuracy = result.get("test_accuracy")
    text = (f"teacher {result['teacher']['name']}: " + ("unchanged (already the teacher)" if result["unchanged"] else
            f"test accuracy {'n/a' if accuracy is None else f'{accuracy:.4f}'}"
            + (f"; the previous teacher and its supernets, ratings and searches: {result['moved_to']}"
               if result["moved_to"] else "")))
    emit(result, args.json, text)
    return 0


def run_distill(args: argparse.Namespace) -> int:
    """Distill the run's supernets (under torchrun: data parallel inside each block; NCCL on GPUs, gloo on CPUs)."""
    from hwnas.devices import resolve_device
    from hwnas.supernet.distill import distill

    device = resolve_device(args.device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        import torch
        import torch.distributed as dist

        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        check_method(args.method)
        if args.method in SELF_SUPERVISED:
            run = create_or_open_run(args.run, args.space, args.data)
        else:
            run = open_run(args.run)
        config = DistillConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
                               share_twins=args.share_twins, separate_depths=args.separate_depths,
                               method=args.method)
        take_any = args.block == "any"
        results = distill(run, None if take_any else args.block, config, cache=not args.no_cache, device=str(device),
                          seeds=args.seeds, take_any=take_any)
    finally:
        if world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()
    rows = [[r["seed"], r["block"], len(r["history"]), f"{r['history'][-1]['loss']:.5f}"] for r in results]
    emit(results, args.json, table(rows, ["seed", "block", "epochs", "final loss"]))
    return 0


def run_rate(args: argparse.Namespace) -> int:
    """Rate every candidate."""
    from hwnas.supernet.ratings import rate
    from hwnas.supernet.seeds import describe

    run = open_run(args.run)
    summary = rate(run, args.block, args.max_candidates, args.calibration_samples, device=args.device)
    missing = summary["missing_blocks"]
    text = (f"ratings for {run.path}: every block rated -> {run.ratings_file}" if not missing
            else f"ratings for {run.path}: blocks {missing} still to rate")
    if summary.get("rating_seeds"):
        text += f"\ncombined over {describe(summary['rating_seeds'])} -> {run.combined_ratings_file}"
    emit(summary, args.json, text)
    return 0
