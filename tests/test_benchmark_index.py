"""The benchmark results index is generated from the result JSONs, and the committed one is up to date."""

import json
import subprocess
import sys
from pathlib import Path

from index import render, write_index

ROOT = Path(__file__).resolve().parents[1]


def test_the_committed_index_matches_the_results():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "index.py"), "--check"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_result_gets_its_row_and_a_stale_index_is_caught(tmp_path):
    folder = tmp_path / "ranking"
    folder.mkdir()
    result = {"benchmark": "ranking", "machine": {"cpu_model": "Test CPU"}, "archs": ["a", "b"],
              "test_accuracy_per_seed": [[0.9, 0.8]], "noise_ceiling_kendall_tau": 0.5,
              "methods": {"hwnas (DNA block-wise)": {"kendall_tau": 0.25}, "MACs (proxy)": {"kendall_tau": 0.125}},
              "targets": {"tau>=0.65": False, "noise_ceiling>=0.65": False}}
    (folder / "ranking_x.json").write_text(json.dumps(result))
    write_index(tmp_path)
    text = (tmp_path / "README.md").read_text()
    assert "| [ranking_x](ranking/ranking_x.json) | Test CPU | 2 archs x 1 seeds; tau hwnas 0.250, MACs 0.125; " \
           "ceiling 0.500 | 0/2 met; missed: tau>=0.65, noise_ceiling>=0.65 |" in text
    (folder / "ranking_y.json").write_text(json.dumps(result))
    assert render(tmp_path) != text  # a new result makes the written index stale
