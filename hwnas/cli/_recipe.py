"""Options shared by the training commands: ``--augment``, ``--augment-strength``, ``--grad-clip``, ``--device``,
``--cpu-threads``."""

from __future__ import annotations

import argparse
from typing import Any

from hwnas.cli._args import at_least, non_negative_float, positive_float


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--augment``, ``--augment-strength`` (which implies ``--augment``) and ``--grad-clip``."""
    parser.add_argument("--augment", action="store_true", help="a fresh random affine distortion of every batch")
    parser.add_argument("--augment-strength", type=positive_float, default=None,
                        help="scale of the distortion ranges, in (0, 1] (default 1); implies --augment")
    parser.add_argument("--grad-clip", type=non_negative_float, default=1.0,
                        help="clip the gradient norm at this value (default 1; 0 turns clipping off)")


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--device`` (auto, cpu, cuda, cuda:N) and ``--cpu-threads`` (``main`` applies it before the command)."""
    from hwnas.devices import DEVICE_HELP

    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument("--cpu-threads", type=at_least(1), default=None, metavar="N",
                        help="PyTorch's CPU threads (default: one per core). Give 1 beside another busy job: a child "
                             "trained with 2 threads on a 2-core VM whose other core was busy ran 9x slower per epoch")


def recipe_settings(args: argparse.Namespace) -> dict[str, Any]:
    """``TrainConfig`` keywords from the parsed options: a strength given alone turns augmentation on."""
    strength = args.augment_strength
    if args.grad_clip < 0:
        raise ValueError(f"--grad-clip must be > 0, or 0 to turn clipping off; got {args.grad_clip}")
    return {"augment": args.augment or strength is not None, "augment_strength": 1.0 if strength is None else strength,
            "grad_clip": args.grad_clip or None}
