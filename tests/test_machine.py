"""What a device record says of its processor: identity and kernel features beside the marketing name, so that two
VMs both called "AMD EPYC" (a Zen 3 with AVX2, a Zen 4 with AVX-512 VNNI) are told apart, and a table profiled on one
is flagged when the other measures."""

import json

import pytest

from profilers.machine import describe_processor, device_metadata, processor_record, same_processor
from profilers.table import LatencyTable

ZEN3 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC
stepping\t: 1
flags\t\t: fpu sse4_1 sse4_2 avx fma f16c avx2 sha_ni

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: not the first processor
"""
ZEN4 = ZEN3.replace("model\t\t: 1\n", "model\t\t: 17\n").replace("sha_ni", "avx512f avx512bw avx512_vnni sha_ni")
GRAVITON = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes asimddp sve i8mm bf16
CPU implementer\t: 0x41
CPU part\t: 0xd40
CPU variant\t: 0x1

Hardware\t: Graviton Test Board
"""


def test_a_processor_record_holds_identity_and_the_features_kernels_are_chosen_by():
    zen3, zen4 = processor_record(ZEN3), processor_record(ZEN4)
    assert zen3 == {"cpu_model": "AMD EPYC", "cpu_id": "vendor AuthenticAMD family 25 model 1 stepping 1",
                    "cpu_features": ["sse4_2", "avx", "avx2", "fma", "f16c"]}  # the first processor only
    assert zen4["cpu_id"].endswith("model 17 stepping 1") and "avx512_vnni" in zen4["cpu_features"]
    arm = processor_record(GRAVITON)
    assert arm["cpu_id"] == "implementer 0x41 part 0xd40 variant 0x1"
    assert arm["cpu_model"] == "Graviton Test Board"  # written once, after the processors
    assert arm["cpu_features"] == ["asimd", "asimddp", "i8mm", "bf16", "sve"]
    assert describe_processor(zen3) == ("AMD EPYC (vendor AuthenticAMD family 25 model 1 stepping 1; "
                                        "sse4_2 avx avx2 fma f16c)")
    assert describe_processor({"cpu_model": "SM8550"}) == "SM8550"


def test_two_processors_of_one_name_are_told_apart_and_an_unknown_identity_is_no_verdict():
    zen3, zen4 = processor_record(ZEN3), processor_record(ZEN4)
    assert same_processor(zen3, dict(zen3)) is True
    assert same_processor(zen3, zen4) is False  # one marketing name, other kernels
    assert same_processor(zen3, {**zen3, "cpu_features": zen3["cpu_features"][:-1]}) is False
    assert same_processor(zen3, {"cpu_model": "AMD EPYC"}) is None  # an older table, or a phone's record
    this = device_metadata()
    assert this["cpu_model"] and isinstance(this["cpu_features"], list)
    this["cpu_features"].append("mutated")
    assert "mutated" not in device_metadata()["cpu_features"]  # each record is the caller's own


@pytest.fixture
def zen4_table(tiny_table, tmp_path):
    data = json.loads(tiny_table.read_text())
    data["metadata"].update(processor_record(ZEN4.replace("AMD EPYC", "Test EPYC")))  # no machine running this
    path = tmp_path / "zen4.json"
    path.write_text(json.dumps(data))
    return path


def test_a_table_says_when_the_target_is_another_kind_of_processor(zen4_table):
    table = LatencyTable.load(zen4_table)
    warning = table.machine_warning(processor_record(ZEN3))
    assert "profiled on Test EPYC (vendor AuthenticAMD family 25 model 17" in warning
    assert "the target is AMD EPYC (vendor AuthenticAMD family 25 model 1 stepping 1" in warning
    assert "hwnas profile --space mbconv-tiny --runtime onnxruntime" in warning
    assert table.machine_warning(table.metadata) is None
    older = LatencyTable({k: v for k, v in table.metadata.items() if k != "cpu_id"})
    assert older.machine_warning(processor_record(ZEN3)) is None


def test_search_warns_when_its_table_was_profiled_on_another_processor(tiny_run, zen4_table, caplog):
    import logging

    from hwnas.run import open_run
    from hwnas.search.budgeted import SearchSettings, search
    from profilers import Protocol

    logger = logging.getLogger("hwnas")  # the CLI's tests leave it unpropagated: listen on it directly
    logger.addHandler(caplog.handler)
    try:
        search(open_run(tiny_run), zen4_table, 10.0, SearchSettings(refine_trials=0, protocol=Protocol.quick()),
               show_progress=False)
    finally:
        logger.removeHandler(caplog.handler)
    assert "was profiled on Test EPYC (vendor AuthenticAMD family 25 model 17" in caplog.text
    assert f"but the target is {describe_processor(device_metadata())}" in caplog.text


def test_a_deployment_report_warns_when_the_budget_table_came_from_another_processor():
    from hwnas.ship.report import ExportReport, ShippedFile

    warning = "latency table t.json was profiled on Test EPYC, but the target is AMD EPYC"
    latency = {"device": {"device_name": "vm", **processor_record(ZEN3)}, "statistic": "p10", "measured_ms": 1.0,
               "table_from_other_machine": warning}
    parity = {"max_abs_diff": 0.0, "top1_agreement": 1.0, "accuracy_torch": 0.9, "accuracy_exported": 0.9}
    shipped = ShippedFile("onnx", "fp32", "m.onnx", 1024, parity, latency=latency)
    markdown = ExportReport("arch", "mbconv-tiny", "w.pt", None, None, [shipped]).markdown()
    assert "Measured on vm (AMD EPYC (vendor AuthenticAMD family 25 model 1 stepping 1; sse4_2" in markdown
    assert f"Warning: {warning}." in markdown
    shipped.latency = {**latency, "table_from_other_machine": None}
    assert "Warning" not in ExportReport("arch", "mbconv-tiny", "w.pt", None, None, [shipped]).markdown()
