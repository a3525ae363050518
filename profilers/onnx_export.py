"""PyTorch -> ONNX, the one way hwnas does it (profiling and shipping use the same exporter)."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch
from torch import nn

OPSET = 17


def export_onnx(module: nn.Module, example: torch.Tensor, path: Path | None = None) -> bytes:
    """Export ``module`` (eval mode, batch fixed by ``example``) with torch's TorchScript-based exporter.

    Returns the model bytes and writes them to ``path`` when given.
    """
    buffer = io.BytesIO()
    # timm's fused attention (F.scaled_dot_product_attention) does not trace; its explicit path computes the same
    fused = [m for m in module.modules() if getattr(m, "fused_attn", False)]
    for m in fused:
        m.fused_attn = False
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module.eval(), (example,), buffer, dynamo=False, opset_version=OPSET,
                input_names=["input"], output_names=["output"],
            )
    finally:
        for m in fused:
            m.fused_attn = True
    data = buffer.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data
