"""int8 on the file runtimes: what a runtime writes at int8 is quantized and runs, and LiteRT's two kernel sets."""

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from profilers import get_runtime
from profilers.targets import LocalTarget
from search_spaces import get_space


def _unit():
    space = get_space("mbconv-tiny")
    unit = next(u for u in space.all_units() if "k=7" in u.key)  # an MBConv layer with a 7x7 depthwise
    return space.build_unit(unit), space.unit_input(unit)


@pytest.mark.parametrize("runtime", ["onnxruntime", "litert", "litert-builtin"])
def test_an_int8_runtime_writes_quantized_models_that_run(runtime, tmp_path):
    module, example = _unit()
    fp32, int8 = get_runtime(runtime, 1, "fp32"), get_runtime(runtime, 1, "int8")
    fp32.write_model(module, example, tmp_path / f"f{fp32.file_suffix}")
    int8.write_model(module, example, tmp_path / f"q{int8.file_suffix}")
    if runtime == "onnxruntime":
        ops = {node.op_type for node in onnx.load(str(tmp_path / "q.onnx")).graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        assert "QuantizeLinear" not in {node.op_type for node in onnx.load(str(tmp_path / "f.onnx")).graph.node}
    else:
        interpreter = int8.interpreter(tmp_path / "q.tflite")
        assert interpreter.get_input_details()[0]["dtype"] == np.int8
    (tmp_path / "m").mkdir()
    stats = LocalTarget(int8).measure_modules({"unit": (module, example)}, _quick(), tmp_path / "m")
    assert stats["unit"].get("p10") > 0
    assert int8.metadata()["precision"] == "int8"


def test_litert_kernel_sets_compute_the_same_and_say_which_they_are(tmp_path):
    from profilers.litert_runtime import tflite_runner

    module = nn.Sequential(nn.Conv2d(8, 8, 7, padding=3, groups=8), nn.ReLU()).eval()
    example = torch.randn(1, 8, 6, 6)
    xnnpack, builtin = get_runtime("litert"), get_runtime("litert-builtin")
    xnnpack.write_model(module, example, tmp_path / "m.tflite")
    outputs = [tflite_runner(r.interpreter(tmp_path / "m.tflite"))(example.numpy()) for r in (xnnpack, builtin)]
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-5)
    np.testing.assert_allclose(outputs[0], module(example).detach().numpy(), atol=1e-4)
    assert "XNNPACK" in xnnpack.accelerator() and "XNNPACK off" in builtin.accelerator()


def test_a_precision_a_runtime_lacks_is_refused():
    with pytest.raises(ValueError, match="runtime litert measures precisions fp32, int8, not 'fp16'"):
        get_runtime("litert", 1, "fp16")
    with pytest.raises(ValueError, match="runtime onnxruntime-cuda measures precisions fp32, not 'int8'"):
        get_runtime("onnxruntime-cuda", 1, "int8")


def _quick():
    from profilers import Protocol

    return Protocol.quick()


def test_the_int8_recipe_keeps_7x7_depthwise_and_hard_swish_in_float(tmp_path):
    # XNNPACK's int8 7x7 depthwise and LiteRT's int8 hard-swish ran several times slower than fp32: the recipe keeps
    # them in float (found by litert-torch's tensor names: a change of naming would show here as int8 layers)
    from profilers.litert_runtime import float_layers

    module = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 8, 7, padding=3, groups=8),
                           nn.Hardswish(), nn.Conv2d(8, 8, 1)).eval()
    assert float_layers(module) == ["1"]
    runtime = get_runtime("litert", 1, "int8")
    runtime.write_model(module, torch.randn(1, 8, 12, 12), tmp_path / "q.tflite")
    ops = runtime.interpreter(tmp_path / "q.tflite")._get_ops_details()
    kinds = [(op["op_name"], op["operand_types"][0].__name__) for op in ops
             if op["op_name"] in ("DEPTHWISE_CONV_2D", "HARD_SWISH", "CONV_2D")]
    assert kinds == [("DEPTHWISE_CONV_2D", "int8"), ("DEPTHWISE_CONV_2D", "float32"), ("HARD_SWISH", "float32"),
                     ("CONV_2D", "int8")]


class _MeanThenScale(nn.Module):
    """A squeeze-excite-like gate (spatial mean) and a mean over channels, which is no global pool."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x.mean((2, 3), keepdim=True)) + x.mean(1, keepdim=True)


def test_onnx_int8_runs_spatial_means_as_global_pools_and_computes_the_same(tmp_path):
    import onnxruntime as ort

    from profilers.onnx_export import export_onnx
    from profilers.onnxruntime_runtime import quantize_onnx, spatial_means_as_pools

    example = torch.randn(1, 8, 6, 6)
    model = onnx.shape_inference.infer_shapes(onnx.load_from_string(export_onnx(_MeanThenScale().eval(), example)))
    rewritten = onnx.load_from_string(model.SerializeToString())
    assert spatial_means_as_pools(rewritten) == 1  # the channel mean is left alone
    assert [n.op_type for n in rewritten.graph.node].count("ReduceMean") == 1
    outputs = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {m.graph.input[0].name: example.numpy()})[0] for m in (model, rewritten)]
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-5, atol=1e-6)
    quantized = onnx.load_from_string(quantize_onnx(model.SerializeToString(), [example.numpy()]))
    ops = [n.op_type for n in quantized.graph.node]
    assert "GlobalAveragePool" in ops and ops.count("ReduceMean") == 1


class _ImageNet(nn.Module):
    """An image network's start: a stem convolution and its activation, a depthwise convolution, two more layers."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_stem, self.act = nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.SiLU()
        self.conv_dw, self.conv_pw, self.head = nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 16, 1), nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv_pw(self.conv_dw(self.act(self.conv_stem(x)))))


def _conv_kinds(runtime, path) -> list[tuple[str, str]]:
    """(op, input type) of every convolution of a TFLite file."""
    return [(op["op_name"], op["operand_types"][0].__name__) for op in
            runtime.interpreter(path)._get_ops_details() if "CONV" in op["op_name"]]


def test_an_image_stem_stays_in_float_only_where_one_of_its_channels_would_get_a_few_uint8_steps(tmp_path):
    # the stem's output can spread over channels of very different ranges, which one uint8 range per tensor erases
    # (a trained glyphs child: 90% agreement with fp32, 97% with the stem in float); a float stem costs LiteRT a
    # third of its int8 speed at 224 px, so by default only a stem with such a channel stays in float
    from profilers.int8_stem import decide_stem, image_stem_layers, narrowest_channel_steps

    torch.manual_seed(0)
    module, image = _ImageNet().train(), torch.randn(1, 3, 16, 16)
    assert image_stem_layers(module, image) == ["conv_stem", "act", "conv_dw"]
    assert module.training  # finding the stem runs the module, in eval mode, and leaves its mode as it was
    assert image_stem_layers(module.conv_pw, torch.randn(1, 8, 8, 8)) == []
    assert decide_stem(module.conv_pw, torch.randn(1, 8, 8, 8), []).layers == ()

    values = torch.zeros(2, 3, 4, 4)
    values[:, 0] = torch.linspace(0, 10, 32).reshape(2, 4, 4)
    values[:, 1] = torch.linspace(0, 0.1, 32).reshape(2, 4, 4)  # channel 2 never varies: it carries nothing
    assert narrowest_channel_steps(values) == pytest.approx(0.1 / 10 * 255)
    assert narrowest_channel_steps(torch.zeros(1, 2, 3, 3)) == float("inf")

    calibration = [torch.randn(1, 3, 16, 16).numpy() for _ in range(8)]
    even = decide_stem(module, image, calibration)
    assert even.narrowest_steps >= 8 and not even.in_float and module.training
    with torch.no_grad():  # one stem channel a thousandth of the others: int8 would give it no step at all
        module.conv_stem.weight[0].mul_(1e-3)
        module.conv_stem.bias[0].mul_(1e-3)
    uneven = decide_stem(module, image, calibration)
    assert uneven.narrowest_steps < 1 and uneven.in_float and uneven.layers == ("conv_stem", "act", "conv_dw")
    assert "kept in float" in uneven.to_dict()["description"]
    assert decide_stem(module, image, calibration, "int8").in_float is False
    assert decide_stem(_ImageNet(), image, calibration, "float").in_float is True
    with pytest.raises(ValueError, match="unknown int8 stem choice 'fp16'; choose one of: auto, float, int8"):
        decide_stem(module, image, calibration, "fp16")

    # both runtimes' int8 files follow the decision: the uneven stem in float, the even one quantized
    runtime = get_runtime("litert", 1, "int8")
    for network, stem_type in ((module, "float32"), (_ImageNet(), "int8")):
        network.eval()
        runtime.write_model(network, image, tmp_path / "q.tflite")
        assert _conv_kinds(runtime, tmp_path / "q.tflite") == [("CONV_2D", stem_type), ("DEPTHWISE_CONV_2D", stem_type),
                                                               ("CONV_2D", "int8")]


def test_an_int8_onnx_file_keeps_exactly_the_image_stem_nodes_in_float_when_asked():
    from profilers.onnx_export import export_onnx
    from profilers.onnxruntime_runtime import image_stem_nodes, quantize_onnx

    module, image = _ImageNet().eval(), torch.randn(1, 3, 16, 16)
    graph = onnx.shape_inference.infer_shapes(onnx.load_from_string(export_onnx(module, image)))
    assert [n.op_type for n in graph.graph.node if n.name in image_stem_nodes(graph)] == ["Conv", "Sigmoid", "Mul",
                                                                                         "Conv"]
    for float_stem, quantized_convs in ((True, [False, False, True]), (False, [True, True, True])):
        quantized = onnx.load_from_string(quantize_onnx(graph.SerializeToString(), [image.numpy()],
                                                        float_stem=float_stem))
        dequantized = {o for n in quantized.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        convs = [n for n in quantized.graph.node if n.op_type == "Conv"]
        assert [any(i in dequantized for i in n.input) for n in convs] == quantized_convs


def _activation_scales(model_bytes: bytes) -> dict[str, float]:
    """The scale of every QuantizeLinear of an int8 QDQ model (activations), by the tensor it quantizes."""
    model = onnx.load_from_string(model_bytes)
    values = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    return {n.input[0]: float(values[n.input[1]]) for n in model.graph.node if n.op_type == "QuantizeLinear"}


def test_percentile_calibration_clips_an_outlier_that_min_max_keeps_and_refuses_a_constant_tensor():
    from profilers.onnx_export import export_onnx
    from profilers.onnxruntime_runtime import quantize_onnx

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 8, 1)).eval()
    example = torch.zeros(1, 3, 8, 8)
    data = export_onnx(model, example)
    rng = np.random.default_rng(0)
    calibration = [rng.normal(size=(1, 3, 8, 8)).astype(np.float32) for _ in range(64)]
    calibration[0] = calibration[0] * 50  # one outlier image: min/max spans it, the 99.99th percentile does not
    minmax, percentile = (_activation_scales(quantize_onnx(data, calibration, method))
                          for method in ("minmax", "percentile"))
    assert minmax.keys() == percentile.keys() and minmax  # the same graph: only the ranges differ
    assert all(percentile[name] < minmax[name] for name in minmax)
    with pytest.raises(ValueError, match="unknown int8 calibration 'entropy'"):
        quantize_onnx(data, calibration, "entropy")

    # a tensor whose values span fewer float32 steps than the percentile histogram's 2048 bins (as a saturated gate
    # of EfficientNet-B0 at initialisation): min/max quantizes it, the percentile calibrator cannot
    narrow = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                           nn.Conv2d(8, 8, 1), nn.Sigmoid(), nn.Conv2d(8, 8, 1)).eval()
    with torch.no_grad():
        narrow[4].weight.mul_(1e-6)
        narrow[4].bias.fill_(12.0)
    narrow_data = export_onnx(narrow, example)
    assert quantize_onnx(narrow_data, calibration, "minmax")
    with pytest.raises(ValueError, match="percentile calibration failed on this model.*calibrate it with minmax"):
        quantize_onnx(narrow_data, calibration, "percentile")


def test_7_bit_weights_keep_onnx_runtimes_int8_kernels_exact_where_8_bit_ones_saturate():
    # ONNX Runtime's fused int8 graph against the same QDQ file run op by op in float (no fusion: what the file says).
    # On x86 without VNNI, 8-bit weights overflow its 16-bit pair sums; 7-bit weights cannot, on any machine.
    import random

    import onnxruntime as ort
    from onnx import numpy_helper

    from profilers.machine import device_metadata
    from profilers.onnx_export import export_onnx
    from profilers.onnxruntime_runtime import quantize_onnx, u8s8_saturates, weight_bits
    from profilers.runtime import random_calibration

    def session(data, level):
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.graph_optimization_level = 1, level
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])

    space = get_space("mbconv-tiny")
    torch.manual_seed(0)
    model, example = space.build(space.sample(random.Random(3))).eval(), space.example_input()
    data, calibration = export_onnx(model, example), random_calibration(example)
    inputs = [np.random.default_rng(k).standard_normal(example.shape).astype(np.float32) for k in range(4)]
    differences = {}
    for bits in (8, 7):
        quantized = quantize_onnx(data, calibration, bits=bits)
        weights = [numpy_helper.to_array(t) for t in onnx.load_from_string(quantized).graph.initializer
                   if t.data_type == onnx.TensorProto.INT8]
        assert max(int(np.abs(w).max()) for w in weights) == (127 if bits == 8 else 64)
        fused = session(quantized, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        reference = session(quantized, ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        name = fused.get_inputs()[0].name
        differences[bits] = max(
            float(np.abs(fused.run(None, {name: x})[0] - (r := reference.run(None, {name: x})[0])).max() / np.abs(r).max())
            for x in inputs)
    assert differences[7] < 0.01
    saturates = u8s8_saturates(device_metadata())
    assert (differences[8] > 0.05) == saturates, (differences, device_metadata()["cpu_features"])
    assert weight_bits("auto", device_metadata()) == (7 if saturates else 8)


def test_the_weight_bits_follow_the_targets_kernels():
    from profilers.onnxruntime_runtime import u8s8_saturates, weight_bits

    avx2 = {"cpu_features": ["sse4_2", "avx", "avx2", "fma"]}
    vnni = {"cpu_features": ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni"]}
    arm = {"cpu_features": ["asimd", "asimddp", "i8mm"]}
    assert [u8s8_saturates(d) for d in (avx2, vnni, {**avx2, "cpu_features": ["sse4_2", "avx_vnni"]}, arm, {})] == [
        True, False, False, False, False]
    assert [weight_bits("auto", d) for d in (avx2, vnni, arm)] == [7, 8, 8]
    assert weight_bits("8", avx2) == 8 and weight_bits("7", vnni) == 7
    with pytest.raises(ValueError, match="unknown int8 weight bits '6'; choose one of: auto, 8, 7"):
        weight_bits("6", avx2)
