"""Android phones through adb and TFLite's benchmark_model: output parsing, run reconstruction, and a profile.

No Android device or emulator can run here, so tests/android_standin/ stands in for adb (a folder plays the phone's
file system); the benchmark_model stand-in really runs each model with LiteRT and prints benchmark_model's documented
output format, so the numbers measured are real and only the transport is stood in for.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from profilers import Protocol, get_runtime
from profilers.adb_target import AdbError, AdbTarget, parse_benchmark_output, parse_target, runs_from_quantiles
from profilers.targets import open_target

STANDIN = Path(__file__).parent / "android_standin"

# benchmark_model's output as documented (the timed-run line comes last; the warm-up line before it)
CURRENT = """INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds.
INFO: count=9 first=87112 curr=51629 min=51629 max=87112 avg=58147.4 std=11478 p5=51629 median=51962 p95=87112

INFO: Running benchmark for at least 1000 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=1000 first=52162 curr=49785 min=49088 max=686105 avg=63743.2 std=60716 p5=49620 median=51891 p95=68628

INFO: Inference timings in us: Init: 119515, First inference: 87112, Warmup (avg): 58147.4, Inference (avg): 63743.2
"""
OLDER = "Timings (microseconds): count=50 first=79449 curr=81350 min=77385 max=88213 avg=79732 std=1929\n"


def test_benchmark_model_output_is_parsed_from_the_timed_line():
    stats = parse_benchmark_output(CURRENT)
    assert stats == {"count": 1000, "min": 49088, "max": 686105, "avg": 63743.2, "p5": 49620, "median": 51891,
                     "p95": 68628}
    with pytest.raises(AdbError, match="no percentiles"):
        parse_benchmark_output(OLDER)
    with pytest.raises(AdbError, match="no timing statistics"):
        parse_benchmark_output("ERROR: Could not open '/data/local/tmp/x.tflite'.\n")


def test_runs_rebuilt_from_quantiles_keep_count_and_quantiles():
    stats = parse_benchmark_output(CURRENT)
    runs = runs_from_quantiles(stats)
    assert len(runs) == 1000 and runs == sorted(runs)
    assert runs[0] >= 49.088 and runs[-1] <= 686.105
    assert sorted(runs)[500] == pytest.approx(51.891, rel=2e-3)  # the median survives
    assert sorted(runs)[50] == pytest.approx(49.620, rel=2e-3)  # and p5


def test_target_strings_and_clear_errors(tmp_path):
    assert parse_target("adb:R58M123") == "R58M123" and parse_target("adb:") is None
    with pytest.raises(ValueError, match="adb:SERIAL"):
        parse_target("android:R58M")
    with pytest.raises(ValueError, match="--runtime litert"):
        AdbTarget(get_runtime("onnxruntime"), "x", adb=str(STANDIN / "adb"))
    with pytest.raises(AdbError, match="adb not found"):
        AdbTarget(get_runtime("litert"), "x", adb=str(tmp_path / "no-adb"))


@pytest.fixture()
def phone(tmp_path, monkeypatch):
    """A stood-in phone with benchmark_model pushed to /data/local/tmp; adb and the binary use this Python."""
    root = tmp_path / "phone"
    (root / "data" / "local" / "tmp").mkdir(parents=True)
    tools = tmp_path / "tools"
    tools.mkdir()
    for name, where in (("adb", tools / "adb"), ("benchmark_model", root / "data/local/tmp/benchmark_model")):
        text = (STANDIN / name).read_text().split("\n", 1)[1]
        where.write_text(f"#!{sys.executable}\n{text}")
        where.chmod(0o755)
    monkeypatch.setenv("HWNAS_STANDIN_ROOT", str(root))
    monkeypatch.setenv("HWNAS_STANDIN_SERIAL", "standin-1")
    monkeypatch.setenv("HWNAS_ADB", str(tools / "adb"))
    return root


@pytest.mark.slow
def test_units_are_pushed_and_timed_on_the_device_in_rounds(phone, tmp_path):
    target = open_target(get_runtime("litert"), "adb:standin-1")
    device = target.device()
    assert device["device_name"] == "Standin Phone 1" and device["cpu_model"] == "SM8550"
    # its cores from /proc/cpuinfo: every part of the big.LITTLE set, and the int8 dot-product features
    assert device["cpu_id"] == "implementer 0x41 part 0xd46,0xd4d,0xd4e variant 0x0"
    assert device["cpu_features"] == ["asimd", "asimdhp", "asimddp", "i8mm", "bf16"]
    assert device["os"] == "Android 14" and "benchmark_model" in device["measured_by"]
    small = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU())
    large = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3), torch.nn.ReLU(), torch.nn.Conv2d(64, 64, 3))
    example = torch.zeros(1, 3, 32, 32)
    protocol = Protocol(warmup_runs=2, runs_per_round=20, min_rounds=2, max_rounds=3, min_span_s=0.0)
    stats = target.measure_modules({"small": (small, example), "large": (large, example)}, protocol, tmp_path)
    assert 40 <= stats["small"].n <= 60 and stats["large"].median > 2 * stats["small"].median
    pushed = list((phone / "data/local/tmp/hwnas").iterdir())
    assert len(pushed) == 2 and all(p.suffix == ".tflite" for p in pushed)


def test_missing_binary_and_unknown_serial_say_what_to_do(phone):
    (phone / "data/local/tmp/benchmark_model").unlink()
    with pytest.raises(AdbError, match="no executable benchmark_model"):
        open_target(get_runtime("litert"), "adb:standin-1").device()
    with pytest.raises(AdbError, match="adb devices"):
        open_target(get_runtime("litert"), "adb:other-phone").device()


@pytest.mark.slow
def test_measure_command_runs_a_network_on_the_phone(phone):
    arch = "24:e3k3|40:e3k3|80:e3k3|96:e3k3|160:e3k3|320:e3k3"
    done = subprocess.run([sys.executable, "-m", "hwnas.cli", "measure", "--space", "mbconv-tiny", "--runtime",
                           "litert", "--arch", arch, "--target", "adb:standin-1", "--quick", "--json"],
                          capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["device"]["device_name"] == "Standin Phone 1" and payload["latency_ms"]["median"] > 0
    assert payload["latency_ms"]["n"] >= 2 * 20  # at least min_rounds invocations of the quick protocol


@pytest.mark.slow
def test_export_measures_the_tflite_file_on_the_phone(phone, tiny_run, tmp_path):
    """``hwnas export --target adb:SERIAL``: the exported TFLite file is pushed and timed on the phone; an ONNX file
    cannot run there and says so."""
    arch = "24:e3k3|40:e3k3|80:e3k3|96:e3k3|160:e3k3|320:e3k3"
    base = [sys.executable, "-m", "hwnas.cli", "export", "--run", str(tiny_run), "--arch", arch, "--quick", "--json",
            "--target", "adb:standin-1"]
    done = subprocess.run(base + ["--format", "tflite", "--out", str(tmp_path / "ship")], capture_output=True,
                          text=True, env=os.environ.copy(), timeout=600)
    assert done.returncode == 0, done.stderr
    (item,) = json.loads(done.stdout)["exports"]
    assert item["latency"]["device"]["device_name"] == "Standin Phone 1" and item["latency"]["measured_ms"] > 0
    pushed = list((phone / "data/local/tmp/hwnas").iterdir())
    assert any(p.read_bytes() == Path(item["file"]).read_bytes() for p in pushed)
    refused = subprocess.run(base + ["--format", "onnx", "--out", str(tmp_path / "onnx")], capture_output=True,
                             text=True, env=os.environ.copy(), timeout=600)
    assert refused.returncode == 2 and "--runtime litert" in refused.stderr and "Traceback" not in refused.stderr
