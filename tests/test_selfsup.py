"""Teacher-free block supernets (DNA++ ``dnapp``, Pi-NAS ``pinas``): distilled, rated and searched like DNA's."""

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hwnas.cli import main
from hwnas.data import load_data
from hwnas.run import create_or_open_run, open_run
from hwnas.search.budgeted import SearchSettings, search
from hwnas.supernet.distill import DistillConfig, distill
from hwnas.supernet.ratings import open_ratings, rate
from hwnas.supernet.selfsup import SelfSupSettings, variance_floor
from hwnas.supernet.selfsup_train import _saved_block, _Trainer, build_block, build_prefix


@pytest.fixture(scope="module")
def dnapp_run(tmp_path_factory) -> Path:
    """A DNA++ run of the tiny MBConv space on digits: 2 epochs per block, rated."""
    path = tmp_path_factory.mktemp("selfsup") / "dnapp"
    run = create_or_open_run(path, "mbconv-tiny", "digits")
    distill(run, config=DistillConfig(epochs=2, method="dnapp"), show_progress=False)
    rate(run, show_progress=False)
    return path


def test_teacher_free_run_is_rated_and_searched_without_a_teacher(dnapp_run):
    run = open_run(dnapp_run)
    assert not run.teacher_checkpoint.exists() and run.config.distill["method"] == "dnapp"
    ratings = open_ratings(run)
    for block in range(run.space.num_blocks):
        scores = ratings.blocks[block]
        assert len(scores) == len(run.space.block_candidates(block))
        assert len(set(round(v, 6) for v in scores.values())) > 1  # candidates are told apart
    saved = [torch.load(run.supernet_checkpoint(b), weights_only=True) for b in range(run.space.num_blocks)]
    assert saved[0]["inputs"] == "images" and len({s["inputs"] for s in saved[1:]}) == run.space.num_blocks - 1
    assert all(s["config"]["method"] == "dnapp" and s["epoch"] == 2 for s in saved)
    result = search(run, None, 1.2, SearchSettings(objective="macs", refine_trials=0), show_progress=False).to_dict()
    assert result["macs"] <= 1.2e6 and result["front_size"] >= 2


def test_dnapp_features_do_not_collapse(dnapp_run):
    """Across held-out samples the online embedding of every block's reference candidate keeps its spread: the
    variance floor's penalty stays well below the collapsed value (1), and normalized embeddings differ."""
    run = open_run(dnapp_run)
    bundle = load_data(run.config.data, run.space.resolution)
    images = torch.stack([bundle.datasets["val"][i][0] for i in range(128)])
    for block in range(run.space.num_blocks):
        network, _ = _saved_block(run, block, "dnapp", "model")
        prefix = build_prefix(run, block, "dnapp", bundle, torch.device("cpu"))
        with torch.no_grad():
            x = prefix(images) if prefix is not None else images
            state, candidate = network.supernet.sample_path(random.Random(block))
            z = network.embed(x, state, candidate)
        assert float(variance_floor(z)) < 0.8, f"block {block} collapsed"
        spread = F.normalize(z, dim=1).std(dim=0).mean()
        assert float(spread) > 0.02, f"block {block}: normalized embeddings nearly equal ({float(spread):.4f})"
    assert float(variance_floor(torch.ones(128, 16))) > 0.95  # what a collapsed batch scores


def test_pinas_mean_teacher_moves_only_the_modules_on_the_paths(tmp_path):
    run = create_or_open_run(tmp_path / "pinas", "mbconv-tiny", "digits")
    settings = SelfSupSettings(queue=64)
    config = DistillConfig(epochs=1, method="pinas")
    trainer = _Trainer(build_block(run, 1, "pinas", settings, True, False), "pinas", settings, config,
                       torch.device("cpu"))
    before = {k: v.clone() for k, v in trainer.target.state_dict().items()}
    shape = trainer.network.supernet.teacher_in
    views = torch.randn(2, 8, *shape)
    trainer.step(views[0], views[1], random.Random(3))
    changed = {k.split(".")[2] for k, v in trainer.target.state_dict().items()
               if k.startswith("supernet.layers.") and not torch.equal(v, before[k]) and "running" not in k
               and "num_batches" not in k}
    layers = trainer.network.supernet.layers
    assert changed and len(changed) < len(layers)  # some layers followed the online network, the idle ones did not
    assert int(trainer.queue_at) == 16  # both views' keys entered the queue


def test_blocks_train_in_order_and_a_retrained_block_invalidates_the_next(tmp_path, capsys):
    path = tmp_path / "order"
    common = ["distill", "--run", str(path), "--method", "dnapp", "--space", "mbconv-tiny", "--data", "digits",
              "--epochs", "1", "-q"]
    assert main(common + ["--block", "1"]) == 2
    assert "block 0 has no supernet checkpoint" in capsys.readouterr().err
    assert main(common + ["--block", "0"]) == 0 and main(common + ["--block", "1"]) == 0
    run = open_run(path)
    block0 = run.supernet_checkpoint(0)
    block0.unlink()
    assert main(common + ["--block", "0", "--seed", "0", "--lr", "0.03"]) == 0  # block 0 trained again, otherwise
    assert main(common + ["--block", "1", "--epochs", "2"]) == 2
    assert "learned on other inputs" in capsys.readouterr().err


def test_bad_methods_are_refused_and_write_nothing(tmp_path, capsys, tiny_run):
    new = tmp_path / "new"
    assert main(["distill", "--run", str(new), "--method", "dnaplus", "--space", "mbconv-tiny"]) == 2
    err = capsys.readouterr().err
    assert "unknown --method 'dnaplus'" in err and "dna, dnapp, pinas" in err and not new.exists()
    assert main(["distill", "--run", str(new), "--method", "dna", "--space", "mbconv-tiny"]) == 2
    assert "teacher train" in capsys.readouterr().err and not new.exists()
    copy = tmp_path / "dna"
    shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns("children", "search*"))
    before = sorted(p.name for p in (copy / "supernet").iterdir())
    assert main(["distill", "--run", str(copy), "--method", "pinas", "--epochs", "1"]) == 2
    assert "mix" in capsys.readouterr().err
    assert sorted(p.name for p in (copy / "supernet").iterdir()) == before


def test_vit_space_distills_teacher_free(tmp_path):
    run = create_or_open_run(tmp_path / "vit", "vit-tiny", "digits")
    distill(run, config=DistillConfig(epochs=1, method="pinas"), show_progress=False)
    rate(run, show_progress=False)
    ratings = open_ratings(run)
    assert all(len(b) == len(run.space.block_candidates(i)) for i, b in enumerate(ratings.blocks))


def test_torchrun_two_processes_train_a_teacher_free_block(tmp_path):
    path = tmp_path / "ddp"
    create_or_open_run(path, "mbconv-tiny", "digits")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
               "hwnas.cli", "distill", "--method", "dnapp", "--block", "0", "--epochs", "1", "--json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ, "HWNAS_RUN": str(path)})
    assert result.returncode == 0, result.stderr[-3000:]
    saved = torch.load(open_run(path).supernet_checkpoint(0), weights_only=True)
    assert saved["epoch"] == 1 and saved["config"]["method"] == "dnapp"
    assert result.stdout.count('"block": 0') == 2


def test_block_any_workers_take_teacher_free_blocks_in_order(tmp_path):
    run = create_or_open_run(tmp_path / "any", "vit-tiny", "digits")
    results = distill(run, config=DistillConfig(epochs=1, method="dnapp"), show_progress=False, take_any=True)
    assert [r["block"] for r in results] == list(range(run.space.num_blocks))  # each only once those before it were
    saved = [torch.load(run.supernet_checkpoint(b), weights_only=True) for b in range(run.space.num_blocks)]
    assert saved[0]["inputs"] == "images" and all(s["inputs"] != "images" for s in saved[1:])


def test_take_any_starts_a_job_only_once_it_is_ready(tmp_path):
    from hwnas.supernet import claims

    done: list[str] = []
    jobs = [claims.Job("second", tmp_path / "second.lock", lambda: "second" in done, lambda: "first" in done),
            claims.Job("first", tmp_path / "first.lock", lambda: "first" in done)]
    claims.take_any(jobs, lambda index: done.append(jobs[index].name), poll_s=0.01)
    assert done == ["first", "second"]  # listed first, but it waited for the job it needs


def test_rating_supernets_of_another_method_is_refused(dnapp_run, tmp_path, capsys):
    import json

    copy = tmp_path / "copy"
    shutil.copytree(dnapp_run, copy, ignore=shutil.ignore_patterns("ratings*"))
    recorded = json.loads((copy / "run.json").read_text())
    recorded["distill"]["method"] = "pinas"  # a run.json that says another method than its checkpoints
    (copy / "run.json").write_text(json.dumps(recorded))
    assert main(["rate", "--run", str(copy), "-q"]) == 2
    assert "was distilled with --method dnapp, not pinas" in capsys.readouterr().err
    assert not (copy / "ratings.json").exists()


def test_a_child_starts_from_a_teacher_free_supernet(dnapp_run, tmp_path):
    from hwnas.ship.child import init_from_supernet

    run = open_run(dnapp_run)
    arch = run.space.sample(random.Random(5))
    model = run.space.build(arch)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert init_from_supernet(run, model, arch) == len(run.space.searchable_layers(model))  # every layer
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())
