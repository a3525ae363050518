"""Profilers: protocol, runtimes, table format, resume, predictor monotonicity."""

import json
import random
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from killing import kill_when

from profilers import LatencyStats, MissingRuntimeError, Protocol, get_runtime, measure
from profilers.predictor import LatencyPredictor, fit_calibration, validation_report
from profilers.profile import profile_space
from profilers.protocol import measure_batches
from profilers.table import LatencyTable
from profilers.targets import LocalTarget
from search_spaces import MBConvSpace, StageSpec, get_space
from search_spaces.mbconv import DNA_OPS

QUICK = Protocol.quick()


def micro_space() -> MBConvSpace:
    """A space small enough to profile in seconds (registered name so conversions can run in workers)."""
    return MBConvSpace("micro", stages=(StageSpec((16,), 2, (1, 2)), StageSpec((24, 32), 2, (1,))),
                       ops=DNA_OPS[:2], resolution=16, num_classes=4)


def test_stats_of_samples():
    stats = LatencyStats.of([float(v) for v in range(1, 101)])
    assert stats.min == 1 and stats.n == 100
    assert stats.p10 == pytest.approx(10.9) and stats.median == pytest.approx(50.5)
    again = LatencyStats.from_dict(stats.to_dict())
    assert again.n == stats.n and again.p90 == pytest.approx(stats.p90, abs=1e-6)


def test_stats_errors_are_clear():
    with pytest.raises(ValueError, match="no timed runs"):
        LatencyStats.of([])
    with pytest.raises(ValueError, match="need min, p10, median, p90, mean and n"):
        LatencyStats.from_dict({"min": 1})
    with pytest.raises(ValueError, match="unknown statistic 'p50'"):
        Protocol(statistic="p50")


def test_measure_interleaves_and_resumes_from_stored_batches():
    calls = {"a": 0, "b": 0}

    def runner(name):
        def run():
            calls[name] += 1
            time.sleep(0.0002 if name == "a" else 0.0004)
        return run

    protocol = Protocol(warmup_runs=2, runs_per_round=5, round_budget_s=1.0, min_runs_per_round=5, min_rounds=3,
                        max_rounds=3, rel_tol=0.5, min_span_s=0.0)
    stored = []
    stats = measure({"a": runner("a"), "b": runner("b")}, protocol, on_batch=lambda k, r, t: stored.append((k, r, t)))
    assert stats["a"].n == 15 and stats["b"].n == 15
    assert stats["a"].median < stats["b"].median
    assert sorted((k, r) for k, r, _ in stored) == [(k, r) for k in "ab" for r in range(3)]
    # resume: two rounds of 'a' already stored -> only one new batch of 'a' is run (plus warm-up)
    done = {"a": [t for k, r, t in stored if k == "a" and r < 2]}
    calls.update(a=0, b=0)
    again = measure({"a": runner("a"), "b": runner("b")}, protocol, done=done)
    assert calls["a"] == 2 + 5 and calls["b"] == 2 + 15
    assert again["a"].n == 15


def test_rounds_go_on_until_the_measurement_spans_min_span_s():
    # a perfectly steady timer: the statistic is stable from the second round, so only the span keeps rounds going
    rounds = []

    def timer(n):
        time.sleep(0.02)
        return [1.0] * n

    def count(protocol, **kwargs):
        rounds.clear()
        measure_batches({"a": timer}, {"a": 5}, protocol, on_round=lambda done, total: rounds.append(done), **kwargs)
        return len(rounds)

    assert count(Protocol(min_rounds=2, max_rounds=10, min_span_s=0.0)) == 2
    # long rounds span it at once: the stability rule alone decides, as without a span
    assert count(Protocol(min_rounds=2, max_rounds=10, min_span_s=0.01)) == 2
    # short rounds go on past max_rounds until the span is reached
    spanned = Protocol(min_rounds=2, max_rounds=4, min_span_s=0.3, span_max_rounds=500)
    started = time.monotonic()
    assert 4 < count(spanned) < 500 and time.monotonic() - started >= 0.3
    # up to span_max_rounds
    assert count(Protocol(min_rounds=2, max_rounds=4, min_span_s=60.0, span_max_rounds=6)) == 6
    # rounds restored from a killed run do not count toward the span: fresh timing must span it again
    fresh = []
    rounds.clear()
    measure_batches({"a": lambda n: fresh.append(time.monotonic()) or timer(n)}, {"a": 5}, spanned,
                    done={"a": [[1.0] * 5] * 8}, on_round=lambda done, total: rounds.append(done))
    assert len(rounds) > 8 and len(fresh) >= 2 and time.monotonic() - fresh[0] >= 0.3
    with pytest.raises(ValueError, match="min_span_s >= 0"):
        Protocol(min_span_s=-1)
    with pytest.raises(ValueError, match="span_max_rounds >= max_rounds"):
        Protocol(max_rounds=20, span_max_rounds=10)


@pytest.mark.parametrize("name", ["onnxruntime", "torch", "litert"])
def test_local_runtimes_measure_a_unit(name, tmp_path):
    space = get_space("mbconv-tiny")
    unit = space.all_units()[5]
    runtime = get_runtime(name)
    stats = LocalTarget(runtime).measure_modules({unit.key: (space.build_unit(unit), space.unit_input(unit))},
                                                 QUICK, tmp_path)
    assert 0 < stats[unit.key].min <= stats[unit.key].median <= stats[unit.key].p90
    meta = runtime.metadata()
    assert meta["threads"] == 1 and meta["precision"] == "fp32" and meta["runtime_version"]


def test_tensorrt_missing_says_how_to_install():
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(MissingRuntimeError, match="pip install 'hwnas\\[tensorrt\\]'"):
            get_runtime("tensorrt").version()
    else:
        pytest.skip("TensorRT is installed here; the GPU tests cover it")


def test_cuda_runtimes_refuse_clearly_without_a_gpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(MissingRuntimeError, match="NVIDIA GPU"):
        get_runtime("torch-cuda").compile({"x": (torch.nn.Identity(), torch.zeros(1))}, tmp_path)
    with pytest.raises(MissingRuntimeError, match="CUDAExecutionProvider"):
        get_runtime("onnxruntime-cuda").session(b"")


def test_runtime_argument_errors():
    with pytest.raises(ValueError, match="unknown runtime 'tvm'"):
        get_runtime("tvm")
    with pytest.raises(ValueError, match="threads must be >= 1"):
        get_runtime("onnxruntime", threads=0)
    with pytest.raises(ValueError, match="measures precisions fp32, int8, not 'fp16'"):
        get_runtime("onnxruntime", precision="fp16")


def test_profile_writes_a_complete_table_with_metadata(tiny_table):
    space = get_space("mbconv-tiny")
    table = LatencyTable.load(tiny_table, space)
    assert set(table.units) == {u.key for u in space.all_units()}
    meta = table.metadata
    for field in ("device_name", "cpu_model", "os", "runtime", "runtime_version", "accelerator", "threads",
                  "precision", "batch", "input_resolution", "space", "space_hash", "date", "hwnas_version",
                  "protocol", "statistic"):
        assert field in meta, field
    assert meta["threads"] == 1 and meta["batch"] == 1 and meta["input_resolution"] == 32
    assert table.overhead is not None and table.overhead.p10 > 0
    assert table.calibration["slope"] > 0
    report = table.validation
    assert report["n"] == 4 and 0 <= report["within_10pct"] <= 1 and report["remeasure_mean_abs_pct"] >= 0
    assert tiny_table.with_suffix(".validation.png").stat().st_size > 1000
    assert not (tiny_table.parent / f"{tiny_table.name}.work").exists()


def test_table_for_another_space_or_precision_fails_clearly(tiny_table):
    with pytest.raises(ValueError, match="measured for space='mbconv-tiny'.*hwnas profile --space mbconv "):
        LatencyTable.load(tiny_table, get_space("mbconv"))
    with pytest.raises(ValueError, match="precision='fp32'"):
        LatencyTable.load(tiny_table, get_space("mbconv-tiny"), precision="int8")


def test_an_int8_table_of_another_quantization_recipe_is_refused(tmp_path, tiny_table):
    from profilers import get_runtime

    data = json.loads(tiny_table.read_text())
    current = get_runtime("onnxruntime", 1, "int8").metadata()["quantization"]
    space = get_space("mbconv-tiny")
    for recipe, refused in ((current, False), ("qdq-older", True), (None, True)):
        meta = {**data["metadata"], "runtime": "onnxruntime", "precision": "int8", "quantization": recipe}
        path = tmp_path / "int8.json"
        path.write_text(json.dumps({**data, "metadata": {k: v for k, v in meta.items() if v is not None}}))
        if refused:
            with pytest.raises(ValueError, match=f"quantized by recipe {recipe or '.not recorded'}.*--precision int8"):
                LatencyTable.load(path, space, precision="int8")
        else:
            assert LatencyTable.load(path, space, precision="int8").metadata["quantization"] == current


def test_table_file_errors_are_clear(tmp_path, tiny_table):
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"format": "hwnas-latency-table", "units": {')
    with pytest.raises(ValueError, match="corrupt JSON"):
        LatencyTable.load(corrupt)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="not an hwnas latency table"):
        LatencyTable.load(other)
    newer = tmp_path / "newer.json"
    data = json.loads(tiny_table.read_text())
    newer.write_text(json.dumps({**data, "format_version": 99}))
    with pytest.raises(ValueError, match="format version 99"):
        LatencyTable.load(newer)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LatencyTable.load(tmp_path / "missing.json")


def test_predictor_is_a_sum_of_positive_unit_costs_that_the_combiner_reproduces(tiny_table):
    from hwnas.search.combiner import Combiner
    from hwnas.search.costs import latency_cost

    space = get_space("mbconv-tiny")
    table = LatencyTable.load(tiny_table, space)
    assert table.calibration["kind"] == "linear+layers" and table.calibration["per_layer"] >= 0
    predictor = LatencyPredictor(table, space)
    rng = random.Random(0)
    for arch in (space.sample(rng) for _ in range(50)):
        units = space.units(arch)
        parts = [predictor.calibrated_unit_cost(u.key) for u in units]
        assert all(p > 0 for p in parts)  # so the prediction grows with every unit's entry
        assert predictor.predict(arch) == pytest.approx(predictor.calibrated_base + sum(parts))
        intercept, slope, per_layer = (table.calibration[k] for k in ("intercept", "slope", "per_layer"))
        assert predictor.predict(arch) == pytest.approx(intercept + slope * predictor.raw(arch) + per_layer * len(units))
    cost = latency_cost(predictor)
    ratings = [{str(c): rng.random() for c in space.block_candidates(b)} for b in range(space.num_blocks)]
    front = Combiner(space, ratings, cost.unit_cost, cost.base).front
    for point in front[:: max(1, len(front) // 10)]:
        assert point.cost == pytest.approx(predictor.predict(point.arch))  # the combiner's cost is the prediction


def test_calibration_stays_increasing_even_on_anti_correlated_data():
    calibration = fit_calibration([1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0], ["a", "b", "c", "d"])
    assert calibration["slope"] > 0
    with pytest.raises(ValueError, match="at least 3"):
        fit_calibration([1.0], [1.0], ["a"])
    with pytest.raises(ValueError, match="at least 4"):
        fit_calibration([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], ["a", "b", "c"], layers=[1, 2, 3])


def test_calibration_on_few_noisy_networks_never_predicts_negative_latency():
    # 4 networks whose latencies barely differ and are mostly noise: an unconstrained fit finds a steep slope and a
    # negative intercept, predicting < 0 ms for shallow networks (what CI hit with a 4-network quick table)
    raw, layers = [0.20, 0.21, 0.22, 0.23], [9, 10, 9, 10]
    measured = [0.10, 0.22, 0.28, 0.41]
    unconstrained = np.linalg.lstsq(np.stack([np.ones(4), raw, layers], axis=1), measured, rcond=None)[0]
    assert unconstrained[0] + unconstrained[1] * 0.05 + unconstrained[2] * 8 < 0  # the failure this guards against
    calibration = fit_calibration(raw, measured, list("abcd"), layers, overhead=0.05, fewest_layers=8)
    intercept, slope, per_layer = (calibration[k] for k in ("intercept", "slope", "per_layer"))
    assert slope > 0 and per_layer >= 0 and calibration["fewest_layers"] == 8
    assert intercept + slope * 0.05 + per_layer * 8 >= -1e-12  # the shallowest network's fixed cost


def test_validation_warns_when_the_second_pass_drifted():
    measured = [0.20, 0.25, 0.30, 0.35]
    steady = validation_report(measured, measured, [m * 1.03 for m in measured], list("abcd"))
    assert "warning" not in steady and steady["remeasure_median_ratio"] == pytest.approx(1.03)
    # what the demo hit on a shared VM: every network read about 1.5x slower on the second pass
    drifted = validation_report(measured, measured, [m * 1.5 for m in measured], list("abcd"))
    assert drifted["remeasure_median_ratio"] == pytest.approx(1.5)
    assert "1.50x the first" in drifted["warning"] and "re-profile on a quiet machine" in drifted["warning"]


def test_calibration_recovers_a_per_layer_cost():
    rng = random.Random(0)
    raw = [rng.uniform(1, 10) for _ in range(20)]
    layers = [rng.randint(5, 25) for _ in range(20)]
    measured = [0.3 + 1.05 * r + 0.02 * n for r, n in zip(raw, layers)]
    calibration = fit_calibration(raw, measured, [str(i) for i in range(20)], layers)
    assert calibration["slope"] == pytest.approx(1.05) and calibration["per_layer"] == pytest.approx(0.02)
    assert calibration["intercept"] == pytest.approx(0.3) and calibration["layers"] == layers


def test_refit_keeps_the_measurements_and_updates_the_predictions(tiny_table, tmp_path):
    from profilers.profile import refit_calibration

    space = get_space("mbconv-tiny")
    table = LatencyTable.load(tiny_table, space)
    measured = list(table.validation["measured_ms"])
    table.calibration = {k: v for k, v in table.calibration.items() if k not in ("per_layer", "layers")}
    table.calibration["kind"] = "linear"
    refit_calibration(table, space)
    assert table.calibration["kind"] == "linear+layers" and table.validation["measured_ms"] == measured
    predictor = LatencyPredictor(table, space)
    assert table.validation["predicted_ms"] == pytest.approx(
        [predictor.predict(space.parse(a)) for a in table.validation["archs"]])
    del table.calibration["measured_ms"]
    with pytest.raises(ValueError, match="no stored calibration measurements"):
        refit_calibration(table, space)


def test_predict_for_a_unit_missing_from_the_table_says_so(tiny_table):
    space = get_space("mbconv-tiny")
    table = LatencyTable.load(tiny_table, space)
    arch = space.sample(random.Random(1))
    missing = space.units(arch)[1].key
    del table.units[missing]
    with pytest.raises(KeyError, match="not in this table"):
        LatencyPredictor(table, space).raw(arch)


PROFILE_SCRIPT = """
import sys
from profilers import Protocol, get_runtime
from profilers.profile import profile_space
from search_spaces import get_space
# every batch takes about round_budget_s (runs_per_round never binds): 440 batches of ~10-20 ms leave the kill
# seconds to land in, however fast the machine and its disk are
protocol = Protocol(warmup_runs=5, runs_per_round=100_000, round_budget_s=0.02, min_runs_per_round=5, min_rounds=4,
                    max_rounds=4, rel_tol=0.01, min_span_s=0.0)
profile_space(get_space("mbconv-tiny"), get_runtime("onnxruntime"), sys.argv[1], protocol, show_progress=False)
"""


def test_killed_profile_resumes_and_finishes(tmp_path):
    out = tmp_path / "table.json"
    database = tmp_path / "table.json.work" / "samples.sqlite"

    def stored() -> int:
        if not database.exists():  # connecting would create it
            return 0
        try:
            return sqlite3.connect(database).execute("SELECT count(*) FROM batches").fetchone()[0]
        except sqlite3.OperationalError:  # the table is not created yet
            return 0

    kill_when([sys.executable, "-c", PROFILE_SCRIPT, str(out)], lambda: stored() >= 150)
    assert not out.exists(), "the profile finished before it could be killed; make it longer"
    assert stored() >= 150
    before = sqlite3.connect(database).execute("SELECT key, round, times FROM batches").fetchall()
    result = subprocess.run([sys.executable, "-c", PROFILE_SCRIPT, str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    table = LatencyTable.load(out, get_space("mbconv-tiny"))
    assert len(table.units) == len(get_space("mbconv-tiny").all_units())
    # every unit has 4 rounds of runs: the batches stored before the kill were kept, not measured again
    kept = {(k.removeprefix("unit:"), r) for k, r, _ in before}
    assert len(kept) == len(before)
    assert all(stats.n >= 4 * 5 for stats in table.units.values())


def test_resuming_with_other_settings_is_refused(tmp_path):
    out = tmp_path / "t.json"
    space = micro_space()
    work = tmp_path / "t.json.work"
    from profilers.profile import SampleStore

    SampleStore(work / "samples.sqlite", {"settings": 1}).close()
    with pytest.raises(ValueError, match="other settings"):
        profile_space(space, get_runtime("onnxruntime"), out, QUICK, show_progress=False)


def test_pytorch_eager_profiles_its_units_in_process_and_refuses_a_remote_target(tmp_path):
    # torch (and torch-cuda on a GPU) have no model file: the units are built and timed in this process
    space = get_space("mbconv-tiny")
    out = tmp_path / "torch.json"
    table = profile_space(space, get_runtime("torch"), out, QUICK, calibrate=4, validate=2, show_progress=False)
    assert set(table.units) == {u.key for u in space.all_units()} and table.overhead.p10 > 0
    assert table.metadata["runtime"] == "torch" and table.metadata["accelerator"] == "cpu"
    assert LatencyTable.load(out, space).validation["n"] == 2
    with pytest.raises(ValueError, match="no model file to send to http://127.0.0.1:9"):
        profile_space(space, get_runtime("torch"), tmp_path / "r.json", QUICK, target_url="http://127.0.0.1:9",
                      show_progress=False)


def test_networks_are_converted_once_in_parallel_and_reused_by_the_re_measure(tmp_path):
    from profilers.profile import export_archs, measure_archs, sample_distinct

    space, runtime = get_space("mbconv-tiny"), get_runtime("onnxruntime")
    archs = sample_distinct(space, 3, seed=5)
    serial = export_archs(space, runtime, archs[:1], tmp_path / "serial")
    refs = export_archs(space, runtime, archs, tmp_path / "files", jobs=2)  # converted by two worker processes
    assert set(refs) == {str(a) for a in archs} and all(r.path.stat().st_size > 1000 for r in refs.values())
    import onnx

    def ops(path):
        return [node.op_type for node in onnx.load(str(path)).graph.node]

    assert ops(refs[str(archs[0])].path) == ops(serial[str(archs[0])].path)  # the same network (weights are random)
    stamps = {key: ref.path.stat().st_mtime_ns for key, ref in refs.items()}
    target = LocalTarget(runtime)
    first = measure_archs(space, archs, target, Protocol.quick(), tmp_path, files=tmp_path / "files", jobs=2)
    second = measure_archs(space, archs[1:], target, Protocol.quick(), tmp_path, files=tmp_path / "files")
    assert all(v > 0 for v in first + second)
    assert {key: ref.path.stat().st_mtime_ns for key, ref in refs.items()} == stamps  # nothing converted again
    assert sorted(p.name for p in (tmp_path / "files").iterdir()) == sorted(r.path.name for r in refs.values())
    (new,) = sample_distinct(space, 1, seed=6, exclude=archs)
    measure_archs(space, [new], target, Protocol.quick(), tmp_path, files=tmp_path / "files")
    assert len(list((tmp_path / "files").iterdir())) == len(archs) + 1  # a new network's file is kept there
