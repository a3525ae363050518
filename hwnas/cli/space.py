"""``hwnas space``: list spaces, sample architectures, describe one architecture."""

from __future__ import annotations

import argparse
import random

from hwnas.cli._args import at_least
from hwnas.cli._output import emit, table
from search_spaces import get_space, list_spaces


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``space list|sample|info`` to the CLI."""
    parser = commands.add_parser("space", help="search spaces: list, sample, info", description=__doc__)
    sub = parser.add_subparsers(dest="space_command", metavar="SUBCOMMAND", required=True)

    listing = sub.add_parser("list", help="list the registered search spaces")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=run_list)

    sample = sub.add_parser("sample", help="print random architectures, one string a line")
    sample.add_argument("space", help="space name (see 'hwnas space list')")
    sample.add_argument("--n", type=at_least(1), default=1, help="how many architectures (default 1)")
    sample.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sample.add_argument("--json", action="store_true", help="machine-readable output")
    sample.set_defaults(handler=run_sample)

    blocks = sub.add_parser("blocks", help="per block: candidates, and how many different functions they compute")
    blocks.add_argument("space", help="space name (see 'hwnas space list')")
    blocks.add_argument("--json", action="store_true", help="machine-readable output")
    blocks.set_defaults(handler=run_blocks)

    info = sub.add_parser("info", help="params, MACs, timm arch-def, blocks and space size of one architecture")
    info.add_argument("space", help="space name (see 'hwnas space list')")
    info.add_argument("--arch", required=True, help="architecture string (see 'hwnas space sample')")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(handler=run_info)


def run_list(args: argparse.Namespace) -> int:
    """Print every registered space with its size and its number of latency units."""
    rows = []
    for name in list_spaces():
        space = get_space(name)
        rows.append({
            "name": name, "resolution": space.resolution, "num_classes": space.num_classes,
            "blocks": space.num_blocks, "architectures": space.count(), "latency_units": len(space.all_units()),
            "definition_hash": space.definition_hash(),
        })
    text = table([[r["name"], r["resolution"], r["num_classes"], r["blocks"], f"{r['architectures']:.3e}",
                   r["latency_units"]] for r in rows],
                 ["space", "resolution", "classes", "blocks", "architectures", "latency units"])
    emit(rows, args.json, text)
    return 0


def run_blocks(args: argparse.Namespace) -> int:
    """Per block: its candidates and the distinct functions among them (a kernel wider than its map can reach
    computes what a narrower one does: twins)."""
    from hwnas.supernet.twins import equivalence_classes

    space = get_space(args.space)
    rows = [{"block": b, "candidates": len(space.block_candidates(b)), "functions": len(equivalence_classes(space, b))}
            for b in range(space.num_blocks)]
    emit(rows, args.json, table([[r["block"], r["candidates"], r["functions"]] for r in rows],
                                ["block", "candidates", "distinct functions"]))
    return 0


def run_sample(args: argparse.Namespace) -> int:
    """Print ``--n`` random architectures of a space."""
    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    space = get_space(args.space)
    rng = random.Random(args.seed)
    archs = [str(space.sample(rng)) for _ in range(args.n)]
    emit(archs, args.json, "\n".join(archs))
    return 0


def run_info(args: argparse.Namespace) -> int:
    """Describe one architecture."""
    space = get_space(args.space)
    arch = space.parse(args.arch)
    info = space.info(arch)
    info["timm_arch_def"] = space.to_timm_arch_def(arch)
    info["space_size_exact"] = str(info["space_size"])
    lines = [
        f"space         {info['space']} ({info['resolution']} px)",
        f"arch          {info['arch']}",
        f"params        {info['params']:,}",
        f"MACs          {info['macs']:,}",
        f"space size    {info['space_size']:,} architectures",
    ]
    if "timm_arch_def" in info:
        lines.append(f"timm arch-def {info['timm_arch_def']}")
    lines.append(table([[b["block"], b["choice"], b["input_shape"], b["output_shape"]] for b in info["blocks"]],
                       ["block", "choice", "input", "output"]))
    emit(info, args.json, "\n".join(lines))
    return 0
