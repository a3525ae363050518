"""Benchmark: the mixed-kernel layer (MixNet's ``e6k3.5.7``) against its single-kernel equivalents, unit by unit.

The units of ``BASE[e6k3,e6k5,e6k7,e6k3.5.7]`` (every layer shape the space has, with each of the four ops) are
profiled on each runtime with hwnas's own protocol (``hwnas profile``: 1 thread, fp32, interleaved rounds, p10),
and each mixed-kernel unit is compared with the units that differ from it only in the kernel: a mixed layer splits
its expanded channels into three groups convolved with 3x3, 5x5 and 7x7 kernels, so its depthwise work lies between
the 5x5 and 7x7 layers'; what a runtime makes of the split (three convolutions and a concatenation) is what this
measures. Tables are kept in ``--work`` (a killed run resumes).

    python benchmarks/mixed_kernels.py --work runs/mixed_kernels      # about 10 min on 2 cores, nothing else running
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from _common import print_table, write_result

from profilers import Protocol, get_runtime
from profilers.profile import profile_space
from profilers.table import LatencyTable
from search_spaces import get_space

OPS = "e6k3,e6k5,e6k7,e6k3.5.7"


def pairs(space_name: str, table: LatencyTable) -> list[dict[str, float | str]]:
    """Per mixed-kernel unit: its latency and those of the 3x3, 5x5 and 7x7 units of the same shape (ms, p10)."""
    space = get_space(space_name)
    rows = []
    for unit in space.all_units():
        if unit.kind != "mbconv_ir" or str(unit.param("k")) != "3.5.7":
            continue
        row: dict[str, float | str] = {"unit": unit.key, "mixed": table.entry(unit.key)}
        for kernel in (3, 5, 7):
            twin = unit.key.replace("k=3.5.7", f"k={kernel}")
            row[f"k{kernel}"] = table.entry(twin)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="mbconv-tiny-64", help="the MBConv space whose layer shapes are used")
    parser.add_argument("--runtimes", nargs="+", default=["onnxruntime", "litert"])
    parser.add_argument("--work", type=Path, required=True, help="folder for the tables (kept: a rerun resumes)")
    parser.add_argument("--name", default=None, help="result name (default: the base space's)")
    args = parser.parse_args()
    space = get_space(f"{args.base}[{OPS}]")
    args.work.mkdir(parents=True, exist_ok=True)
    started, results, table_rows = time.perf_counter(), {}, []
    for name in args.runtimes:
        out = args.work / f"{name}.json"
        if not out.exists():
            profile_space(space, get_runtime(name), out, Protocol(), show_progress=True)
        table = LatencyTable.load(out, space)
        rows = pairs(space.name, table)
        ratios = {f"mixed/k{k}": statistics.median(r["mixed"] / r[f"k{k}"] for r in rows) for k in (3, 5, 7)}
        results[name] = {"table": {k: v for k, v in table.metadata.items() if k != "protocol"}, "units": rows,
                         "median_ratios": ratios}
        table_rows.append([name, len(rows), *(f"{ratios[f'mixed/k{k}']:.2f}" for k in (3, 5, 7))])
    print_table(table_rows, ["runtime", "mixed units", "mixed / k3", "mixed / k5", "mixed / k7"])
    write_result("mixed_kernels", args.name or args.base, {"space": space.name, "runtimes": results, "threads": 1,
                                                            "precision": "fp32", "statistic": "p10",
                                                            "wall_s": time.perf_counter() - started})


if __name__ == "__main__":
    main()
