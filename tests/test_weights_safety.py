"""Weights files and checkpoints cannot run code: a crafted pickle is refused before anything in it executes."""

import pickle
import subprocess
import sys

import pytest
import torch

from hwnas.devices import load_checkpoint


class _Planted:
    """Unpickling this calls ``Path.touch`` on a marker file: the stand-in for an attacker's shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        from pathlib import Path

        return Path.touch, (Path(self.marker),)


def _plant(path, marker):
    torch.save({"arch": "x", "state_dict": {"w": torch.zeros(2)}, "payload": _Planted(str(marker))}, path)


def test_the_planted_pickle_does_run_code_when_loaded_unsafely(tmp_path):
    # The control: without weights_only the same file runs its code, so the refusal below is what protects.
    evil, marker = tmp_path / "evil.pt", tmp_path / "ran"
    _plant(evil, marker)
    torch.load(evil, weights_only=False)
    assert marker.exists()


def test_a_checkpoint_with_a_pickled_callable_is_refused_and_nothing_runs(tmp_path):
    evil, marker = tmp_path / "evil.pt", tmp_path / "ran"
    _plant(evil, marker)
    with pytest.raises(ValueError, match="refused to load"):
        load_checkpoint(evil)
    assert not marker.exists()


def test_own_checkpoints_still_load(tmp_path):
    path = tmp_path / "ok.pt"
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.zeros(1, 3)).sum().backward()
    optimizer.step()
    torch.save({"config": {"lr": 0.1, "name": "a", "dims": (1, 2)}, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "epoch": 3, "history": [{"loss": 0.5}]}, path)
    saved = load_checkpoint(path)
    assert saved["epoch"] == 3 and torch.equal(saved["model"]["weight"], model.state_dict()["weight"])


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", pickle.dumps({"a": 1})[:5]])
def test_a_truncated_or_foreign_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="bad.pt"):
        load_checkpoint(path)


def test_export_with_a_planted_weights_file_exits_2_and_runs_nothing(tiny_run, tmp_path):
    evil, marker = tmp_path / "evil.pt", tmp_path / "ran"
    _plant(evil, marker)
    arch = "24:e6k3|40:e3k5|80:e6k3|96:e3k3|160:e3k5|320:e6k3"
    done = subprocess.run([sys.executable, "-m", "hwnas.cli", "export", "--run", str(tiny_run), "--arch", arch,
                           "--weights", str(evil), "--format", "onnx", "--out", str(tmp_path / "ship")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "refused to load" in done.stderr and "Traceback" not in done.stderr
    assert not marker.exists()
