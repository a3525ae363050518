"""Benchmark: what prefix sharing saves in rating, what the teacher cache saves in distillation, and the wall time
of distill + rate for the tiny spaces on digits.

(a) Rating one MBConv block of 4 layers (depths 1-4, 6 ops: 1554 candidates) with prefix sharing vs each candidate
    evaluated from scratch: layer evaluations and wall time, same supernet and data.
(b) Distillation epoch time (epochs after the first) with the memory-mapped teacher cache vs the teacher in the loop.
(c) Teacher training + distillation + rating of every candidate, for mbconv-tiny and vit-tiny on digits.

    python benchmarks/supernet_costs.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
from _common import print_table, write_result

from hwnas.run import create_or_open_run
from hwnas.supernet.blocks import BlockSupernet
from hwnas.supernet.distill import DistillConfig, distill
from hwnas.supernet.rating import rate_block
from hwnas.supernet.ratings import rate
from hwnas.supernet.teacher import train_teacher
from hwnas.training import TrainConfig
from search_spaces import DNA_OPS, MBConvSpace, StageSpec

torch.set_num_threads(1)


def prefix_sharing() -> dict:
    space = MBConvSpace("one-block", stages=(StageSpec((24,), 2, (1, 2, 3, 4)),), ops=DNA_OPS, resolution=32)
    teacher_in, teacher_out = (16, 16, 16), (24, 8, 8)
    supernet = BlockSupernet(space, 0, teacher_in, teacher_out)
    generator = torch.Generator().manual_seed(0)
    calibration = torch.randn(64, *teacher_in, generator=generator)
    held_out, target = torch.randn(64, *teacher_in, generator=generator), torch.randn(64, *teacher_out,
                                                                                    generator=generator)
    results = {}
    for shared in (True, False):
        start = time.perf_counter()
        ratings, stats = rate_block(supernet, calibration, held_out, target, show_progress=False, share_prefixes=shared)
        results["shared" if shared else "per_candidate"] = {"layer_evaluations": stats.layer_evaluations,
                                                            "candidates": stats.candidates,
                                                            "wall_s": time.perf_counter() - start}
    results["evaluation_ratio"] = (results["per_candidate"]["layer_evaluations"]
                                   / results["shared"]["layer_evaluations"])
    results["time_ratio"] = results["per_candidate"]["wall_s"] / results["shared"]["wall_s"]
    return results


def teacher_cache(run_path: Path) -> dict:
    run = create_or_open_run(run_path, "mbconv-tiny", "digits")
    train_teacher(run, config=TrainConfig(epochs=3), show_progress=False)
    times = {}
    for cache in (False, True):
        for old in (run.path / "supernet").glob("*.pt"):
            old.unlink()
        result = distill(run, block=5, config=DistillConfig(epochs=3), cache=cache, show_progress=False)
        times["cache" if cache else "teacher_in_loop"] = [h["seconds"] for h in result[0]["history"]]
    later = {k: sum(v[1:]) / len(v[1:]) for k, v in times.items()}
    return {"block": 5, "epoch_seconds": times, "later_epoch_mean_s": later,
            "speedup": later["teacher_in_loop"] / later["cache"]}


def pipeline(space: str, run_path: Path) -> dict:
    run = create_or_open_run(run_path, space, "digits")
    start = time.perf_counter()
    teacher = train_teacher(run, config=TrainConfig(epochs=15), show_progress=False)
    teacher_s = time.perf_counter() - start
    start = time.perf_counter()
    distill(run, config=DistillConfig(epochs=6), show_progress=False)
    distill_s = time.perf_counter() - start
    start = time.perf_counter()
    rate(run, show_progress=False)
    rate_s = time.perf_counter() - start
    return {"space": space, "teacher_test_accuracy": teacher["test_accuracy"], "teacher_s": teacher_s,
            "distill_s": distill_s, "rate_s": rate_s, "distill_plus_rate_s": distill_s + rate_s}


def main() -> None:
    sharing = prefix_sharing()
    with tempfile.TemporaryDirectory() as tmp:
        cache = teacher_cache(Path(tmp) / "cache")
        tiny = [pipeline(name, Path(tmp) / name) for name in ("mbconv-tiny", "vit-tiny")]
    print_table([
        ["rating, 4-layer block: layer evaluations", sharing["shared"]["layer_evaluations"],
         sharing["per_candidate"]["layer_evaluations"], f"{sharing['evaluation_ratio']:.2f}x"],
        ["rating, 4-layer block: wall s", f"{sharing['shared']['wall_s']:.1f}", f"{sharing['per_candidate']['wall_s']:.1f}",
         f"{sharing['time_ratio']:.2f}x"],
        ["distill epoch (later epochs) s", f"{cache['later_epoch_mean_s']['cache']:.2f}",
         f"{cache['later_epoch_mean_s']['teacher_in_loop']:.2f}", f"{cache['speedup']:.2f}x"],
    ], ["what", "hwnas (shared / cache)", "baseline", "ratio"])
    print_table([[t["space"], f"{t['teacher_test_accuracy']:.3f}", f"{t['teacher_s']:.0f}", f"{t['distill_s']:.0f}",
                  f"{t['rate_s']:.0f}"] for t in tiny],
                ["space", "teacher test acc", "teacher s", "distill s (6 epochs)", "rate s"])
    write_result("supernet_costs", "supernet_costs", {"prefix_sharing": sharing, "teacher_cache": cache,
                                                      "tiny_pipelines": tiny,
                                    "torch_threads": 1,
                                    "targets": {"evaluations>=3x": sharing["evaluation_ratio"] >= 3,
                                                "cache>=2x": cache["speedup"] >= 2}})


if __name__ == "__main__":
    main()
