"""Extra distillation seeds: they share the run's teacher and cache, and their ratings combine into what the
search reads."""

import json
import shutil

import pytest
import torch

from hwnas.cli import main
from hwnas.run import open_run
from hwnas.supernet.distill import DistillConfig, checkpoint_path, distill
from hwnas.supernet.ratings import load_ratings, rate
from hwnas.supernet.reliability import block_reliability, reliability_weighted
from hwnas.supernet.seeds import open_seed_run, seed_runs
from hwnas.supernet.teacher import train_teacher


@pytest.fixture
def seeded_run(tiny_run, tmp_path):
    """A copy of the tiny run with a second distillation seed, distilled and rated through the CLI."""
    path = tmp_path / "seeded"
    shutil.copytree(tiny_run, path)
    assert main(["distill", "--run", str(path), "--epochs", "1", "--seeds", "2", "--json"]) == 0
    assert main(["rate", "--run", str(path), "--json"]) == 0
    return open_run(path)


def test_an_extra_seed_shares_the_teacher_and_cache_and_trains_other_weights(seeded_run):
    (seed,) = seed_runs(seeded_run)
    assert seed.path == seeded_run.path / "seeds" / "seed1"
    assert seed.config.seed_of == "../.." and seed.config.distill["seed"] == 1
    assert seeded_run.config.distill["seed"] == 0
    assert not (seed.path / "teacher.pt").exists() and not (seed.path / "cache").exists()  # the parent's are used
    assert json.loads((seed.path / "ratings.json").read_text())["blocks"][0]["supernet"]["teacher"] == json.loads(
        (seeded_run.path / "ratings.json").read_text())["blocks"][0]["supernet"]["teacher"]
    own = torch.load(checkpoint_path(seeded_run, 0), map_location="cpu", weights_only=False)["model"]
    other = torch.load(checkpoint_path(seed, 0), map_location="cpu", weights_only=False)["model"]
    assert own.keys() == other.keys()
    assert any(not torch.equal(own[k], other[k]) for k in own if own[k].is_floating_point())


def test_the_search_reads_the_seeds_combined_by_block_reliability(seeded_run):
    single = load_ratings(seeded_run, pooled=False, seeds=False)
    other = load_ratings(seed_runs(seeded_run)[0], pooled=False)
    combined = load_ratings(seeded_run, pooled=False)
    expected = reliability_weighted([single, other])
    assert combined == [pytest.approx(block) for block in expected]
    assert combined != single
    record = json.loads(seeded_run.combined_ratings_file.read_text())
    assert record["seeds"] == 2 and record["block_reliability"] == pytest.approx(block_reliability([single, other]))
    # the mse score is not combined: it stays the run's own
    assert load_ratings(seeded_run, "mse_rel", pooled=False) == load_ratings(seeded_run, "mse_rel", pooled=False,
                                                                            seeds=False)


def test_combined_ratings_out_of_date_are_refused_and_rating_again_mends_them(seeded_run):
    ratings = seeded_run.path / "ratings.json"
    data = json.loads(ratings.read_text())
    name = next(iter(data["blocks"][0]["ratings"]))
    data["blocks"][0]["ratings"][name]["l1_rel"] += 1.0
    ratings.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="rated again since.*hwnas rate"):
        load_ratings(seeded_run)
    rate(seeded_run, show_progress=False)  # reassembles ratings.json from the block files and combines again
    assert load_ratings(seeded_run, pooled=False) != load_ratings(seeded_run, pooled=False, seeds=False)
    shutil.rmtree(seeded_run.path / "seeds")  # no extra seed left: the run's own ratings again
    rate(seeded_run, show_progress=False)
    assert not seeded_run.combined_ratings_file.exists()
    assert load_ratings(seeded_run) == load_ratings(seeded_run, seeds=False)


def test_an_unfinished_seed_is_left_out_until_it_is_distilled(tiny_run, tmp_path, capsys):
    path = tmp_path / "partial"
    shutil.copytree(tiny_run, path)
    run = open_run(path)
    distill(run, block=0, config=DistillConfig(epochs=1), seeds=2, show_progress=False)  # seed 1: block 0 only
    rate(run, show_progress=False)
    assert "not every block is distilled yet" in capsys.readouterr().err
    assert not (path / "ratings_seeds.json").exists()


def test_bad_seed_requests_are_clear_errors(seeded_run):
    with pytest.raises(ValueError, match="--seeds must be >= 1"):
        distill(seeded_run, seeds=0, show_progress=False)
    seed = seed_runs(seeded_run)[0]
    with pytest.raises(ValueError, match="is itself a distillation seed"):
        open_seed_run(seed, 1)
    with pytest.raises(ValueError, match="train the teacher there"):
        train_teacher(seed, show_progress=False)
    assert main(["distill", "--run", str(seeded_run.path), "--seeds", "0"]) == 2


def test_a_killed_seed_distillation_resumes_and_keeps_what_it_trained(tiny_run, tmp_path):
    import subprocess
    import sys

    from killing import kill_when

    path = tmp_path / "killed"
    shutil.copytree(tiny_run, path)
    command = [sys.executable, "-m", "hwnas.cli", "distill", "--run", str(path), "--epochs", "1", "--seeds", "2"]
    seed_supernets = path / "seeds" / "seed1" / "supernet"
    kill_when(command, lambda: (seed_supernets / "block1.pt").exists())
    kept = {p.name: p.read_bytes() for p in seed_supernets.glob("block*.pt")}
    assert "block0.pt" in kept and len(kept) < 6, "the kill missed the extra seed's distillation"
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in seed_supernets.glob("block*.pt")) == [f"block{b}.pt" for b in range(6)]
    assert all((seed_supernets / name).read_bytes() == data for name, data in kept.items())  # resumed, not retrained
    assert main(["rate", "--run", str(path), "--json"]) == 0
    assert json.loads((path / "ratings_seeds.json").read_text())["seeds"] == 2
