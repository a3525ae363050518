"""The device agent: a real HTTP server on loopback, its measurements and its refusals."""

import base64
import json
import threading
import urllib.error
import urllib.request

import pytest

from profilers import Protocol, get_runtime
from profilers.agent import AgentClient, AgentError, AgentServer
from profilers.onnx_export import export_onnx
from search_spaces import get_space

QUICK = Protocol.quick()


@pytest.fixture(scope="module")
def onnx_model() -> bytes:
    space = get_space("mbconv-tiny")
    unit = space.all_units()[3]
    return export_onnx(space.build_unit(unit), space.unit_input(unit))


def start(**options) -> AgentServer:
    server = AgentServer("127.0.0.1", 0, **options)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def server():
    agent = start(token="s3cret", max_bytes=2_000_000)
    yield agent
    agent.shutdown()
    agent.server_close()


def post(url: str, body: bytes, token: str | None = "s3cret", path: str = "/measure") -> tuple[int, dict]:
    request = urllib.request.Request(url + path, data=body, method="POST")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_agent_measures_onnx_and_reports_its_device(server, onnx_model):
    client = AgentClient(server.url, get_runtime("onnxruntime"), token="s3cret")
    info = client.info()
    assert "onnxruntime" in info["runtimes"] and info["device"]["cpu_model"]
    stats = client.measure_bytes({"unit": onnx_model, "again": onnx_model}, QUICK)
    assert set(stats) == {"unit", "again"}
    assert 0 < stats["unit"].min <= stats["unit"].p90


def test_agent_refusals_are_4xx_with_messages_and_it_keeps_serving(server, onnx_model):
    good = {"runtime": "onnxruntime", "protocol": QUICK.to_dict(),
            "models": {"m": base64.b64encode(onnx_model).decode()}}
    cases = [
        (json.dumps(good).encode(), "wrong", 401, "token"),
        (json.dumps(good).encode(), None, 401, "token"),
        (b"{not json", "s3cret", 400, "not valid JSON"),
        (b"[1, 2]", "s3cret", 400, "JSON object"),
        (json.dumps({**good, "runtime": "tvm"}).encode(), "s3cret", 400, "'runtime' must be one of"),
        (json.dumps({**good, "models": {}}).encode(), "s3cret", 400, "'models' must map"),
        (json.dumps({**good, "models": {"m": "%%%"}}).encode(), "s3cret", 400, "not valid base64"),
        (json.dumps({**good, "models": {"m": base64.b64encode(b"garbage").decode()}}).encode(), "s3cret", 400,
         "does not load"),
        (json.dumps({**good, "protocol": {"statistic": "p50"}}).encode(), "s3cret", 400, "bad 'protocol'"),
        (json.dumps({**good, "protocol": {"bogus": 1}}).encode(), "s3cret", 400, "bad 'protocol'"),
        (json.dumps({**good, "threads": 0}).encode(), "s3cret", 400, "threads must be >= 1"),
        (b"x" * 2_100_000, "s3cret", 413, "exceeds the agent's limit"),
    ]
    for body, token, status, message in cases:
        code, answer = post(server.url, body, token)
        assert code == status, (message, answer)
        assert message in answer["error"]
    code, answer = post(server.url, b"{}", path="/nowhere")
    assert code == 404 and "no such endpoint" in answer["error"]
    code, answer = post(server.url, json.dumps(good).encode())
    assert code == 200 and answer["stats"]["m"]["n"] > 0


def test_agent_off_loopback_requires_a_token():
    with pytest.raises(ValueError, match="give --token"):
        AgentServer("0.0.0.0", 0)


def test_client_errors_name_the_agent():
    client = AgentClient("http://127.0.0.1:9", get_runtime("onnxruntime"), timeout_s=2)
    with pytest.raises(AgentError, match="cannot reach the agent"):
        client.info()


def test_profile_through_the_agent_on_loopback(tmp_path):
    from profilers.profile import profile_space
    from profilers.table import LatencyTable

    agent = start()
    try:
        out = tmp_path / "remote.json"
        space = get_space("vit-tiny")
        profile_space(space, get_runtime("onnxruntime"), out, QUICK, target_url=agent.url, show_progress=False)
        table = LatencyTable.load(out, space)
        assert set(table.units) == {u.key for u in space.all_units()}
        assert table.metadata["agent_url"] == agent.url
    finally:
        agent.shutdown()
        agent.server_close()
