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
          "onnx", "--precision", "fp16", "--out", str(tmp_path / "out"), "--no-measure"], "supports precision fp32, int8"),
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

    from hwnas.run import open_run
    from hwnas.ship.child import train_child
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


# -- the reliability suite: every class of bad input is one line on stderr, exit code 2, nothing changed ----------

ARCH = "24:e3k3|40:e3k3|80:e3k3|96:e3k3|160:e3k3|320:e3k3"


class _Planted:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (Path(self.marker),)


def _bad_files(folder: Path, table: Path) -> dict[str, Path]:
    """Damaged inputs, each made from a good one."""
    import pickle

    data = json.loads(table.read_text())
    made = {}
    missing = json.loads(json.dumps(data))
    missing["units"].pop(sorted(missing["units"])[3])
    negative = json.loads(json.dumps(data))
    for stats in negative["units"].values():
        stats.update({k: -abs(v) for k, v in stats.items() if k != "n"})
    for name, content in (("missing_unit.json", json.dumps(missing)), ("negative.json", json.dumps(negative)),
                          ("nan.json", table.read_text().replace('"p10": ', '"p10": NaN, "x": ', 1))):
        (folder / name).write_text(content)
        made[name] = folder / name
    (folder / "a_folder").mkdir()
    made["a_folder"] = folder / "a_folder"
    made["a_file"] = folder / "a_file"
    made["a_file"].write_text("not a folder")
    made["truncated.pt"] = folder / "truncated.pt"
    torch.save({"arch": ARCH, "state_dict": {"w": torch.zeros(1000)}}, made["truncated.pt"])
    made["truncated.pt"].write_bytes(made["truncated.pt"].read_bytes()[:300])
    made["planted.pt"] = folder / "planted.pt"
    made["marker"] = folder / "planted-code-ran"
    with open(made["planted.pt"], "wb") as handle:
        pickle.dump({"arch": ARCH, "x": _Planted(str(made["marker"]))}, handle)
    return made


def _cases(run: Path, table: Path, bad: dict[str, Path], tmp: Path) -> list[tuple[str, list[str], str]]:
    search = ["search", "--run", str(run), "--table", str(table)]
    export = ["export", "--run", str(run), "--arch", ARCH, "--format", "onnx", "--no-measure"]
    return [
        # arguments checked before any work
        ("arguments", [*search, "--budget-ms", "inf"], "must be a finite number > 0, got inf"),
        ("arguments", [*search, "--budget-ms", "-1"], "must be a finite number > 0"),
        ("arguments", [*search, "--budget-ms", "nan"], "must be a finite number > 0"),
        ("arguments", [*search, "--budget-ms", "1", "--refine-trials", "-5"], "--refine-trials: must be >= 0"),
        ("arguments", [*export, "--out", str(tmp / "o"), "--budget-ms", "-3"], "--budget-ms: must be a finite"),
        ("arguments", [*export, "--out", str(tmp / "o"), "--int8-finetune", "0"], "--int8-finetune: must be >= 1"),
        ("arguments", [*export, "--out", str(tmp / "o"), "--int8-weight-bits", "6"],
         "--int8-weight-bits: invalid choice: '6'"),
        ("arguments", ["profile", "--space", "mbconv-tiny", "--out", str(tmp / "t.json"), "--calibrate", "-3"],
         "--calibrate: must be >= 0"),
        ("arguments", ["profile", "--space", "mbconv-tiny", "--out", str(tmp / "t.json"), "--threads", "0"],
         "--threads: must be >= 1"),
        ("arguments", ["distill", "--run", str(run), "--seeds", "0"], "--seeds: must be >= 1"),
        ("arguments", ["distill", "--run", str(run), "--lr", "-0.1"], "--lr: must be a finite number > 0"),
        ("arguments", ["train", "--run", str(run), "--arch", ARCH, "--epochs", "0"], "--epochs: must be >= 1"),
        ("arguments", ["agent", "serve", "--port", "70000"], "--port: must be 0-65535"),
        ("arguments", ["agent", "serve", "--max-mb", "-1"], "--max-mb: must be >= 1"),
        ("arguments", ["agent", "serve", "--max-seconds", "0"], "--max-seconds: must be a finite number > 0"),
        ("arguments", [*search, "--budget-ms", "1", "--storage", "notaurl://x"], "is not a database URL"),
        ("arguments", [*search, "--budget-ms", "1", "--target", "phone"], "write http://HOST:PORT"),
        ("arguments", ["teacher", "train", "--run", str(tmp / "conflict"), "--space", "mbconv-tiny", "--teacher",
                       "efficientnet_b0", "--arch", ARCH], "both name the teacher"),
        ("arguments", ["teacher", "train", "--run", str(tmp / "conflict"), "--space", "mbconv-tiny", "--pretrained"],
         "give --teacher NAME"),
        ("arguments", ["space", "sample", "mbconv", "--n", "0"], "--n: must be >= 1"),
        # files: tables validated as a whole, paths checked before work, checkpoints weights-only
        ("files", [*search[:3], "--table", str(bad["a_folder"]), "--budget-ms", "1"], "is a folder"),
        ("files", [*search[:3], "--table", str(bad["missing_unit.json"]), "--budget-ms", "1"], "lacks 1 of the"),
        ("files", ["predict", "--table", str(bad["negative.json"]), "--arch", ARCH], "finite milliseconds > 0"),
        ("files", ["predict", "--table", str(bad["nan.json"]), "--arch", ARCH], "NaN, which JSON does not allow"),
        ("files", ["profile", "--space", "mbconv-tiny", "--out", str(bad["a_folder"])], "is a folder"),
        ("files", [*export, "--out", str(bad["a_file"])], "is a file; give a folder"),
        ("files", [*export, "--out", str(tmp / "o"), "--weights", str(bad["truncated.pt"])],
         "not a readable torch checkpoint"),
        ("files", [*export, "--out", str(tmp / "o"), "--weights", str(bad["planted.pt"])], "refused to load"),
        ("files", ["rate", "--run", str(bad["a_file"])], "no run at"),
        # targets: an unreachable one fails before any work or any change
        ("targets", [*search, "--budget-ms", "1", "--target", "http://127.0.0.1:9"], "cannot reach the agent"),
        ("targets", ["profile", "--space", "vit-tiny", "--out", str(tmp / "t.json"), "--target",
                     "http://127.0.0.1:9"], "cannot reach the agent"),
        ("targets", ["export", "--run", str(run), "--arch", ARCH, "--format", "tflite", "--out", str(tmp / "o"),
                     "--target", "adb:x"], "adb not found"),
    ]


def test_every_class_of_bad_input_is_one_clean_line_and_changes_nothing(tiny_run, tiny_table, tmp_path, capsys,
                                                                           monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before, table_before = _digest(run), tiny_table.read_bytes()
    bad = _bad_files(tmp_path, tiny_table)
    monkeypatch.setenv("HWNAS_ADB", str(tmp_path / "no-adb-here"))
    counts: dict[str, int] = {}
    for kind, argv, message in _cases(run, tiny_table, bad, tmp_path):
        code = main(argv)
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2, (argv, err)
        assert "Traceback" not in err, (argv, err)
        assert lines and lines[-1].startswith(f"hwnas {argv[0]}") and ": error: " in lines[-1], (argv, err)
        assert message in lines[-1], (argv, lines[-1])
        assert sum(": error: " in line for line in lines) == 1, (argv, err)
        counts[kind] = counts.get(kind, 0) + 1
    assert counts == {"arguments": 20, "files": 9, "targets": 3}
    assert _digest(run) == before and tiny_table.read_bytes() == table_before
    assert not (run / "search.db").exists() or (tiny_run / "search.db").exists()  # no study made for a failed search
    assert not (tmp_path / "t.json.work").exists() and not (tmp_path / "o").exists()
    assert not (tmp_path / "conflict").exists() and not bad["marker"].exists()


def test_a_truncated_training_checkpoint_on_resume_is_a_clear_error(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    checkpoint = run / "children" / hashlib.sha1(ARCH.encode()).hexdigest()[:12] / "train.pt"
    assert main(["train", "--run", str(run), "--arch", ARCH, "--epochs", "1", "--json"]) == 0
    capsys.readouterr()
    checkpoint.write_bytes(checkpoint.read_bytes()[:500])
    assert main(["train", "--run", str(run), "--arch", ARCH, "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "not a readable torch checkpoint" in err and "remove it" in err and "Traceback" not in err


def test_an_image_folder_with_a_corrupt_image_names_it_and_makes_no_run(tmp_path, capsys):
    from PIL import Image

    root = tmp_path / "images"
    for split in ("train", "val"):
        for label in "abcdefghij":  # 10 classes, as mbconv-tiny classifies
            folder = root / split / label
            folder.mkdir(parents=True)
            for index in range(2):
                Image.new("RGB", (40, 40), (index * 90, 20, 200)).save(folder / f"{index}.jpg")
    (root / "train" / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    run = tmp_path / "run"
    code = main(["teacher", "train", "--run", str(run), "--space", "mbconv-tiny", "--data", str(root), "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "broken.jpg is not a readable image" in err and "Traceback" not in err
    assert not run.exists()  # the corrected retry (another --data) is not refused by a recorded bad one


def test_temporaries_of_a_killed_write_are_removed_when_the_run_is_opened(tiny_run, tmp_path):
    import os
    import socket

    from hwnas.run import open_run

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    host = socket.gethostname().replace(".", "-")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = run / "ratings" / f".block0.json.{host}~{dead.stdout.strip()}.abc123.tmp"
    left.write_text("half a file")
    mine = run / f".run.json.{host}~{os.getpid()}.def456.tmp"  # a live writer's: kept
    mine.write_text("being written")
    other_tool = run / "cache" / ".boundary_0.123.npy.tmp"  # not an atomic write's: not ours to remove
    other_tool.parent.mkdir(exist_ok=True)
    other_tool.write_text("x")
    open_run(run)
    assert not left.exists() and mine.exists() and other_tool.exists()
