"""The ranking benchmark's stand-alone children: their file names (cached trainings are found by them) and the
recipe's seed noise pooled over a folder of them (the noise ceiling of a one-seed interim result)."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from ranking import child_name, recipe_seed_variance, recipe_tag  # noqa: E402

ARCH = "24:e3k3|40:e3k3|80:e3k3|96:e3k3|160:e3k3|320:e3k3"


def test_child_names_keep_the_form_of_the_cached_trainings():
    # runs/bench-ranking-lr/children holds hundreds of trainings under these names; a change would orphan them
    assert recipe_tag(20, True, 1.0, 1.0) == "_e20_aug_clip1"
    assert recipe_tag(20, True, 0.5, None) == "_e20_aug0.5"
    assert recipe_tag(8, False, 1.0, None) == "_e8"
    assert child_name(ARCH, 3, 20, True, 1.0, 1.0) == "92f2c5070893_e20_aug_clip1_s3"


def _write(folder: Path, arch: str, seed: int, tag: str, accuracy: float) -> None:
    name = child_name(arch, seed, 20, True, 1.0, 1.0).replace("_e20_aug_clip1", tag)
    (folder / f"{name}.json").write_text(json.dumps({"arch": arch, "seed": seed, "test_accuracy": accuracy}))


def test_recipe_seed_variance_pools_archs_with_two_or_more_seeds_of_that_recipe(tmp_path: Path):
    tag = "_e20_aug_clip1"
    per_arch = {"a": [0.90, 0.92, 0.94], "b": [0.80, 0.81], "c": [0.70]}  # c: one seed, no spread to measure
    for arch, values in per_arch.items():
        for seed, value in enumerate(values):
            _write(tmp_path, arch, seed, tag, value)
    _write(tmp_path, "a", 5, "_e20_aug_clip10", 0.10)  # another recipe whose tag starts the same: ignored
    _write(tmp_path, "b", 5, "_e8", 0.10)
    variance, archs = recipe_seed_variance(tmp_path, tag, "test_accuracy")
    assert archs == 2
    assert variance == pytest.approx(statistics.fmean([statistics.variance(per_arch["a"]),
                                                       statistics.variance(per_arch["b"])]))
    assert recipe_seed_variance(tmp_path, "_e14", "test_accuracy") is None


def _result(path: Path, archs: list[str], per_seed: list[list[float]], **changes) -> Path:
    result = {"data": "digits-distorted-4", "archs": archs, "accuracy_measure": "test_accuracy_x32",
              "test_accuracy_per_seed": per_seed,
              "own_test_split": {"test_accuracy_per_seed": [[v - 0.01 for v in values] for values in per_seed]},
              "recipe": {"epochs": 20, "augment": True, "augment_strength": 1.0, "grad_clip": 1.0}}
    for key, value in changes.items():
        if key in result["recipe"]:
            result["recipe"][key] = value
        else:
            result[key] = value
    path.write_text(json.dumps(result))
    return path


def test_restored_children_are_found_where_a_run_looks_for_its_trainings(tmp_path: Path):
    from ranking import restore_children

    other = ARCH.replace("e3k3", "e6k5", 1)
    first = _result(tmp_path / "first.json", [ARCH, other], [[0.95, 0.96], [0.94, 0.97]])
    second = _result(tmp_path / "second.json", [other], [[0.96]])  # the same training of other, recorded again
    folder = tmp_path / "work" / "children"
    assert restore_children(folder, [first, second], "digits-distorted-4", 20, True, 1.0, 1.0, 32) == (4, 1)
    record = json.loads((folder / f"{child_name(other, 1, 20, True, 1.0, 1.0)}.json").read_text())
    assert record["test_accuracy_x32"] == 0.97 and record["test_accuracy"] == pytest.approx(0.96)
    assert record["restored_from"] == "first.json" and record["arch"] == other and record["seed"] == 1
    variance, archs = recipe_seed_variance(folder, "_e20_aug_clip1", "test_accuracy_x32")
    assert archs == 2 and variance == pytest.approx(statistics.fmean([0.01 ** 2 / 2, 0.01 ** 2 / 2]))
    # restoring again writes nothing and agrees with what is there
    assert restore_children(folder, [first], "digits-distorted-4", 20, True, 1.0, 1.0, 32) == (0, 4)


@pytest.mark.parametrize(("changes", "message"), [
    ({"epochs": 14}, "epochs 14 (this run: 20)"),
    ({"grad_clip": None}, "grad_clip None (this run: 1.0)"),
    ({"data": "digits"}, "data 'digits'"),
    ({"accuracy_measure": None}, "accuracy measure 'test_accuracy'"),
])
def test_restoring_trainings_of_another_recipe_is_refused(tmp_path: Path, changes: dict, message: str):
    from ranking import restore_children

    source = _result(tmp_path / "other.json", [ARCH], [[0.95]], **changes)
    with pytest.raises(SystemExit, match=message.replace("(", r"\(").replace(")", r"\)")):
        restore_children(tmp_path / "children", [source], "digits-distorted-4", 20, True, 1.0, 1.0, 32)
    assert not list((tmp_path / "children").glob("*.json"))


def test_a_record_that_disagrees_with_the_source_is_refused_and_kept(tmp_path: Path):
    from ranking import restore_children

    folder = tmp_path / "children"
    folder.mkdir()
    path = folder / f"{child_name(ARCH, 0, 20, True, 1.0, 1.0)}.json"
    path.write_text(json.dumps({"arch": ARCH, "seed": 0, "test_accuracy": 0.5, "test_accuracy_x32": 0.5}))
    source = _result(tmp_path / "r.json", [ARCH], [[0.95]])
    with pytest.raises(SystemExit, match="different trainings"):
        restore_children(folder, [source], "digits-distorted-4", 20, True, 1.0, 1.0, 32)
    assert json.loads(path.read_text())["test_accuracy"] == 0.5


def test_without_the_large_test_set_a_result_of_the_own_split_restores(tmp_path: Path):
    from ranking import restore_children

    source = _result(tmp_path / "old.json", [ARCH], [[0.95]], accuracy_measure=None)
    data = json.loads(source.read_text())
    del data["own_test_split"]  # results from before the large test set ranked by the own split alone
    source.write_text(json.dumps(data))
    assert restore_children(tmp_path / "c", [source], "digits-distorted-4", 20, True, 1.0, 1.0, 0) == (1, 0)
    record = json.loads((tmp_path / "c" / f"{child_name(ARCH, 0, 20, True, 1.0, 1.0)}.json").read_text())
    assert record["test_accuracy"] == 0.95 and "test_accuracy_x32" not in record


def test_done_only_with_too_few_trained_archs_stops_before_training_anything(tiny_run: Path, tmp_path: Path):
    import os
    import shutil
    import subprocess

    root = Path(__file__).resolve().parents[1]
    work = tmp_path / "work"
    shutil.copytree(tiny_run, work / "run")
    arch = ARCH.replace("e3k3", "e6k5", 1)
    (work / "children").mkdir()
    _write(work / "children", arch, 0, "_e20_clip1", 0.9)  # one trained architecture of the three asked for
    args = ["--done-only", "--seeds", "1", "--archs", "0", "--full-range-archs", "3", "--data", "digits",
            "--no-augment", "--teacher-epochs", "2", "--distill-epochs", "1", "--spos-epochs", "1", "--rating-seeds", "2",
            "--work", str(work), "--name", "never-written"]
    done = subprocess.run([sys.executable, str(root / "benchmarks" / "ranking.py"), *args], capture_output=True,
                          text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(root)}, timeout=600)
    assert done.returncode == 2, done.stderr  # bad input: exit 2, as argparse
    assert "--done-only needs >= 3 architectures with their first 1 seed(s) trained" in done.stderr
    assert "found 0" in done.stderr or "found 1" in done.stderr
    # neither the SPOS supernet nor another distillation seed was started for a result that cannot be made
    assert not list(work.glob("spos*")) and not (work / "run-seed1").exists()
    assert not (root / "benchmarks" / "results" / "ranking" / "never-written.json").exists()
