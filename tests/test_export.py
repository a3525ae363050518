"""hwnas train and export: parity with PyTorch, the report's contents, and clear errors."""

import json
from pathlib import Path

import pytest
import torch

from hwnas.data import load_data
from hwnas.run import open_run
from hwnas.ship.child import ExportSettings, export_child, load_child, train_child
from hwnas.ship.export import Calibration, export_file
from hwnas.training import TrainConfig
from profilers import MissingRuntimeError, Protocol
from profilers.machine import describe_processor, device_metadata
from profilers.onnxruntime_runtime import u8s8_saturates

ARCH = "24:e6k3|40:e3k5|80:e6k3|96:e3k3|160:e3k5|320:e6k3"


@pytest.fixture(scope="module")
def trained(tiny_run):
    run = open_run(tiny_run)
    return train_child(run, ARCH, TrainConfig(epochs=2, distill_weight=0.5), distill=True, init_supernet=True,
                       show_progress=False)


def test_training_reports_accuracy_and_uses_the_supernet(trained, tiny_run):
    assert 0 <= trained["test_accuracy"] <= 1 and len(trained["history"]) == 2
    assert trained["layers_from_supernet"] == 6
    saved = torch.load(trained["weights"], weights_only=False)
    assert saved["arch"] == ARCH


def test_onnx_and_tflite_fp32_match_pytorch_on_the_test_split(trained, tiny_run, tmp_path, tiny_table):
    run = open_run(tiny_run)
    typed = export_child(run, ARCH, [("onnx", "fp32"), ("tflite", "fp32")], tmp_path, trained["weights"],
                         ExportSettings(tables=(tiny_table,), budget_ms=10.0, protocol=Protocol.quick(),
                                        budget_runtime="onnxruntime"))
    assert typed.arch == run.space.parse(ARCH) and typed.exports[0].measured_ms > 0
    report = typed.to_dict()
    for item in report["exports"]:
        parity = item["parity"]
        assert parity["samples"] == 360 and parity["split"] == "test"
        assert parity["max_abs_diff"] <= 1e-4 and parity["top1_agreement"] == 1.0
        assert item["latency"]["measured_ms"] > 0
        assert item["size_bytes"] > 10_000
    # the budget is the ONNX Runtime table's: checked on the ONNX file only, not held against LiteRT's latency
    assert [item["within_budget"] for item in report["exports"]] == [True, None]
    onnx_ms = report["exports"][0]["latency"]["measured_ms"]
    assert report["exports"][0]["over_budget_pct"] == pytest.approx(100 * (onnx_ms / 10.0 - 1))
    assert report["exports"][0]["over_budget_pct"] < 0 and report["exports"][1]["over_budget_pct"] is None
    assert report["budget_runtime"] == "onnxruntime"
    onnx = report["exports"][0]
    assert onnx["predicted_ms"] > 0 and "prediction_error_pct" in onnx
    saved = json.loads(open(report["report_files"][0]).read())
    assert saved["arch"] == ARCH and len(saved["exports"]) == 2
    markdown = open(report["report_files"][1]).read()
    assert "| onnx | fp32 |" in markdown and "| tflite | fp32 |" in markdown
    assert f"| met ({report['exports'][0]['over_budget_pct']:+.1f}%) |" in markdown
    assert "Budget: 10 ms, checked on the onnxruntime files only." in markdown
    # the table was profiled on this machine: no warning, and the report names the processor with its features
    assert report["exports"][0]["latency"]["table_from_other_machine"] is None and "Warning" not in markdown
    assert f"({describe_processor(device_metadata())}), 1 thread" in markdown


def test_int8_tflite_is_quantized_and_reports_the_accuracy_change(trained, tiny_run, tmp_path):
    run = open_run(tiny_run)
    report = export_child(run, ARCH, [("tflite", "int8")], tmp_path, trained["weights"],
                          ExportSettings(measure=False)).to_dict()
    (item,) = report["exports"]
    assert item["precision"] == "int8" and 0 <= item["parity"]["top1_agreement"] <= 1
    p = item["parity"]  # agreement split by whether PyTorch is right: the two parts average to the whole
    wrong = p["top1_agreement_where_torch_wrong"] or 0.0
    assert p["top1_agreement"] == pytest.approx(p["accuracy_torch"] * p["top1_agreement_where_torch_right"]
                                                + (1 - p["accuracy_torch"]) * wrong)
    assert "accuracy_change" in item and report["onnx_int8_calibration"] is None  # no int8 ONNX file
    stem = item["int8_stem"]  # decided on the calibration images: in float only where a channel would be erased
    assert stem["choice"] == "auto" and stem["layers"] and stem["in_float"] == (stem["narrowest_channel_steps"] < 8)
    assert f"int8 tflite: {stem['description']}." in open(report["report_files"][1]).read()
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=item["file"])
    assert interpreter.get_input_details()[0]["dtype"].__name__ == "int8"


def test_an_int8_onnx_file_can_be_calibrated_on_percentiles_with_its_stem_in_float_and_the_report_says_so(
        trained, tiny_run, tmp_path):
    import onnx

    run = open_run(tiny_run)
    report = export_child(run, ARCH, [("onnx", "int8")], tmp_path, trained["weights"],
                          ExportSettings(measure=False, parity_limit=50,
                                         calibration=Calibration(onnx_method="percentile", stem="float")))
    (item,) = report.exports
    assert item.parity["samples"] == 50 and item.parity["top1_agreement"] >= 0.8
    assert report.to_dict()["onnx_int8_calibration"] == "percentile"
    assert item.int8_stem["in_float"] and item.int8_stem["narrowest_channel_steps"] is None  # asked for, not measured
    graph = onnx.load(str(item.file)).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert convs[0].input[0] not in dequantized and convs[-1].input[0] in dequantized  # the stem reads float input
    text = report.report_files[1].read_text()
    assert "int8 ONNX activation ranges calibrated by percentile" in text
    assert "int8 onnx: image stem kept in float (float)." in text


def test_int8_is_measured_beside_fp32_and_its_ratio_reported(trained, tiny_run, tmp_path, caplog):
    # int8 ONNX (static QDQ) and TFLite asked for alone: each is measured beside the fp32 file of its format, the
    # TFLite files also with LiteRT's built-in kernels, and the report gives int8/fp32 ratios from those measurements
    import logging

    import onnx

    logger = logging.getLogger("hwnas")  # the CLI's tests leave it unpropagated: listen on it directly
    logger.addHandler(caplog.handler)
    try:
        report = export_child(open_run(tiny_run), ARCH, [("onnx", "int8"), ("tflite", "int8")], tmp_path,
                              trained["weights"], ExportSettings(protocol=Protocol.quick(), parity_limit=100,
                                                                 budget_ms=1000.0, budget_runtime="onnxruntime",
                                                                 budget_precision="int8"))
    finally:
        logger.removeHandler(caplog.handler)
    assert [(e.format, e.precision) for e in report.exports] == [
        ("onnx", "fp32"), ("onnx", "int8"), ("tflite", "fp32"), ("tflite", "int8")]
    by = {(e.format, e.precision): e for e in report.exports}
    quantized_ops = {node.op_type for node in onnx.load(str(by["onnx", "int8"].file)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= quantized_ops
    for fmt in ("onnx", "tflite"):
        int8, fp32 = by[fmt, "int8"], by[fmt, "fp32"]
        assert int8.parity["top1_agreement"] >= 0.8 and int8.parity["samples"] == 100
        assert int8.vs_fp32 == pytest.approx(int8.measured_ms / fp32.measured_ms) and fp32.vs_fp32 is None
        slower = f"int8 {fmt} is slower than fp32 here" in caplog.text
        assert slower == (int8.vs_fp32 > 1)
    assert set(by["tflite", "int8"].other_kernels) == {"litert-builtin"} and not by["onnx", "int8"].other_kernels
    assert by["tflite", "int8"].other_kernels["litert-builtin"] > 0
    # a budget on the precision that ships: checked on the int8 ONNX Runtime file, not on the fp32 file beside it
    assert [(e.format, e.precision) for e in report.exports if e.within_budget is not None] == [("onnx", "int8")]
    assert "Budget: 1000 ms, checked on the onnxruntime int8 files only." in report.report_files[1].read_text()
    saved = json.loads(report.report_files[0].read_text())
    assert saved["exports"][1]["int8_vs_fp32"] == pytest.approx(by["onnx", "int8"].vs_fp32)
    # 7-bit ONNX weights where this machine (the target) has ONNX Runtime's saturating int8 kernels, and said so
    seven = u8s8_saturates(device_metadata())
    assert saved["exports"][1]["int8_weight_bits"] == (7 if seven else 8) and by["tflite", "int8"].int8_weight_bits is None
    assert ("int8 onnx: 7-bit weights" in report.report_files[1].read_text()) == seven
    assert f"int8 onnx: {by['onnx', 'int8'].vs_fp32:.2f}x the fp32 file's latency" in report.report_files[1].read_text()


def test_files_exported_for_an_agent_are_compared_with_pytorch_as_the_agent_runs_them(trained, tiny_run, tmp_path):
    # a real agent on loopback: the int8 ONNX file's parity comes from the agent's /outputs (its kernels decide the
    # rounding), named in the report; here the agent is this machine, so the numbers equal a local check's
    import threading

    from profilers.agent import AgentServer

    agent = AgentServer("127.0.0.1", 0, max_bytes=3_000_000)  # the 360 test images (4.4 MB) go in several requests
    threading.Thread(target=agent.serve_forever, daemon=True).start()
    try:
        remote = export_child(open_run(tiny_run), ARCH, [("onnx", "int8")], tmp_path / "remote", trained["weights"],
                              ExportSettings(protocol=Protocol.quick(), target=agent.url))
    finally:
        agent.shutdown()
        agent.server_close()
    local = export_child(open_run(tiny_run), ARCH, [("onnx", "int8")], tmp_path / "local", trained["weights"],
                         ExportSettings(measure=False))
    there, here = remote.exports[-1].parity, local.exports[0].parity
    assert there["run_on"] == agent.url and here["run_on"] == "this machine" and there["samples"] == 360
    assert there["top1_agreement"] == here["top1_agreement"]
    assert there["max_abs_diff"] == pytest.approx(here["max_abs_diff"], rel=1e-6)
    assert remote.exports[-1].latency["device"]["agent_url"] == agent.url
    assert f"Outputs compared with PyTorch as run on: {agent.url}." in remote.report_files[1].read_text()
    assert "Outputs compared" not in local.report_files[1].read_text()


def test_simulated_int8_rounds_what_the_int8_runtimes_round(trained, tiny_run):
    # weights: at most 256 levels per output channel; a module's output and an activation's input: at most 256
    # levels; a convolution's output that goes into its BatchNorm is not rounded (the runtimes fold the two)
    from hwnas.ship.int8_finetune import SimulatedInt8

    run = open_run(tiny_run)
    model, _ = load_child(run, run.space.parse(ARCH), trained["weights"])
    images = load_data("digits", run.space.resolution).tensors("train")[0]
    simulation = SimulatedInt8(model, images[:1])
    simulation.calibrate(images[:128])
    seen: dict[str, torch.Tensor] = {}
    network = simulation.model
    hooks = [network.conv_stem.register_forward_hook(lambda m, i, o: seen.update(stem=o)),
             network.bn1.register_forward_hook(lambda m, i, o: seen.update(bn1=o)),
             network.blocks[1][0].conv_pwl.register_forward_hook(lambda m, i, o: seen.update(pwl_input=i[0])),
             network.blocks[1][0].conv_pwl.register_forward_hook(lambda m, i, o: seen.update(pwl_weight=m.weight))]
    with torch.no_grad():
        exact, simulated = model(images[:8]), network(images[:8])
    for hook in hooks:
        hook.remove()
    assert all(len(channel.unique()) <= 256 for channel in seen["pwl_weight"])
    assert len(seen["bn1"].unique()) <= 256 and len(seen["pwl_input"].unique()) <= 256
    assert len(seen["stem"].unique()) > 256  # into bn1: left alone
    assert 0 < (simulated - exact).abs().mean() < 0.5 * exact.abs().mean()
    simulation.enabled = False  # weights still rounded, activations not
    with torch.no_grad():
        weights_only = network(images[:8])
    assert 0 < (weights_only - exact).abs().mean() < (simulated - exact).abs().mean()


def test_simulated_int8_rounds_a_residual_sum_and_passes_rounded_tensors_on():
    # a block's residual sum is a new tensor the runtime stores: rounded (two rounded tensors on different ranges add
    # to more than 256 levels); a container passing its last module's output on rounds nothing again
    from hwnas.ship.int8_finetune import SimulatedInt8
    from search_spaces import get_space

    space = get_space("mbconv-tiny")
    model = space.build(space.parse("24:e6k3|40:e3k5,e6k3|80:e6k3|96:e3k3|160:e3k5|320:e6k3")).eval()
    images = load_data("digits", space.resolution).tensors("train", 64)[0]
    simulation = SimulatedInt8(model, images[:1])
    simulation.calibrate(images)
    block = simulation.model.blocks[2][1]
    assert block.has_skip
    seen: dict[str, torch.Tensor] = {}
    hooks = [block.register_forward_hook(lambda m, i, o: seen.update(sum=o, shortcut=i[0])),
             block.bn3.register_forward_hook(lambda m, i, o: seen.update(branch=o)),
             simulation.model.blocks[2].register_forward_hook(lambda m, i, o: seen.update(stage=o))]
    with torch.no_grad():
        simulation.model(images[:16])
    for hook in hooks:
        hook.remove()
    assert len(seen["sum"].unique()) <= 256
    assert len((seen["branch"] + seen["shortcut"]).unique()) > 256  # what the sum would be without its own rounding
    assert seen["stage"] is seen["sum"]  # the stage (a Sequential) passed the block's rounded output on as it was


def test_int8_calibration_and_finetuning_read_only_the_images_they_use():
    # an ImageNet folder must not be read whole to calibrate 128 images: count what each split hands out
    from hwnas.ship.export import _calibration_images
    from hwnas.ship.int8_finetune import Int8Finetune, finetune_for_int8
    from search_spaces import get_space

    class Counted(torch.utils.data.Dataset):
        def __init__(self, inner):
            self.inner, self.read = inner, []

        def __len__(self):
            return len(self.inner)

        def __getitem__(self, index):
            self.read.append(index)
            return self.inner[index]

    space = get_space("mbconv-tiny")
    bundle = load_data("digits", space.resolution)
    bundle.datasets = {split: Counted(data) for split, data in bundle.datasets.items()}
    assert len(_calibration_images(bundle, 16, "int8")) == 16 and bundle.datasets["train"].read == list(range(16))
    bundle.datasets["train"].read.clear()
    model = space.build(space.parse(ARCH)).eval()
    finetune_for_int8(model, bundle, Int8Finetune(steps=3, batch_size=8, calibration_samples=16, check_samples=40))
    assert len(bundle.datasets["train"].read) == 16 + 3 * 8  # the calibration images, then three batches
    assert sorted(set(bundle.datasets["val"].read)) == list(range(40))  # the choice on the first 40 only
    assert not bundle.datasets["test"].read


def test_int8_files_can_come_from_weights_finetuned_for_int8(trained, tiny_run, tmp_path):
    from hwnas.ship.int8_finetune import Int8Finetune, finetune_for_int8

    run = open_run(tiny_run)
    model, _ = load_child(run, run.space.parse(ARCH), trained["weights"])
    original = {k: v.clone() for k, v in model.state_dict().items()}
    bundle = load_data("digits", run.space.resolution)
    tuned, summary = finetune_for_int8(model, bundle, Int8Finetune(steps=60))
    # kept only where its simulated int8 agrees better on the validation split
    after, before = summary["simulated_agreement_after"], summary["simulated_agreement_before"]
    assert summary["kept"] == ("fine-tuned" if after > before else "original") and (tuned is model) == (after <= before)
    if tuned is model:  # look at the fine-tuned network anyway
        tuned, _ = finetune_for_int8(model, bundle, Int8Finetune(steps=60, always_keep=True))
    # a plain copy of the network: same modules and keys, no hooks left, new weights; the original untouched
    assert [type(m) for m in tuned.modules()] == [type(m) for m in model.modules()]
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in tuned.modules())
    assert tuned.state_dict().keys() == original.keys()
    assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items())
    assert not torch.equal(tuned.state_dict()["conv_stem.weight"], original["conv_stem.weight"])
    assert summary["steps"] == 60 and 0 <= summary["simulated_agreement_after"] <= 1

    # how much it gains is measured in benchmarks/int8_trained.py (trained glyphs children), not here
    # the export (from the command line): int8 files from the tuned weights, parity against the original network
    import subprocess
    import sys

    out = tmp_path / "ship"
    result = subprocess.run([sys.executable, "-m", "hwnas.cli", "export", "--run", str(tiny_run), "--arch", ARCH,
                             "--weights", str(trained["weights"]), "--format", "onnx", "--precision", "int8",
                             "--int8-finetune", "5", "--no-measure", "--out", str(out), "--json"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    (int8,) = report["exports"]
    images, labels = bundle.tensors("test")
    with torch.no_grad():
        original_accuracy = float((model(images).argmax(1) == labels).float().mean())
    assert int8["precision"] == "int8" and int8["parity"]["accuracy_torch"] == pytest.approx(original_accuracy)
    assert report["int8_finetune"]["steps"] == 5 and report["int8_finetune"]["kept"] in ("fine-tuned", "original")
    assert "(5 steps; simulated int8 top-1 agreement on the val split" in Path(report["report_files"][1]).read_text()


def test_export_without_weights_recalibrates_batchnorm(tiny_run):
    run = open_run(tiny_run)
    model, note = load_child(run, run.space.parse(ARCH), None)
    assert "BatchNorm re-estimated" in note
    norm = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert not torch.allclose(norm.running_mean, torch.zeros_like(norm.running_mean))


def test_broken_requests_are_clear_errors(tiny_run, tmp_path, trained):
    run = open_run(tiny_run)
    space = run.space
    model = space.build(space.parse(ARCH))
    with pytest.raises(ValueError, match="onnx export supports precision fp32, int8, not 'fp16'"):
        export_file(model, space, "onnx", "fp16", tmp_path, "x", None)
    with pytest.raises(ValueError, match="int8 export needs calibration data"):
        export_file(model, space, "onnx", "int8", tmp_path, "x", None)
    with pytest.raises(ValueError, match="int8 export needs calibration data"):
        export_file(model, space, "tflite", "int8", tmp_path, "x", None)
    with pytest.raises(ValueError, match="unknown format 'coreml'"):
        export_file(model, space, "coreml", "fp32", tmp_path, "x", None)
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(MissingRuntimeError, match="TensorRT is not installed"):
            export_file(model, space, "tensorrt", "fp16", tmp_path, "x", load_data("digits", 32))
    other = "24:e3k3|40:e3k5|80:e6k3|96:e3k3|160:e3k5|320:e6k3"
    with pytest.raises(ValueError, match="holds weights of"):
        load_child(run, space.parse(other), trained["weights"])
    with pytest.raises(FileNotFoundError, match="no weights at"):
        load_child(run, space.parse(ARCH), tmp_path / "missing.pt")


def test_a_vit_child_exports_to_onnx_and_tflite_with_parity(tmp_path):
    # the ViT space's children (timm VisionTransformer: attention, LayerNorm, GELU) convert as the CNN's do
    from hwnas.ship.export import parity
    from search_spaces import get_space

    space = get_space("vit-tiny")
    arch = space.parse("h4m4,h2m2|h4m4,h4m4|h4m4,h4m2")
    torch.manual_seed(0)
    model = space.build(arch).eval()
    bundle = load_data("digits", space.resolution)
    for fmt in ("onnx", "tflite"):
        exported = export_file(model, space, fmt, "fp32", tmp_path, "vit", bundle)
        check = parity(model, exported, bundle, limit=50)
        assert check["samples"] == 50 and check["max_abs_diff"] <= 1e-4 and check["top1_agreement"] == 1.0, fmt
