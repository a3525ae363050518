"""Reliability sweep: long stages killed at a random point resume to complete, valid files; bad inputs leave earlier
results untouched. (Profile, distillation and refinement kills live beside their own tests.)"""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from killing import kill_when

from hwnas.cli import main

HWNAS = [sys.executable, "-m", "hwnas.cli"]


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "search" not in p.parts and p.suffix != ".db"}


def test_killed_rating_resumes_to_a_complete_ratings_file(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("ratings*"))
    kill_when(HWNAS + ["rate", "--run", str(run)], lambda: (run / "ratings" / "block1.json").exists())
    finished = sorted(p.name for p in (run / "ratings").glob("block*.json"))
    assert finished and not (run / "ratings.json").exists()
    kept = {name: (run / "ratings" / name).read_bytes() for name in finished}
    result = subprocess.run(HWNAS + ["rate", "--run", str(run), "--json"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    data = json.loads((run / "ratings.json").read_text())
    assert len(data["blocks"]) == 6 and all(block["ratings"] for block in data["blocks"])
    assert all((run / "ratings" / name).read_bytes() == content for name, content in kept.items())


def test_killed_child_training_resumes(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("children"))
    arch = "24:e3k3|40:e3k3|80:e3k3|96:e3k3|160:e3k3|320:e3k3"
    args = HWNAS + ["train", "--run", str(run), "--arch", arch, "--epochs", "5", "--json"]
    checkpoint = run / "children" / hashlib.sha1(arch.encode()).hexdigest()[:12] / "train.pt"

    def trained_two() -> bool:
        return checkpoint.exists() and torch.load(checkpoint, weights_only=False)["epoch"] >= 2

    kill_when(args, trained_two)
    before = torch.load(checkpoint, weights_only=False)
    assert 2 <= before["epoch"] < 5
    result = subprocess.run(args, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [h["epoch"] for h in report["history"]] == [1, 2, 3, 4, 5]
    assert report["history"][:before["epoch"]] == before["history"]
    assert 0 <= report["test_accuracy"] <= 1


def test_bad_inputs_leave_earlier_results_untouched(tiny_run, tiny_table, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = _digest(run)
    table_before = tiny_table.read_bytes()
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"format": "hwnas-latency-table"')
    negative = tmp_path / "negative.json"  # a calibration fitted before the non-negative fit could predict < 0 ms
    data = json.loads(table_before)
    data["calibration"]["intercept"] = -10.0
    negative.write_text(json.dumps(data))
    cases = [
        (["search", "--run", str(run), "--table", str(negative), "--budget-ms", "1"], "re-profile it on a quiet"),
        (["search", "--run", str(run), "--table", str(tiny_table), "--budget-ms", "0.0001"], "below the cheapest"),
        (["search", "--run", str(run), "--table", str(corrupt), "--budget-ms", "1"], "corrupt JSON"),
        (["train", "--run", str(run), "--arch", "24:e9k3|40:e3k3|80:e3k3|96:e3k3|160:e3k3|320:e3k3"], "not allowed"),
        (["export", "--run", str(run), "--arch", "24:e3k3|40:e3k3|80:e3k3|96:e3k3|160:e3k3|320:e3k3", "--format",
          "onnx", "--precision", "int8", "--out", str(tmp_path / "out"), "--no-measure"], "supports precision fp32"),
        (["measure", "--space", "mbconv-tiny", "--runtime", "tensorrt", "--arch",
          "24:e3k3|40:e3k3|80:e3k3|96:e3k3|160:e3k3|320:e3k3"], "TensorRT"),
        (["teacher", "train", "--run", str(run), "--space", "vit-tiny"], "was made with --space mbconv-tiny"),
        (["rate", "--run", str(run), "--block", "9"], "--block must be in 0..5"),
        (["teacher", "train", "--run", str(run), "--arch", "24:e3k3|40:e3k3|80:e3k3|96:e3k3|160:e3k3|320:e3k3",
          "--epochs", "1"], "already has the teacher 24:e6k7"),
    ]
    other_space = Path(__file__).resolve().parents[1] / "latency_tables" / "mbconv-224_onnxruntime-cpu_1t.json"
    cases += [
        (["search", "--run", str(run), "--table", str(other_space), "--budget-ms", "5"], "was measured for space='mbconv'"),
        (["teacher", "train", "--run", str(tmp_path / "new"), "--space", "mbconv-tiny", "--data", "/no/such/folder"],
         "neither one of the embedded data sets"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert _digest(run) == before
    assert not (tmp_path / "new").exists()  # a bad --data makes no run (which would then be stuck with it)
    assert tiny_table.read_bytes() == table_before


def test_child_training_resumes_only_from_the_start_it_began_with(tiny_run, tmp_path):
    """A child trained from random weights is not resumed under --init-supernet (which would report supernet layers
    the resumed weights never had): the error says what to do, and the trained checkpoint is left as it was."""
    import pytest

    from hwnas.child import train_child
    from hwnas.run import open_run
    from hwnas.training import TrainConfig

    run_path = tmp_path / "run"
    shutil.copytree(tiny_run, run_path)
    run = open_run(run_path)
    arch = "24:e3k3|40:e3k3|80:e3k3|96:e3k3|160:e3k3|320:e3k3"
    first = train_child(run, arch, TrainConfig(epochs=1), show_progress=False)
    assert first["layers_from_supernet"] == 0
    checkpoint = Path(first["weights"]).parent / "train.pt"
    before = checkpoint.read_bytes()
    with pytest.raises(ValueError, match="was started without --init-supernet; train it without the flag"):
        train_child(run, arch, TrainConfig(epochs=1), init_supernet=True, show_progress=False)
    assert checkpoint.read_bytes() == before
    again = train_child(run, arch, TrainConfig(epochs=1), show_progress=False)
    assert again["test_accuracy"] == first["test_accuracy"]
