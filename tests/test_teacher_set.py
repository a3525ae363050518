"""DNA+'s step: a trained child becomes the run's teacher; what the old teacher produced is kept aside, and the
supernets are distilled from the new one."""

import json
import random
import shutil

import pytest
import torch

from hwnas.cli import main
from hwnas.run import open_run
from hwnas.ship.child import train_child
from hwnas.supernet.distill import DistillConfig, distill
from hwnas.supernet.teacher import open_teacher
from hwnas.training import TrainConfig


@pytest.fixture()
def run_with_child(tiny_run, tmp_path):
    path = tmp_path / "run"
    shutil.copytree(tiny_run, path)
    run = open_run(path)
    arch = str(run.space.sample(random.Random(3)))
    train_child(run, arch, TrainConfig(epochs=1), show_progress=False)
    return path, arch


def test_a_trained_child_becomes_the_teacher_and_the_old_one_is_kept(run_with_child, capsys):
    path, arch = run_with_child
    old_digest = open_teacher(open_run(path)).digest()
    old_ratings = (path / "ratings.json").read_text()
    assert main(["teacher", "set", "--run", str(path), "--arch", arch, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    run = open_run(path)
    teacher = open_teacher(run)
    assert teacher.description["arch"] == arch and run.config.teacher["arch"] == arch
    assert result["test_accuracy"] is not None and not result["unchanged"]
    # the teacher computes what the trained child computes
    child = run.space.build(run.space.parse(arch))
    child.load_state_dict(torch.load(run.child_folder(run.space.parse(arch)) / "weights.pt")["state_dict"])
    images = torch.randn(4, *run.space.example_input().shape[1:])
    assert torch.allclose(teacher.eval()(images), child.eval()(images), atol=1e-5)
    # the old teacher and what was distilled and rated from it are kept aside, under its digest
    kept = path / "teachers" / old_digest[:12]
    assert result["moved_to"] == str(kept)
    assert (kept / "teacher.pt").exists() and (kept / "supernet" / "block0.pt").exists()
    assert (kept / "ratings.json").read_text() == old_ratings
    assert not (path / "supernet").exists() and not (path / "ratings.json").exists()
    # distillation starts over from the new teacher (the cache is rebuilt: its digest no longer matches)
    distill(run, block=0, config=DistillConfig(epochs=1), show_progress=False)
    from hwnas.devices import load_checkpoint
    assert load_checkpoint(path / "supernet" / "block0.pt")["teacher"] == teacher.digest()
    # setting the same child again changes nothing
    assert main(["teacher", "set", "--run", str(path), "--arch", arch, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["unchanged"] is True
    assert (path / "supernet" / "block0.pt").exists()


def test_an_untrained_child_or_foreign_weights_are_refused(run_with_child, capsys):
    path, arch = run_with_child
    other = str(open_run(path).space.sample(random.Random(11)))
    assert main(["teacher", "set", "--run", str(path), "--arch", other]) == 2
    assert "train the child first with 'hwnas train" in capsys.readouterr().err
    weights = open_run(path).child_folder(open_run(path).space.parse(arch)) / "weights.pt"
    assert main(["teacher", "set", "--run", str(path), "--arch", other, "--weights", str(weights)]) == 2
    assert f"holds {arch}" in capsys.readouterr().err
    assert (path / "supernet" / "block0.pt").exists() and not (path / "teachers").exists()  # nothing moved
