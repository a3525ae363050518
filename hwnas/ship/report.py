"""What an export returns: one entry per exported file (parity, measured and predicted latency, the budget check)
and the deployment report it writes as JSON and Markdown.

``ExportReport.to_dict()`` is the JSON of ``STEM_report.json`` and ``hwnas export --json``; the CLI and the demo render
the dataclass itself.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from profilers.files import atomic_write_bytes, atomic_write_json
from profilers.machine import describe_processor


@dataclass
class ShippedFile:
    """One exported file: its format and precision, parity with PyTorch on the test split, and, when measured, its
    latency on its runtime (``latency``: the measurement with its device and runtime), the prediction of a table of
    that runtime and whether the budget holds there (None: not checked on this runtime)."""

    format: str
    precision: str
    file: Path
    size_bytes: int
    parity: dict[str, Any]
    latency: dict[str, Any] | None = None
    predicted_ms: float | None = None
    table: str | None = None
    within_budget: bool | None = None
    over_budget_pct: float | None = None
    vs_fp32: float | None = None
    other_kernels: dict[str, float] = field(default_factory=dict)
    int8_stem: dict[str, Any] | None = None
    int8_weight_bits: int | None = None

    @property
    def accuracy_change(self) -> float:
        """Exported accuracy minus PyTorch's on the parity split."""
        return self.parity["accuracy_exported"] - self.parity["accuracy_torch"]

    @property
    def measured_ms(self) -> float | None:
        """The measured latency (the protocol's statistic), when measured."""
        return self.latency["measured_ms"] if self.latency else None

    @property
    def prediction_error_pct(self) -> float | None:
        """How far the measurement is from the table's prediction, in percent."""
        if self.predicted_ms is None or self.measured_ms is None:
            return None
        return 100 * (self.measured_ms / self.predicted_ms - 1)

    def to_dict(self) -> dict[str, Any]:
        """The entry as JSON values."""
        return {"format": self.format, "precision": self.precision, "file": str(self.file),
                "size_bytes": self.size_bytes, "parity": self.parity, "accuracy_change": self.accuracy_change,
                "latency": self.latency, "predicted_ms": self.predicted_ms,
                "prediction_error_pct": self.prediction_error_pct, "table": self.table,
                "within_budget": self.within_budget, "over_budget_pct": self.over_budget_pct,
                "int8_vs_fp32": self.vs_fp32, "other_kernels_ms": self.other_kernels, "int8_stem": self.int8_stem,
                "int8_weight_bits": self.int8_weight_bits}


@dataclass
class ExportReport:
    """An architecture's exports, the weights they came from and the budget they were checked against."""

    arch: Hashable
    space: str
    weights: str
    budget_ms: float | None
    budget_runtime: str | None
    exports: list[ShippedFile]
    report_files: list[Path] = field(default_factory=list)
    budget_precision: str | None = None
    int8_finetune: dict[str, Any] | None = None
    onnx_calibration: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON values (the architecture as its string)."""
        out = {"arch": str(self.arch), "space": self.space, "weights": self.weights, "budget_ms": self.budget_ms,
               "budget_runtime": self.budget_runtime, "budget_precision": self.budget_precision,
               "exports": [e.to_dict() for e in self.exports], "int8_finetune": self.int8_finetune,
               "onnx_int8_calibration": self.onnx_calibration}
        if self.report_files:
            out["report_files"] = [str(p) for p in self.report_files]
        return out

    def markdown(self) -> str:
        """The deployment report as a Markdown table."""
        lines = [f"# Deployment report: {self.arch}", "",
                 "| format | precision | file | size (KiB) | max abs diff | top-1 agreement | accuracy (torch -> "
                 "exported) | predicted ms | measured ms | budget |", "|---|---|---|---|---|---|---|---|---|---|"]
        for item in self.exports:
            p = item.parity
            budget = "" if item.within_budget is None else ("met" if item.within_budget else "NOT met")
            if budget and item.over_budget_pct is not None:
                budget += f" ({item.over_budget_pct:+.1f}%)"
            predicted = "" if item.predicted_ms is None else f"{item.predicted_ms:.3f}"
            measured = "" if item.measured_ms is None else f"{item.measured_ms:.3f}"
            lines.append(f"| {item.format} | {item.precision} | {Path(item.file).name} | {item.size_bytes / 1024:.0f} "
                         f"| {p['max_abs_diff']:.2e} | {100 * p['top1_agreement']:.1f}% | {p['accuracy_torch']:.4f} -> "
                         f"{p['accuracy_exported']:.4f} | {predicted} | {measured} | {budget} |")
        for item in self.exports:
            if item.vs_fp32 is not None:
                lines += ["", f"int8 {item.format}: {item.vs_fp32:.2f}x the fp32 file's latency"
                              + (" (int8 is SLOWER here)" if item.vs_fp32 > 1 else "") + "."]
            if item.int8_stem is not None:
                lines += ["", f"int8 {item.format}: {item.int8_stem['description']}."]
            if item.int8_weight_bits == 7:
                lines += ["", f"int8 {item.format}: 7-bit weights, since the target's x86 CPU has no VNNI and ONNX "
                              "Runtime's kernels would saturate on 8-bit ones."]
            for runtime, ms in item.other_kernels.items():
                lines += ["", f"{item.format} {item.precision} with {runtime}: {ms:.3f} ms."]
        places = sorted({item.parity.get("run_on", "this machine") for item in self.exports})
        if places and places != ["this machine"]:
            lines += ["", f"Outputs compared with PyTorch as run on: {'; '.join(places)}."]
        if self.exports and self.exports[0].latency:
            meta = self.exports[0].latency
            lines += ["", f"Measured on {meta['device'].get('device_name')} ({describe_processor(meta['device'])}), "
                          f"1 thread, batch 1, statistic {meta['statistic']}."]
            lines += ["", f"Warning: {w}."] if (w := meta.get("table_from_other_machine")) else []
        if self.budget_ms is not None:
            where = " ".join(x for x in (self.budget_runtime, self.budget_precision) if x)
            scope = f"on the {where} files only" if where else "on every file"
            lines += ["", f"Budget: {self.budget_ms:g} ms, checked {scope}."]
        lines += ["", f"Weights: {self.weights}."]
        if self.onnx_calibration is not None:
            lines += ["", f"int8 ONNX activation ranges calibrated by {self.onnx_calibration} on training images."]
        if self.int8_finetune is not None:
            f = self.int8_finetune
            made = ("weights fine-tuned for int8" if f["kept"] == "fine-tuned"
                    else "the original weights: fine-tuning for int8 did not help")
            lines += ["", f"int8 files made from {made} ({f['steps']} steps; simulated int8 top-1 agreement on the "
                          f"{f['split']} split {100 * f['simulated_agreement_before']:.1f}% -> "
                          f"{100 * f['simulated_agreement_after']:.1f}%); parity is against the original weights."]
        lines.append("")
        return "\n".join(lines)

    def write(self, out_dir: Path, stem: str) -> None:
        """``STEM_report.json`` and ``STEM_report.md`` in ``out_dir``; their paths are recorded in ``report_files``."""
        json_path, md_path = Path(out_dir) / f"{stem}_report.json", Path(out_dir) / f"{stem}_report.md"
        self.report_files = [json_path, md_path]
        atomic_write_json(json_path, self.to_dict())
        atomic_write_bytes(md_path, self.markdown().encode())
