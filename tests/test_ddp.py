"""Data parallel distillation inside a block: torchrun with 2 processes (gloo on CPU)."""

import os
import shutil
import subprocess
import sys

import torch

from hwnas.run import open_run
from hwnas.supernet.distill import checkpoint_path


def test_torchrun_two_processes_train_one_block(tiny_run, tmp_path):
    run_path = tmp_path / "ddp"
    shutil.copytree(tiny_run, run_path, ignore=shutil.ignore_patterns("supernet", "ratings*", "children", "search*"))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "hwnas.cli", "distill", "--block", "2", "--epochs", "2", "--json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "HWNAS_RUN": str(run_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    saved = torch.load(checkpoint_path(open_run(run_path), 2), weights_only=False)
    assert saved["epoch"] == 2 and len(saved["history"]) == 2
    assert all(h["loss"] > 0 for h in saved["history"])
    assert result.stdout.count('"block": 2') == 2  # both ranks finished the same block
