"""Shared test settings and fixtures: one torch thread, a small trained run shared by the pipeline tests.

The benchmarks' own modules (``rank_noise``, ``spos``, ``ranking``) are importable here, as they are to the scripts
beside them.
"""

import sys
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A run on digits for the tiny MBConv space: teacher (2 epochs), supernets (1 epoch), ratings."""
    from hwnas.run import create_or_open_run
    from hwnas.supernet.distill import DistillConfig, distill
    from hwnas.supernet.ratings import rate
    from hwnas.supernet.teacher import train_teacher
    from hwnas.training import TrainConfig

    path = tmp_path_factory.mktemp("runs") / "tiny"
    run = create_or_open_run(path, "mbconv-tiny", "digits")
    train_teacher(run, config=TrainConfig(epochs=2), show_progress=False)
    distill(run, config=DistillConfig(epochs=1), show_progress=False)
    rate(run, show_progress=False)
    return path


@pytest.fixture(scope="session")
def tiny_table(tmp_path_factory) -> Path:
    """A quick latency table of the tiny MBConv space (ONNX Runtime, 1 thread), calibrated and validated."""
    from profilers import Protocol, get_runtime
    from profilers.profile import profile_space
    from search_spaces import get_space

    out = tmp_path_factory.mktemp("table") / "tiny.json"
    profile_space(get_space("mbconv-tiny"), get_runtime("onnxruntime"), out, Protocol.quick(), calibrate=6,
                  validate=4, show_progress=False)
    return out
