"""``hwnas evolve``: NSE's rounds that grow the op set from a pool and prune what no block's front uses."""

from __future__ import annotations

import argparse

from hwnas.cli._args import at_least, positive_float
from hwnas.cli._output import emit, table
from hwnas.cli._recipe import add_device_argument
from hwnas.run import open_run


def _ops(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``evolve`` to the CLI."""
    evolve = commands.add_parser("evolve", help="NSE: rounds that add ops from a pool to the space, distil and rate "
                                                "them beside the kept ones, and prune ops no block's front uses")
    evolve.add_argument("--run", required=True, help="run with a teacher, of an MBConv space")
    evolve.add_argument("--rounds", type=at_least(1), required=True, help="rounds of evolution")
    evolve.add_argument("--pool", type=_ops, required=True,
                        help="ops to add, comma separated, in order (e.g. e6k9,e4k5,e6k3.5.7): a slice per round")
    evolve.add_argument("--start", type=_ops, default=None, help="the first round's op set (default: the space's ops)")
    evolve.add_argument("--epochs", type=at_least(1), default=10, help="distillation epochs per round (default 10)")
    evolve.add_argument("--lr", type=positive_float, default=0.02, help="distillation learning rate (default 0.02)")
    evolve.add_argument("--objective", choices=("macs", "params"), default="macs",
                        help="the cost of the blocks' Pareto fronts (default macs)")
    add_device_argument(evolve)
    evolve.add_argument("--json", action="store_true", help="machine-readable output")
    evolve.set_defaults(handler=run_evolve)


def run_evolve(args: argparse.Namespace) -> int:
    """Run or resume the rounds; one line per round."""
    from hwnas.evolve import EvolveSettings, evolve

    settings = EvolveSettings(rounds=args.rounds, pool=args.pool, start=args.start, epochs=args.epochs,
                              objective=args.objective, lr=args.lr)
    record = evolve(open_run(args.run), settings, device=args.device)
    rows = [[r["round"], ",".join(r["added"]), len(r["ops"]), ",".join(r["pruned"]) or "-", f"{r['architectures']:.3g}"]
            for r in record["rounds"]]
    text = table(rows, ["round", "added", "ops", "pruned", "architectures"])
    emit(record, args.json, f"{text}\nevolved space: {record['space']} ({record['space_file']})\nsearch it: hwnas "
                            f"search --run {record['final_run']} ...")
    return 0
