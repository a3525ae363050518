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


def test_agent_returns_the_outputs_its_runtime_computes_in_requests_that_fit_its_limit(server, onnx_model, tmp_path):
    import numpy as np

    path = tmp_path / "unit.onnx"
    path.write_bytes(onnx_model)
    session = get_runtime("onnxruntime").session(path)
    shape = tuple(session.get_inputs()[0].shape)
    count = 2_000_000 // (4 * int(np.prod(shape))) + 3  # more than one request under the agent's 2 MB limit
    inputs = np.random.default_rng(1).standard_normal((count, *shape[1:])).astype(np.float32)
    client = AgentClient(server.url, get_runtime("onnxruntime"), token="s3cret")
    outputs = client.outputs(path, inputs)
    expected = np.concatenate([session.run(None, {session.get_inputs()[0].name: inputs[i:i + 1]})[0]
                               for i in range(count)])
    assert outputs.shape == expected.shape and np.array_equal(outputs, expected)


def test_agent_refuses_outputs_requests_it_cannot_run(server, onnx_model):
    good = {"runtime": "onnxruntime", "model": base64.b64encode(onnx_model).decode(),
            "inputs": base64.b64encode(bytes(8)).decode(), "shape": [2, 1]}
    cases = [({"shape": [2]}, "'shape' must list 2-8 positive whole numbers"),
             ({"shape": [2, 0]}, "'shape' must list"),
             ({"shape": [3, 1]}, "'inputs' holds 8 bytes; float32 inputs of shape [3, 1] take 12"),
             ({"inputs": "%%%"}, "'inputs' is not valid base64"),
             ({"model": "bm90IGEgbW9kZWw="}, "the model does not load in onnxruntime"),
             ({"model": None}, "'model' must be a base64-encoded file"),
             ({}, "the model failed on input 0 of shape [1]")]  # runs, on inputs of the wrong shape
    for change, message in cases:
        code, answer = post(server.url, json.dumps({**good, **change}).encode(), path="/outputs")
        assert code == 400 and message in answer["error"], (change, answer)


def test_an_agent_without_outputs_is_named_as_older(onnx_model, tmp_path):
    # an agent of an earlier hwnas knows /measure only: its 404 becomes a one-line error saying what to do
    import numpy as np

    from profilers import agent as agent_module

    class OlderHandler(agent_module._Handler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            self._headers_read = True
            self._guard(self._measure if self.path == "/measure" else
                        lambda: agent_module._raise(agent_module.HTTPStatus.NOT_FOUND, "no such endpoint"))

    older = start()
    older.RequestHandlerClass = OlderHandler
    try:
        path = tmp_path / "unit.onnx"
        path.write_bytes(onnx_model)
        with pytest.raises(AgentError, match="has no /outputs .*update hwnas there, or export without --target"):
            AgentClient(older.url, get_runtime("onnxruntime")).outputs(path, np.zeros((1, 1), np.float32))
    finally:
        older.shutdown()
        older.server_close()


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
        (json.dumps({**good, "protocol": {"bogus": 1}}).encode(), "s3cret", 400, "unknown protocol setting 'bogus'"),
        (json.dumps({**good, "threads": 0}).encode(), "s3cret", 400, "'threads' must be a whole number"),
        (json.dumps({**good, "threads": "four"}).encode(), "s3cret", 400, "'threads' must be a whole number"),
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


def _raw(url: str, data: bytes, read_for: float) -> bytes:
    """Send raw bytes to the agent and read what comes back within ``read_for`` seconds (b'' if closed)."""
    import socket
    from urllib.parse import urlparse

    where = urlparse(url)
    with socket.create_connection((where.hostname, where.port), timeout=read_for) as conn:
        conn.sendall(data)
        received = b""
        try:
            while chunk := conn.recv(65536):
                received += chunk
        except (TimeoutError, ConnectionResetError):
            return received or b"TIMEOUT"
        return received


def test_malformed_numbers_and_nesting_get_400(server, onnx_model):
    model = base64.b64encode(onnx_model).decode()

    def with_protocol(setting: str) -> str:
        return '{"runtime": "onnxruntime", "protocol": {' + setting + '}, "models": {"m": "' + model + '"}}'

    for body, message in [
        (with_protocol('"round_budget_s": NaN'), "NaN"),
        (with_protocol('"min_span_s": Infinity'), "Infinity"),
        (with_protocol('"warmup_runs": 2.5'), "whole number"),
        (with_protocol('"warmup_runs": 10000000'), "capped at 1000"),
        (with_protocol('"runs_per_round": -4'), "non-negative"),
        ('{"a": ' * 100_000 + "1" + "}" * 100_000, "nested too deeply"),
    ]:
        code, answer = post(server.url, body.encode())
        assert code == 400, (message, answer)
        assert message in answer["error"]


def test_a_long_request_is_stopped_inside_its_round_and_the_next_is_served(onnx_model):
    import time

    agent = start(max_seconds=0.5)
    try:
        # 1000 warm-up runs and 10 rounds of 10,000: over a second even at 10 us a run, so only the limit can stop it
        greedy = {"runtime": "onnxruntime", "models": {"m": base64.b64encode(onnx_model).decode()},
                  "protocol": {"warmup_runs": 1000, "runs_per_round": 10000, "min_runs_per_round": 10000,
                               "round_budget_s": 0.01, "min_rounds": 10, "max_rounds": 10, "min_span_s": 0}}
        started = time.monotonic()
        code, answer = post(agent.url, json.dumps(greedy).encode(), token=None)
        assert code == 408 and "time limit" in answer["error"]
        assert time.monotonic() - started < 5  # the time limit held inside the round, not after it
        good = {"runtime": "onnxruntime", "protocol": QUICK.to_dict(),
                "models": {"m": base64.b64encode(onnx_model).decode()}}
        code, answer = post(agent.url, json.dumps(good).encode(), token=None)
        assert code == 200 and answer["stats"]["m"]["n"] > 0
    finally:
        agent.shutdown()
        agent.server_close()


def test_slow_clients_are_cut_off_and_do_not_block_others():
    import time

    agent = start(read_timeout_s=1.0)
    try:
        started = time.monotonic()
        # a body declared and never sent: 408 once the read timeout passes
        answer = _raw(agent.url, b"POST /measure HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{", read_for=10)
        assert answer.startswith(b"HTTP/1.1 408") and (b"bytes declared" in answer or b"not sent" in answer), answer
        # headers trickled and never finished: the connection is closed
        assert _raw(agent.url, b"GET /info HTTP/1.1\r\nHost:", read_for=10) == b""
        assert time.monotonic() - started < 8
        with urllib.request.urlopen(agent.url + "/info", timeout=10) as response:
            assert response.status == 200
    finally:
        agent.shutdown()
        agent.server_close()


def _many(url: str, body: bytes, count: int) -> list[tuple[int, str | None]]:
    from concurrent.futures import ThreadPoolExecutor

    def one(_: int) -> tuple[int, str | None]:
        request = urllib.request.Request(url + "/measure", data=body, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, None
        except urllib.error.HTTPError as error:
            return error.code, error.headers.get("Retry-After")

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


@pytest.mark.slow
def test_fifty_simultaneous_requests_are_all_answered(onnx_model):
    body = json.dumps({"runtime": "onnxruntime", "protocol": QUICK.to_dict(),
                       "models": {"m": base64.b64encode(onnx_model).decode()}}).encode()
    agent = start()
    try:
        assert [code for code, _ in _many(agent.url, body, 50)] == [200] * 50
    finally:
        agent.shutdown()
        agent.server_close()
    small = start(max_connections=4, max_waiting=1)
    try:
        answers = _many(small.url, body, 50)  # a connection reset would raise here, not return
        assert {code for code, _ in answers} <= {200, 503} and (200, None) in answers
        assert all(retry == "5" for code, retry in answers if code == 503) and any(c == 503 for c, _ in answers)
    finally:
        small.shutdown()
        small.server_close()


@pytest.mark.parametrize(("options", "message"), [
    ({"max_bytes": -1}, "--max-mb must be >= 1"), ({"max_seconds": 0}, "--max-seconds must be a finite number > 0"),
    ({"max_seconds": float("nan")}, "--max-seconds"), ({"port": 70000}, "--port must be 0-65535"),
    ({"max_connections": 0}, "--max-connections"),
])
def test_agent_limits_are_checked_at_start(options, message):
    with pytest.raises(ValueError, match=message):
        AgentServer("127.0.0.1", **({"port": 0} | options))


def test_a_port_in_use_is_a_clear_error():
    first = start()
    try:
        with pytest.raises(ValueError, match="cannot listen on 127.0.0.1"):
            AgentServer("127.0.0.1", first.server_address[1])
    finally:
        first.shutdown()
        first.server_close()


def test_a_reply_without_statistics_is_a_clear_error(onnx_model):
    """A server that answers but is not an hwnas agent of this version (another program on the port)."""
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Wrong(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _answer(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self._answer(b'{"runtimes": {}}')

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self._answer(b'{"device": {}, "stats": {"m": {"min": NaN}}}' if "nan" in self.path else b'{"device": {}}')

    server = HTTPServer(("127.0.0.1", 0), Wrong)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        client = AgentClient(url, get_runtime("onnxruntime"))
        with pytest.raises(AgentError, match="without statistics for every model"):
            client.measure_bytes({"m": onnx_model}, QUICK)
        with pytest.raises(AgentError, match="without its device"):
            client.device()
        with pytest.raises(AgentError, match="not strict JSON"):
            AgentClient(url + "/nan", get_runtime("onnxruntime")).measure_bytes({"m": onnx_model}, QUICK)
    finally:
        server.shutdown()
        server.server_close()
