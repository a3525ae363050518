"""Benchmark: export every format available here for the searched child and for EfficientNet-B0 from the space.

Per format: file size, parity with PyTorch on the test split (max abs logit difference, top-1 agreement), the
accuracy change, and the exported file's measured latency against the prediction of the table of the same runtime
(measured beside three of that table's units, so a perturbed machine is detected and re-measured). TensorRT is
listed as skipped where it cannot be installed.

    python benchmarks/export.py --child-run runs/demo
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from _common import ROOT, print_table, write_result

from hwnas.run import create_or_open_run, open_run
from hwnas.ship.child import ExportSettings, export_child

FORMATS = [("onnx", "fp32"), ("tflite", "fp32"), ("tflite", "int8")]
B0 = "24:e6k3,e6k3|40:e6k5,e6k5|80:e6k3,e6k3,e6k3|112:e6k5,e6k5,e6k5|192:e6k5,e6k5,e6k5,e6k5|320:e6k3"


def tables(space: str) -> list[Path]:
    found = sorted((ROOT / "latency_tables").glob(f"{space}-*_1t.json"))
    return [p for p in found if "-224_" in p.name or space != "mbconv"]


def rows_of(name: str, report: dict) -> list[list[str]]:
    rows = []
    for e in report["exports"]:
        latency = e.get("latency") or {}
        rows.append([name, e["format"], e["precision"], f"{e['size_bytes'] / 1024:.0f}",
                     f"{e['parity']['max_abs_diff']:.1e}", f"{100 * e['parity']['top1_agreement']:.1f}%",
                     f"{e['accuracy_change']:+.4f}", f"{latency.get('measured_ms', float('nan')):.3f}",
                     "-" if e.get("predicted_ms") is None else f"{e['predicted_ms']:.3f}",
                     "-" if e.get("prediction_error_pct") is None else f"{e['prediction_error_pct']:+.1f}%"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child-run", type=Path, default=ROOT / "runs" / "demo",
                        help="a run whose search and training finished (the demo's by default)")
    parser.add_argument("--b0-samples", type=int, default=100, help="test images for B0's parity (224 px)")
    args = parser.parse_args()
    results, rows = {}, []
    child_run = open_run(args.child_run)
    report_path = args.child_run / "report.json"
    child = json.loads(report_path.read_text())["child"] if report_path.exists() else None
    if child is None:
        raise SystemExit(f"{args.child_run} has no finished demo (report.json); run 'hwnas demo' first")
    weights = next((args.child_run / "children").glob("*/weights.pt"))
    with tempfile.TemporaryDirectory() as tmp:
        report = export_child(child_run, child["arch"], FORMATS, Path(tmp) / "child", weights,
                              ExportSettings(tables=tuple(tables(child_run.space.name)))).to_dict()
        results["searched_child"] = report
        rows += rows_of("searched child", report)
        b0_run = create_or_open_run(Path(tmp) / "b0", "mbconv", "digits")
        report = export_child(b0_run, B0, FORMATS, Path(tmp) / "b0", None,
                              ExportSettings(tables=tuple(tables("mbconv")), parity_limit=args.b0_samples)).to_dict()
        results["efficientnet_b0"] = report
        rows += rows_of("EfficientNet-B0", report)
    try:
        import tensorrt  # noqa: F401

        tensorrt_note = "installed"
    except ImportError:
        tensorrt_note = "skipped: TensorRT cannot be installed on this CPU-only machine"
    print_table(rows, ["model", "format", "precision", "KiB", "max abs diff", "top-1 agree", "acc change",
                       "measured ms", "predicted ms", "error"])
    print(f"tensorrt: {tensorrt_note}")
    fp32 = [e for r in results.values() for e in r["exports"] if e["precision"] == "fp32"]
    int8 = [e for r in results.values() for e in r["exports"] if e["precision"] == "int8"]
    predicted = [e for r in results.values() for e in r["exports"] if e.get("prediction_error_pct") is not None]
    write_result("export", "export", {
        "results": results, "tensorrt": tensorrt_note,
        "targets": {
            "fp32_max_abs_diff<=1e-4": all(e["parity"]["max_abs_diff"] <= 1e-4 for e in fp32),
            "fp32_top1_agreement=100%": all(e["parity"]["top1_agreement"] == 1.0 for e in fp32),
            "int8_top1_agreement>=98%": all(e["parity"]["top1_agreement"] >= 0.98 for e in int8),
            "measured_within_10pct_of_predicted": all(abs(e["prediction_error_pct"]) <= 10 for e in predicted),
        },
    })


if __name__ == "__main__":
    main()
