"""The ``--augment`` / ``--augment-strength`` pair shared by the training commands."""

from __future__ import annotations

import argparse
from typing import Any


def add_augment_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--augment`` and ``--augment-strength`` (which implies ``--augment``) to a training command."""
    parser.add_argument("--augment", action="store_true", help="a fresh random affine distortion of every batch")
    parser.add_argument("--augment-strength", type=float, default=None,
                        help="scale of the distortion ranges, in (0, 1] (default 1); implies --augment")


def augment_settings(args: argparse.Namespace) -> dict[str, Any]:
    """``TrainConfig`` keywords from the parsed pair: a strength given alone turns augmentation on."""
    strength = args.augment_strength
    return {"augment": args.augment or strength is not None, "augment_strength": 1.0 if strength is None else strength}
