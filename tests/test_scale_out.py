"""Scale-out on engines users run: search workers sharing a study on a real PostgreSQL server, block supernets
claimed by workers sharing a run folder, and torchrun across two nodes (two local ones here)."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import postgres_server as postgres
import pytest
import torch
from killing import kill_when

from hwnas.run import open_run
from hwnas.supernet.distill import checkpoint_path

HWNAS = [sys.executable, "-m", "hwnas.cli"]
NO_PG = postgres.why_not()


@pytest.fixture(scope="module")
def pg_url():
    if NO_PG:
        pytest.skip(f"no PostgreSQL server can be started here: {NO_PG}")
    with postgres.start() as url:
        yield url


def _search(run, table, url, trials, *extra, budget="10"):
    return [*HWNAS, "search", "--run", str(run), "--table", str(table), "--budget-ms", budget, "--refine-trials",
            str(trials), "--storage", url, "--quick", "--json", *extra]


@pytest.mark.slow
def test_search_workers_share_one_postgresql_study(tiny_run, tiny_table, tmp_path, pg_url):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("search*"))
    workers = [subprocess.Popen(_search(run, tiny_table, pg_url, 9), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for _ in range(3)]
    outputs = [w.communicate(timeout=900) for w in workers]
    assert all(w.returncode == 0 for w in workers), [err[-2000:] for _, err in outputs]
    results = [json.loads(out) for out, _ in outputs]
    (name,) = {r["refinement"]["study"] for r in results}
    study = optuna.load_study(study_name=name, storage=pg_url)
    finished = [t for t in study.trials if t.state.is_finished()]
    assert 9 <= len(finished) <= 9 + 2  # each worker's last trial may overshoot by one
    enqueued = [t for t in study.trials if "fixed_params" in t.system_attrs]
    assert enqueued and len({json.dumps(t.params, sort_keys=True) for t in enqueued}) == len(enqueued)
    assert len({t.user_attrs["worker"] for t in finished}) >= 2  # the work was shared
    # the same as one worker's search on SQLite with the same budget
    alone = subprocess.run(_search(run, tiny_table, f"sqlite:///{tmp_path / 'alone.db'}", 9), capture_output=True,
                           text=True, timeout=900)
    assert alone.returncode == 0, alone.stderr[-2000:]
    assert {r["chosen"]["arch"] for r in results} == {json.loads(alone.stdout)["chosen"]["arch"]}


@pytest.mark.slow
def test_a_killed_search_worker_leaves_a_failed_trial_and_the_others_go_on(tiny_run, tiny_table, tmp_path, pg_url):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("search*"))
    storage = pg_url
    command = _search(run, tiny_table, storage, 6, "--stale-after", "2", budget="9")  # a study of its own

    def running() -> bool:
        try:
            studies = optuna.get_all_study_summaries(storage)
        except Exception:
            return False
        return any(t.state == optuna.trial.TrialState.RUNNING
                   for s in studies for t in optuna.load_study(study_name=s.study_name, storage=storage).trials)

    kill_when(command, running, jitter=0.0)
    time.sleep(3)  # past the grace period: the killed worker's trial is stale
    other = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert other.returncode == 0, other.stderr[-2000:]
    name = json.loads(other.stdout)["refinement"]["study"]
    trials = optuna.load_study(study_name=name, storage=storage).trials
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert failed and not any(t.state == optuna.trial.TrialState.RUNNING for t in trials)
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials) >= 6 - len(failed)


def test_an_unreachable_storage_is_a_clear_error(tiny_run, tiny_table, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("search*"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once the probe closes
    done = subprocess.run(_search(run, tiny_table, f"postgresql+psycopg://hwnas:secret@127.0.0.1:{port}/x", 2),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "cannot open the Optuna study" in done.stderr
    assert "secret" not in done.stderr and "Traceback" not in done.stderr  # the password is not printed


def _fresh(tiny_run, folder: Path) -> Path:
    shutil.copytree(tiny_run, folder, ignore=shutil.ignore_patterns("supernet", "ratings*", "children", "search*"))
    return folder


def _epochs(run_path: Path, block: int) -> list[int]:
    saved = torch.load(checkpoint_path(open_run(run_path), block), weights_only=True)
    return [h["epoch"] for h in saved["history"]]


@pytest.mark.slow
def test_distill_workers_take_blocks_and_seeds_and_train_each_once(tiny_run, tmp_path):
    run = _fresh(tiny_run, tmp_path / "run")
    command = [*HWNAS, "distill", "--run", str(run), "--block", "any", "--epochs", "1", "--seeds", "2", "--json"]
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=900) for w in workers]
    assert all(w.returncode == 0 for w in workers), [err[-2000:] for _, err in outputs]
    done = [(r["seed"], r["block"]) for out, _ in outputs for r in json.loads(out)]
    assert sorted(done) == [(s, b) for s in (0, 1) for b in range(6)]  # every block of both seeds, each once
    assert all(json.loads(out) for out, _ in outputs)  # both workers trained some
    assert all(_epochs(run, b) == [1] for b in range(6))
    assert all(_epochs(run / "seeds" / "seed1", b) == [1] for b in range(6))


@pytest.mark.slow
def test_a_killed_distill_worker_is_resumed_by_another(tiny_run, tmp_path):
    run = _fresh(tiny_run, tmp_path / "run")
    command = [*HWNAS, "distill", "--run", str(run), "--block", "any", "--epochs", "3"]
    first = checkpoint_path(open_run(run), 0)

    def one_epoch_saved() -> bool:
        return first.exists() and torch.load(first, weights_only=True)["epoch"] >= 1

    kill_when(command, one_epoch_saved, jitter=0.0)
    kept = torch.load(first, weights_only=True)["history"]
    assert 1 <= len(kept) < 3
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _epochs(run, 0) == [1, 2, 3] and torch.load(first, weights_only=True)["history"][:len(kept)] == kept
    assert all(_epochs(run, b) == [1, 2, 3] for b in range(6))


@pytest.mark.slow
def test_a_worker_told_a_claimed_block_says_who_holds_it_and_waits(tiny_run, tmp_path):
    from hwnas.supernet.claims import claim

    run = _fresh(tiny_run, tmp_path / "run")
    command = [*HWNAS, "distill", "--run", str(run), "--block", "0", "--epochs", "2"]
    with claim(run / "supernet" / "block0.lock") as held:  # this test is the other worker training block 0
        assert held
        waiting = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        said = waiting.stderr.readline()
        assert "block 0 of seed 0 is being trained by" in said and f":{os.getpid()}" in said and "waiting" in said
        time.sleep(1)
        assert waiting.poll() is None and not checkpoint_path(open_run(run), 0).exists()  # it waits, trains nothing
    waiting.communicate(timeout=900)
    assert waiting.returncode == 0 and _epochs(run, 0) == [1, 2]
    again = subprocess.run(command, capture_output=True, text=True, timeout=900)  # trained already: not again
    assert again.returncode == 0 and _epochs(run, 0) == [1, 2]


@pytest.mark.slow
def test_torchrun_across_two_nodes_trains_one_block(tiny_run, tmp_path):
    run = _fresh(tiny_run, tmp_path / "ddp")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
                               "--node_rank", str(rank), "--master_addr", "127.0.0.1", "--master_port", str(port),
                               "-m", "hwnas.cli", "distill", "--block", "2", "--epochs", "2", "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "HWNAS_RUN": str(run)}) for rank in (0, 1)]
    outputs = [node.communicate(timeout=900) for node in nodes]
    assert all(node.returncode == 0 for node in nodes), [err[-2000:] for _, err in outputs]
    assert _epochs(run, 2) == [1, 2]
    assert all('"block": 2' in out for out, _ in outputs)  # both nodes trained the same block together
