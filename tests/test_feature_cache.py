"""The teacher feature cache shared by processes: built once, read by all."""

import multiprocessing

import numpy as np
import torch

from hwnas.data import load_data
from hwnas.run import open_run
from hwnas.supernet.features import TeacherFeatures
from hwnas.supernet.teacher import open_teacher


def _read_cache(run_path, cache_dir, barrier, results) -> None:
    torch.set_num_threads(1)
    run = open_run(run_path)
    features = TeacherFeatures(open_teacher(run), load_data(run.config.data, run.space.resolution), cache_dir,
                               show_progress=False)
    barrier.wait()  # both processes find the cache missing at the same moment
    values = features.get("val", 2, torch.arange(32)).numpy()
    results.put((features.built, values))


def test_processes_sharing_a_cache_build_it_once_and_read_the_same_features(tiny_run, tmp_path):
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_read_cache, args=(tiny_run, tmp_path / "cache", barrier, results))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    found = [results.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert sorted(len(built) for built, _ in found) == [0, 1]  # one built the split, the other waited and read it
    run = open_run(tiny_run)
    live = TeacherFeatures(open_teacher(run), load_data(run.config.data, run.space.resolution), None,
                           show_progress=False).get("val", 2, torch.arange(32)).numpy()
    for _, values in found:
        np.testing.assert_allclose(values, live, rtol=1e-4, atol=1e-5)
    assert not list((tmp_path / "cache" / "val").glob("*.tmp"))
