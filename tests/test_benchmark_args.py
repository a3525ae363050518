"""The benchmarks refuse bad arguments before any work, with a message that says what was wrong (exit status 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CASES = [
    ("ranking.py", ["--seeds", "1"], "--seeds >= 2"),
    ("ranking.py", ["--archs", "0", "--full-range-archs", "2"], "at least 3 architectures"),
    ("ranking.py", ["--full-range-archs", "1"], "--full-range-archs needs 0 or >= 2"),
    ("ranking.py", ["--test-copies", "-1"], "--test-copies must be >= 0"),
    ("ranking.py", ["--done-only", "--seeds", "1", "--work", "no/work"], "--done-only needs a rated run at no/work/run"),
    ("eval_noise.py", ["--seeds", "1"], "--seeds >= 2"),
    ("rating_variants.py", ["--result", "no/such/result.json"], "no ranking result at no/such/result.json"),
    ("rating_variants.py", ["--teacher-epochs", "0"], "--teacher-epochs must be >= 1"),
    ("rating_variants.py", ["--calibration-samples", "8"], "--calibration-samples must be >= 16"),
    ("budget_sweep.py", ["--budgets", "0"], "--budgets and --finalists must be >= 1"),
    ("budget_sweep.py", ["--table", "no/such/table.json"], "no latency table at no/such/table.json"),
    ("rating_reliability.py", ["--runs", "no/such/run"], "--runs needs >= 2 rated runs"),
    ("rating_reliability.py", ["--runs", "no/run1", "no/run2"], "no/run1 has no ratings.json"),
    ("rank_confidence.py", ["--resamples", "10"], "--resamples must be >= 100"),
    ("rank_confidence.py", ["--results", "no/such/result.json"], "no ranking result at no/such/result.json"),
    ("rank_confidence.py", ["--runs", "no/run1"], "no/run1 has no ratings.json"),
    ("distill_variants.py", ["--variant", "no-runs"], "a variant is NAME=RUN[,RUN...]"),
    ("distill_variants.py", ["--variant", "a=no/run1"], "give >= 2 variants with different names"),
    ("distill_variants.py", ["--variant", "a=no/run1", "--variant", "a=no/run2"], "give >= 2 variants"),
    ("distill_variants.py", ["--variant", "a=no/run1", "--variant", "b=no/run2"], "no/run1 has no ratings.json"),
    ("seed_combination.py", ["--triple", "no-runs"], "--triple wants NAME=RUN"),
    ("seed_combination.py", ["--triple", "a=no/run"], "no run at no/run"),
    ("seed_combination.py", ["--result", "no/such.json", "--triple", "a=no/run"], "no ranking result at no/such.json"),
    ("profile_fidelity.py", ["--refit"], "pass it with --table"),
    ("rank_scores.py", ["--truth", "no/such.json"], "--truth no/such.json does not exist"),
    ("rank_scores.py", ["--proxy-batch", "1"], "--proxy-batch must be >= 2"),
    ("int8_trained.py", ["--children", "0"], "--children must be >= 1 and --seed >= 0"),
    ("int8_trained.py", ["--truth", "no/such.json"], "--truth no/such.json does not exist"),
    ("int8_trained.py", ["--work", "no/work"], "no trained children of seed 0 with weights in no/work/children"),
    ("int8_trained.py", ["--seed", "-1"], "--children must be >= 1 and --seed >= 0"),
    ("int8_trained.py", ["--int8-finetune", "-1"], "--int8-finetune must be >= 0 steps"),
    ("rank_scores.py", ["--spos", "w", "--spos-epochs", "5"], "--spos-epochs >= 6"),
    ("rank_scores.py", ["--run", "no/run"], "no/run has no ratings.json"),
    ("rank_scores.py", ["--rescore", "no/such.json"], "--rescore no/such.json does not exist"),
    ("ground_truth.py", ["--device", "tpu"], "write 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    ("evolve_space.py", ["--work", "w", "--device", "tpu"], "write 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    ("progressive_rounds.py", ["--run", "r", "--name", "n", "--device", "tpu"], "write 'auto', 'cpu', 'cuda' or"),
    ("ground_truth.py", ["--seeds", "1"], "--seeds >= 2"),
    ("profile_fidelity.py", ["--calibrate", "3"], "--calibrate >= 4"),
    ("profile_fidelity.py", ["--name", "../elsewhere"], "not a path"),
    ("int8_weight_bits.py", ["--work", "w", "--children", "0"], "--children and --epochs must be >= 1"),
]


@pytest.mark.parametrize(("script", "args", "message"), CASES, ids=[f"{s}{' '.join(a)}" for s, a, _ in CASES])
def test_bad_benchmark_arguments_are_refused(script: str, args: list[str], message: str, tmp_path: Path) -> None:
    if script == "rating_variants.py" and "--result" not in args:
        result = ROOT / "benchmarks" / "results" / "ranking" / "ranking_full.json"
        args = [*args, "--result", str(result)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    results = ROOT / "benchmarks" / "results"
    before = {path: path.stat().st_mtime_ns for path in results.rglob("*")}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert not list(tmp_path.iterdir()), "a refused benchmark must not write anything"
    assert {path: path.stat().st_mtime_ns for path in results.rglob("*")} == before
    assert "Traceback" not in done.stderr


def test_a_refusal_after_parsing_exits_2_with_the_message(capsys: pytest.CaptureFixture[str]) -> None:
    from _common import refuse

    with pytest.raises(SystemExit) as exit_info:
        refuse("--done-only needs >= 3 architectures")
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: --done-only needs >= 3 architectures\n"


def test_rescoring_a_result_of_another_space_is_refused(tmp_path: Path) -> None:
    earlier = tmp_path / "earlier.json"
    earlier.write_text('{"space": "vit-tiny", "data": "digits", "archs": [], "scores": {}}')
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "rank_scores.py"), "--rescore", str(earlier)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert done.returncode == 2
    assert "scored vit-tiny on digits; the ground truth is mbconv-tiny-64 on glyphs" in done.stderr
