"""``hwnas data``: the data sets (``list``) and a contact sheet of one (``sheet``: a PNG of samples per class)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hwnas.cli._args import at_least, check_output_file
from hwnas.cli._output import emit, table


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``data list`` and ``data sheet`` to the CLI."""
    parser = commands.add_parser("data", help="data sets: list, contact sheet", description=__doc__)
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    listing = sub.add_parser("list", help="the embedded data sets and their sizes")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=run_list)
    sheet = sub.add_parser("sheet", help="a PNG of samples of a data set, a row per class")
    sheet.add_argument("--data", default="glyphs", help="data set (default glyphs; see 'hwnas data list')")
    sheet.add_argument("--split", default="train", choices=("train", "val", "test"), help="split (default train)")
    sheet.add_argument("--resolution", type=at_least(8), default=None,
                       help="resize to this many px (default: the data set's own, 64 for glyphs, 32 for digits)")
    sheet.add_argument("--per-class", type=at_least(1), default=8, help="samples per class (default 8)")
    sheet.add_argument("--fonts", type=Path, default=None,
                       help="glyphs only: draw with the TrueType fonts of this folder (default: matplotlib's)")
    sheet.add_argument("--out", type=Path, required=True, help="PNG to write")
    sheet.set_defaults(handler=run_sheet)


def run_list(args: argparse.Namespace) -> int:
    """The embedded data sets."""
    from hwnas.data.glyphs import CLASSES, PER_CLASS

    rows = [
        {"name": "digits", "classes": 10, "images": "1797 (60/20/20% train/val/test)", "source": "scikit-learn"},
        {"name": "digits-distorted[-K]", "classes": 10, "images": "K x 1797 (K = 8 by default)",
         "source": "digits under fixed random distortions"},
        {"name": "glyphs[-K]", "classes": len(CLASSES),
         "images": f"K x {len(CLASSES)} x ({PER_CLASS['train']}/{PER_CLASS['val']}/{PER_CLASS['test']})",
         "source": "rendered from matplotlib's fonts at 64 px (space: mbconv-tiny-64)"},
    ]
    emit(rows, args.json, table([[r["name"], r["classes"], r["images"], r["source"]] for r in rows],
                                ["data", "classes", "images", "what"]))
    return 0


def run_sheet(args: argparse.Namespace) -> int:
    """Write the contact sheet."""
    import numpy as np
    import torch

    from hwnas.data import check_data_name, load_data

    check_output_file(args.out, "--out")
    check_data_name(args.data)
    if args.fonts is not None:
        if not args.data.startswith("glyphs"):
            raise ValueError("--fonts draws glyphs: give it with --data glyphs")
        from hwnas.data.glyphs import fonts, generate

        fonts(args.fonts)  # no fonts there: a clear error before anything is drawn
        images, labels = generate(args.split, 1, 0, args.fonts).tensors
    else:
        resolution = args.resolution or (64 if args.data.startswith("glyphs") else 32)
        images, labels = load_data(args.data, resolution).tensors(args.split)
    rows = []
    for label in sorted(set(labels.tolist())):
        picked = images[labels == label][:args.per_class, 0]
        picked = torch.cat([picked, torch.full((args.per_class - len(picked), *picked.shape[1:]), -1.5)])
        rows.append(torch.cat(list(picked), dim=1))
    grid = ((torch.cat(rows, dim=0).clamp(-1.5, 1.5) + 1.5) / 3 * 255).numpy().astype(np.uint8)
    import io

    from PIL import Image

    from profilers.files import atomic_write_bytes

    buffer = io.BytesIO()
    Image.fromarray(grid).save(buffer, format="PNG")
    atomic_write_bytes(args.out, buffer.getvalue())
    emit({"data": args.data, "split": args.split, "classes": len(rows), "per_class": args.per_class,
          "file": str(args.out)}, False, f"wrote {args.out}: {len(rows)} classes x {args.per_class} {args.split} images")
    return 0
