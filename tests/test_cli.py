"""The hwnas command line: help everywhere, JSON output, and bad input as a clear error with exit code 2."""

import json

import pytest

from hwnas.cli import build_parser, main

COMMANDS = [["space", "list"], ["space", "sample"], ["space", "info"], ["space", "blocks"], ["data", "list"],
            ["data", "sheet"], ["profile"], ["measure"], ["predict"],
            ["teacher", "train"], ["teacher", "set"], ["distill"], ["rate"], ["search"], ["progressive"], ["train"],
            ["export"], ["agent", "serve"], ["demo"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: hwnas" in capsys.readouterr().out


def test_space_commands_json(capsys):
    assert main(["space", "sample", "mbconv-tiny", "--n", "3", "--seed", "2", "--json"]) == 0
    archs = json.loads(capsys.readouterr().out)
    assert len(archs) == 3
    assert main(["space", "info", "mbconv-tiny", "--arch", archs[0], "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["arch"] == archs[0] and info["params"] > 0 and info["timm_arch_def"]
    assert main(["space", "list", "--json"]) == 0
    assert {row["name"] for row in json.loads(capsys.readouterr().out)} >= {"mbconv", "vit", "mbconv-tiny", "vit-tiny"}


def test_predict_json(tiny_table, capsys):
    assert main(["space", "sample", "mbconv-tiny", "--json"]) == 0
    (arch,) = json.loads(capsys.readouterr().out)
    assert main(["predict", "--table", str(tiny_table), "--arch", arch, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["predicted_ms"] > 0 and result["calibrated"] is True


BAD_INPUTS = [
    (["space", "info", "mbconv", "--arch", "24:e6k3"], "6 searchable stages"),
    (["space", "sample", "resnet"], "unknown search space 'resnet'"),
    (["space", "sample", "mbconv", "--n", "0"], "argument --n: must be >= 1, got 0"),
    (["predict", "--table", "/nonexistent/table.json", "--arch", "x"], "does not exist"),
    (["measure", "--space", "mbconv-tiny", "--arch", "1:e6k3"], "6 searchable stages"),
    (["distill", "--run", "/nonexistent/run"], "hwnas teacher train --run"),
    (["teacher", "train", "--run", "/tmp/hwnas-test-no-space"], "give --space"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_INPUTS, ids=lambda v: str(v)[:40])
def test_bad_input_is_a_clear_error(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_demo_refuses_a_file_it_cannot_ship_before_writing_anything(tmp_path, capsys):
    from hwnas.cli.demo import shipping, table_name

    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--ship", "onnx:int4"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "onnx:fp32, onnx:int8, tflite:fp32, tflite:int8" in error
    assert not out.exists()
    assert shipping("tflite:int8") == ("tflite", "int8")
    # each runtime and precision profiles into a table of its own; ONNX Runtime fp32 keeps the name older runs have
    assert table_name("onnxruntime", "fp32") == "latency_table.json"
    assert table_name("litert", "int8") == "latency_table_litert_int8.json"


def test_corrupt_table_is_a_clear_error(tmp_path, capsys):
    table = tmp_path / "t.json"
    table.write_text("{ not json")
    assert main(["predict", "--table", str(table), "--arch", "x"]) == 2
    assert "corrupt JSON" in capsys.readouterr().err


def test_parser_lists_all_commands():
    text = build_parser().format_help()
    for name in ("space", "profile", "measure", "predict", "teacher", "distill", "rate", "search", "train", "export",
                 "agent", "demo"):
        assert name in text


def test_recipe_options_strength_alone_turns_augmentation_on_and_bad_values_are_refused():
    from hwnas.cli._recipe import recipe_settings
    from hwnas.training import TrainConfig

    parser = build_parser()
    for command in (["train", "--run", "r", "--arch", "a"], ["teacher", "train", "--run", "r"]):
        assert recipe_settings(parser.parse_args(command)) == {"augment": False, "augment_strength": 1.0,
                                                               "grad_clip": 1.0}
        assert recipe_settings(parser.parse_args([*command, "--augment"]))["augment"] is True
        assert recipe_settings(parser.parse_args([*command, "--augment-strength", "0.5", "--grad-clip", "0"])) == {
            "augment": True, "augment_strength": 0.5, "grad_clip": None}
        with pytest.raises(ValueError, match="augment_strength"):
            TrainConfig(**recipe_settings(parser.parse_args([*command, "--augment-strength", "1.5"])))
        assert main([*command, "--augment-strength", "0"]) == 2  # refused as the command line is parsed
        assert main([*command, "--grad-clip", "-1"]) == 2


def test_demo_summary_says_when_the_chosen_network_measured_over_budget():
    from hwnas.cli.demo import _summary

    report = {"search": {"budget_ms": 0.185, "chosen": {"arch": "A", "measured_ms": 0.1878, "within_budget": False}},
              "child": {"test_accuracy": 0.98}, "wall_s": {"total": 157.0}}
    assert ("0.1878 ms for a 0.185 ms budget (OVER budget: no finalist, nor a cheaper architecture stepped down to, "
            "measured within it") in _summary(report)
    report["search"]["chosen"].update(measured_ms=0.18, within_budget=True)
    assert "OVER" not in _summary(report) and "0.1800 ms for a 0.185 ms budget;" in _summary(report)


def test_demo_report_explains_an_export_pass_over_a_budget_the_search_met():
    from hwnas.cli.demo import _budget_cell, _export_budget_notes

    onnx = {"format": "onnx", "measured_ms": 0.1253, "within_budget": False, "over_budget_pct": 0.8}
    tflite = {"format": "tflite", "measured_ms": 0.1223, "within_budget": None, "over_budget_pct": None}
    report = {"runtime": {"runtime": "onnxruntime"}, "exports": [onnx, tflite],
              "search": {"budget_ms": 0.1243, "chosen": {"measured_ms": 0.1220, "within_budget": True}}}
    assert [_budget_cell(e) for e in report["exports"]] == ["OVER (+0.8%)", "not checked"]
    notes = " ".join(_export_budget_notes(report))
    assert "checked on the onnxruntime fp32 file only (onnx:fp32, the file the demo ships)" in notes
    assert "search measured the winner at 0.1220 ms, within the budget; this separate pass reads 0.1253 ms (+0.8%)" in notes
    onnx.update(measured_ms=0.1230, within_budget=True, over_budget_pct=-1.0)
    assert _budget_cell(onnx) == "met (-1.0%)" and "separate pass" not in " ".join(_export_budget_notes(report))


def test_demo_report_warns_when_an_int8_file_is_slower_than_fp32():
    from hwnas.cli.demo import _int8_notes

    exports = [{"format": "onnx", "precision": "int8", "int8_vs_fp32": 1.26},
               {"format": "onnx", "precision": "fp32", "int8_vs_fp32": None},
               {"format": "tflite", "precision": "int8", "int8_vs_fp32": 0.97}]
    (warning,) = [line for line in _int8_notes(exports) if line]
    assert warning.startswith("int8 onnx is 1.26x the fp32 file's latency here")
    assert _int8_notes(exports[1:]) == []


def test_cpu_threads_is_applied_before_the_command_and_checked(tmp_path, capsys):
    import torch

    torch.set_num_threads(2)
    try:
        assert main(["rate", "--run", str(tmp_path / "none"), "--cpu-threads", "1"]) == 2  # the run is missing...
        assert torch.get_num_threads() == 1  # ...but the threads were set first
        assert main(["distill", "--run", str(tmp_path / "none"), "--cpu-threads", "0"]) == 2
        assert "--cpu-threads" in capsys.readouterr().err
    finally:
        torch.set_num_threads(1)
