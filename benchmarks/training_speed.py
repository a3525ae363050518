"""Benchmark: training step time on the CPU with depthwise layers on small maps in the dense form, and without.

``hwnas.training.depthwise.fast_small_depthwise`` computes depthwise convolutions on maps of up to 2x2 pixels (and up to 8x8
for kernels of 5x5 and wider) as per-channel matrix products, where PyTorch's CPU backward is slow. Training
(``train_classifier``) and block distillation (``distill_block``) use it. This times one training step (forward,
backward, AdamW) of stand-alone ``mbconv-tiny`` children (the ranking benchmark's trainings) and of the largest
candidate path of each block supernet, both ways, alternating the two in rounds so a drifting machine affects both
alike; it reports the median of each and checks the two forms give the same loss.

    python benchmarks/training_speed.py --archs 6 --rounds 5
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from _common import print_table, write_result

from hwnas.training.depthwise import fast_small_depthwise

SPACE = "mbconv-tiny"


def step_seconds(model: torch.nn.Module, step: Any, fast: bool, steps: int) -> tuple[float, float]:
    """Median seconds of one training step, and the first step's loss."""
    with fast_small_depthwise(model, enabled=fast):
        loss = step()
        times = []
        for _ in range(steps):
            started = time.perf_counter()
            step()
            times.append(time.perf_counter() - started)
    return statistics.median(times), loss


def path_size(space: Any, block: int, candidate: Any, state: Any) -> int:
    """Parameters of a candidate's layers."""
    return sum(p.numel() for u in space.block_units(block, candidate, state) for p in space.build_unit(u).parameters())


@torch.no_grad()
def path_output_shape(space: Any, units: list[Any]) -> tuple[int, ...]:
    """The output shape of a chain of latency units."""
    h = torch.zeros(1, *units[0].input_shape)
    for unit in units:
        h = space.build_unit(unit).eval()(h)
    return tuple(h.shape[1:])


def compare(model: torch.nn.Module, make_step: Any, rounds: int, steps: int) -> dict[str, Any]:
    """Both forms in alternating rounds, each from the same weights (restored before every round)."""
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    seconds: dict[bool, list[float]] = {False: [], True: []}
    losses: dict[bool, float] = {}
    for _ in range(rounds):
        for fast in (False, True):
            model.load_state_dict(initial)
            step = make_step()
            took, loss = step_seconds(model, step, fast, steps)
            seconds[fast].append(took)
            losses[fast] = loss
    native, dense = statistics.median(seconds[False]), statistics.median(seconds[True])
    return {"native_ms": 1000 * native, "dense_ms": 1000 * dense, "speedup": native / dense,
            "first_loss_native": losses[False], "first_loss_dense": losses[True]}


def time_children(space: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Native and dense training steps of ``--archs`` random stand-alone children (a fixed batch, AdamW)."""
    rng = random.Random(0)
    x = torch.randn(args.batch, *space.input_shape, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 10, (args.batch,), generator=torch.Generator().manual_seed(1))
    children = []
    for _ in range(args.archs):
        arch = space.sample(rng)
        torch.manual_seed(0)
        model = space.build(arch).train()

        def make_step(model: torch.nn.Module = model) -> Any:
            optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)

            def step() -> float:
                loss = F.cross_entropy(model(x), labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                return loss.item()
            return step

        children.append({"arch": str(arch), **compare(model, make_step, args.rounds, args.steps)})
    return children


def time_supernets(space: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Native and dense distillation steps of every block supernet on its largest candidate (random inputs and
    targets, Adam)."""
    from hwnas.supernet.blocks import BlockSupernet

    blocks = []
    for block in range(space.num_blocks):
        state = space.block_input_states(block)[0]
        largest = max(space.block_candidates(block), key=lambda c: path_size(space, block, c, state))
        units = space.block_units(block, largest, state)
        output_shape = path_output_shape(space, units)
        torch.manual_seed(0)
        supernet = BlockSupernet(space, block, units[0].input_shape, output_shape, share_twins=True).train()
        inputs = torch.randn(args.batch, *units[0].input_shape, generator=torch.Generator().manual_seed(2))
        targets = torch.randn(args.batch, *output_shape, generator=torch.Generator().manual_seed(3))

        def make_step(supernet: BlockSupernet = supernet, inputs: torch.Tensor = inputs, targets: torch.Tensor = targets,
                      state: Any = state, candidate: Any = largest) -> Any:
            optimizer = torch.optim.Adam(supernet.parameters(), lr=0.02)

            def step() -> float:
                loss = F.mse_loss(supernet(inputs, state, candidate), targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                return loss.item()
            return step

        blocks.append({"block": block, "candidate": str(largest), **compare(supernet, make_step, args.rounds,
                                                                             args.steps)})
    return blocks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", type=int, default=6, help="random stand-alone children to time")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", default="training_speed")
    args = parser.parse_args()
    if min(args.archs, args.rounds, args.steps, args.batch, args.threads) < 1:
        parser.error("--archs, --rounds, --steps, --batch and --threads must be >= 1")
    from search_spaces import get_space

    torch.set_num_threads(args.threads)
    space = get_space(SPACE)
    started = time.perf_counter()
    children = time_children(space, args)
    blocks = time_supernets(space, args)
    rows = [["child", c["arch"], f"{c['native_ms']:.0f}", f"{c['dense_ms']:.0f}", f"{c['speedup']:.2f}x"]
            for c in children]
    rows += [[f"supernet block {b['block']}", b["candidate"], f"{b['native_ms']:.0f}", f"{b['dense_ms']:.0f}",
              f"{b['speedup']:.2f}x"] for b in blocks]
    print_table(rows, ["what", "architecture / largest candidate", "native ms/step", "dense ms/step", "speedup"])
    total_native = sum(c["native_ms"] for c in children)
    total_dense = sum(c["dense_ms"] for c in children)
    print(f"children: {total_native / total_dense:.2f}x faster per step in total ({args.threads} thread(s), "
          f"batch {args.batch})")
    write_result("training_speed", args.name, {
        "space": SPACE, "threads": args.threads, "batch": args.batch, "rounds": args.rounds, "steps": args.steps,
        "torch": torch.__version__, "children": children, "supernet_blocks": blocks,
        "children_speedup": total_native / total_dense, "wall_s": time.perf_counter() - started,
    })


if __name__ == "__main__":
    main()
