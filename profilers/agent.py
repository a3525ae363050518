"""The device agent: a small HTTP server for phones and boards with Python, and its client.

``hwnas agent serve`` receives model files (ONNX or TFLite bytes), runs them with the local runtime under the same
measurement protocol and returns statistics with its device metadata.

API (JSON over HTTP):
- ``GET /info`` -> device metadata, the runtimes available here and the request limits;
- ``POST /measure`` with ``{"runtime", "threads", "precision", "protocol": {...}, "models": {name: base64}}``
  -> ``{"device": {...}, "runtime": {...}, "stats": {name: {min, p10, median, p90, mean, n}}}``;
- ``POST /outputs`` with ``{"runtime", "threads", "precision", "model": base64, "inputs": base64, "shape": [N, ...]}``
  (N float32 inputs, little-endian, each run alone at batch 1) -> ``{"device", "runtime", "outputs": base64,
  "shape": [N, ...]}``: the file's first output on each input, computed by this device's kernels (output parity
  checked where the file will run).

Binds 127.0.0.1 by default; any other address requires a token (``Authorization: Bearer TOKEN``). Limits:
- a request's size (``max_bytes``) and its measurement time (``max_seconds``, checked after every timed run, so no
  request holds the device past it), with the protocol's run and round counts capped (``PROTOCOL_CAPS``);
- reading a request's headers and body within ``READ_TIMEOUT_S`` (a client that declares a body and never sends it
  is cut off);
- ``max_connections`` connections served at once and ``max_waiting`` measurements queued behind the one running;
  past either, the answer is 503 with ``Retry-After`` (nothing is reset: the listen backlog holds 128).
Malformed requests get a 4xx with a message (NaN or Infinity, nesting too deep, wrong types), never a crash.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import hmac
import ipaddress
import json
import math
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from profilers import MissingRuntimeError, get_runtime, list_runtimes
from profilers.machine import device_metadata
from profilers.protocol import Protocol, measure
from profilers.runtime import ModelRef, Runtime
from profilers.stats import LatencyStats

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_SECONDS = 600.0
READ_TIMEOUT_S = 20.0
DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_MAX_WAITING = 64
MAX_THREADS = 256
OUTPUT_REQUEST_BYTES = 8 * 1024 * 1024  # inputs per /outputs request the client sends (base64 adds a third)
MAX_RANK = 8  # dimensions of an /outputs request's inputs
# the largest counts a request's protocol may ask for (the time limit bounds them too; these bound memory)
PROTOCOL_CAPS = {"warmup_runs": 1000, "runs_per_round": 10_000, "min_runs_per_round": 10_000, "min_rounds": 1000,
                 "max_rounds": 1000, "span_max_rounds": 1000}
FILE_RUNTIMES = ("onnxruntime", "litert", "litert-builtin", "onnxruntime-cuda", "tensorrt")


class RequestError(Exception):
    """A client mistake: becomes a 4xx answer with this message."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_limits(port: int, max_bytes: int, max_seconds: float, max_connections: int, max_waiting: int) -> None:
    """ValueError naming the first limit out of range."""
    if not 0 <= port <= 65535:
        raise ValueError(f"--port must be 0-65535 (0: any free port), got {port}")
    if max_bytes < 1:
        raise ValueError(f"--max-mb must be >= 1, got {max_bytes / (1024 * 1024):g}")
    if not (math.isfinite(max_seconds) and max_seconds > 0):
        raise ValueError(f"--max-seconds must be a finite number > 0, got {max_seconds}")
    if max_connections < 1 or max_waiting < 0:
        raise ValueError(f"--max-connections must be >= 1 and --max-waiting >= 0, got {max_connections} and "
                         f"{max_waiting}")


class AgentServer(ThreadingHTTPServer):
    """The agent's HTTP server; one measurement at a time (a lock), ``/info`` always answers."""

    daemon_threads = True
    request_queue_size = 128  # the listen backlog: simultaneous clients wait here instead of being reset

    def __init__(
        self, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES, max_seconds: float = DEFAULT_MAX_SECONDS, device_name: str | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS, max_waiting: int = DEFAULT_MAX_WAITING,
        read_timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        """Bind and get ready to serve; ValueError for a limit out of range or a port that cannot be bound (many
        parameters because each is one flag of ``hwnas agent serve``)."""
        check_limits(port, max_bytes, max_seconds, max_connections, max_waiting)
        if not is_loopback(host) and not token:
            raise ValueError(f"the agent binds {host}, which is reachable from other machines: give --token "
                             "(or bind 127.0.0.1)")
        try:
            super().__init__((host, port), _Handler)
        except OSError as error:
            raise ValueError(f"cannot listen on {host}:{port}: {error.strerror or error}; choose another --port "
                             "(or stop what is using it)") from None
        self.token = token
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.max_waiting = max_waiting
        self.read_timeout_s = read_timeout_s
        self.device = device_metadata(device_name)
        self.measure_lock = threading.Lock()
        self.connections = threading.BoundedSemaphore(max_connections)
        self.refusals = threading.BoundedSemaphore(4 * max_connections)  # busy answers being written at once
        self.waiting = 0
        self.waiting_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection on its own thread while fewer than ``max_connections`` are served; else answer 503
        at once and close."""
        if not self.connections.acquire(blocking=False):
            if self.refusals.acquire(blocking=False):  # read the request, then answer 503 (a client mid-send
                threading.Thread(target=self._refuse, args=(request, client_address), daemon=True).start()  # no reset)
            else:
                self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.connections.release()
            raise

    def _refuse(self, request: socket.socket, client_address: Any) -> None:
        try:
            _BusyHandler(request, client_address, self)
        finally:
            self.shutdown_request(request)
            self.refusals.release()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """The thread's work, then its connection slot back."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connections.release()

    @property
    def url(self) -> str:
        """Where clients reach this server."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: AgentServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        self.timeout = self.server.read_timeout_s  # a socket read (headers, body, idle keep-alive) waits this long
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass

    def handle_one_request(self) -> None:
        """One request, whose request line and headers must arrive within ``READ_TIMEOUT_S`` in all (a client
        trickling a byte at a time is cut off; the per-read timeout alone would not stop it)."""
        self._headers_read = False
        timer = threading.Timer(self.server.read_timeout_s, self._cut_off_slow_headers)
        timer.daemon = True
        timer.start()
        try:
            super().handle_one_request()
        finally:
            timer.cancel()

    def _cut_off_slow_headers(self) -> None:
        if not self._headers_read:
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def _reply(self, status: HTTPStatus, payload: dict[str, Any], retry_after_s: int | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if retry_after_s is not None:
            self.send_header("Retry-After", str(retry_after_s))
        self.end_headers()
        self.wfile.write(body)

    def _guard(self, handler: Callable[[], dict[str, Any]]) -> None:
        try:
            self._check_token()
            self._reply(HTTPStatus.OK, handler())
        except RequestError as error:
            self.close_connection = True
            retry = 5 if error.status == HTTPStatus.SERVICE_UNAVAILABLE else None
            self._reply(error.status, {"error": str(error)}, retry)
        except MissingRuntimeError as error:
            self._reply(HTTPStatus.UNPROCESSABLE_ENTITY, {"error": str(error)})
        except Exception as error:  # an agent must answer, not die: report what broke
            self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(error).__name__}: {error}"})

    def _check_token(self) -> None:
        if self.server.token is None:
            return
        given = self.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.server.token}".encode()):
            raise RequestError(HTTPStatus.UNAUTHORIZED, "missing or wrong token: send 'Authorization: Bearer TOKEN'")

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._headers_read = True
        if self.path != "/info":
            self._guard(lambda: _raise(HTTPStatus.NOT_FOUND, f"no such endpoint {self.path}; use GET /info, "
                                                             "POST /measure or POST /outputs"))
            return
        self._guard(lambda: {"device": self.server.device, "runtimes": _available_runtimes(),
                             "limits": {"max_bytes": self.server.max_bytes, "max_seconds": self.server.max_seconds}})

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self._headers_read = True
        endpoints = {"/measure": self._measure, "/outputs": self._outputs}
        if self.path not in endpoints:
            self._guard(lambda: _raise(HTTPStatus.NOT_FOUND, f"no such endpoint {self.path}; use POST /measure or "
                                                             "POST /outputs"))
            return
        self._guard(endpoints[self.path])

    def _read_json(self) -> dict[str, Any]:
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.isdigit():
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length header")
        length = int(length_text)
        if length > self.server.max_bytes:
            self._drain(length)
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"request of {length} bytes exceeds the agent's limit of {self.server.max_bytes}")
        body = self._read_body(length)
        try:
            payload = json.loads(body, parse_constant=_no_constant)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"body is not valid JSON: {error}") from error
        except RecursionError:
            raise RequestError(HTTPStatus.BAD_REQUEST, "body is nested too deeply") from None
        if not isinstance(payload, dict):
            raise RequestError(HTTPStatus.BAD_REQUEST, "body must be a JSON object")
        return payload

    def _read_body(self, length: int) -> bytes:
        """The body, read within the read timeout in all (408 otherwise: a body declared and never sent)."""
        limit = self.server.read_timeout_s
        deadline = time.monotonic() + limit
        parts, remaining = [], length
        while remaining > 0:
            if time.monotonic() > deadline:
                raise RequestError(HTTPStatus.REQUEST_TIMEOUT, f"the body was not sent within {limit:g} s")
            try:
                chunk = self.rfile.read1(min(remaining, 1 << 16))
            except (TimeoutError, OSError):
                chunk = b""
            if not chunk:
                raise RequestError(HTTPStatus.REQUEST_TIMEOUT, f"the body ended after {length - remaining} of the "
                                                               f"{length} bytes declared")
            parts.append(chunk)
            remaining -= len(chunk)
        return b"".join(parts)

    def _drain(self, length: int, limit: int = 16 * 1024 * 1024) -> None:
        """Read and drop a refused body (up to ``limit`` bytes) so the client can read the refusal."""
        remaining = min(length, limit)
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 16))
            if not chunk:
                break
            remaining -= len(chunk)

    def _measure(self) -> dict[str, Any]:
        payload = self._read_json()
        runtime = _runtime_from(payload)
        protocol = _protocol_from(payload, self.server.max_seconds)
        models = payload.get("models")
        if not isinstance(models, dict) or not models:
            raise RequestError(HTTPStatus.BAD_REQUEST, "'models' must map names to base64-encoded model files")
        with self._queued(), tempfile.TemporaryDirectory() as tmp:
            deadline = time.monotonic() + self.server.max_seconds
            runners = {}
            for index, (name, encoded) in enumerate(models.items()):
                path = Path(tmp) / f"model_{index}{runtime.file_suffix}"
                path.write_bytes(_decoded(encoded, f"model {name!r}"))
                try:
                    runners[str(name)] = _bounded(runtime.load(path)["main"], deadline)
                except MissingRuntimeError:
                    raise
                except Exception as error:
                    raise RequestError(HTTPStatus.BAD_REQUEST,
                                       f"model {name!r} does not load in {runtime.name}: {error}") from error
            stats = measure(runners, protocol)
        return {"device": self.server.device, "runtime": runtime.metadata(),
                "stats": {name: s.to_dict() for name, s in stats.items()}}

    def _outputs(self) -> dict[str, Any]:
        payload = self._read_json()
        runtime = _runtime_from(payload)
        inputs = _inputs_from(payload)
        with self._queued(), tempfile.TemporaryDirectory() as tmp:
            deadline = time.monotonic() + self.server.max_seconds
            path = Path(tmp) / f"model{runtime.file_suffix}"
            path.write_bytes(_decoded(payload.get("model"), "'model'"))
            try:
                infer = runtime.infer(path)
            except MissingRuntimeError:
                raise
            except Exception as error:
                raise RequestError(HTTPStatus.BAD_REQUEST, f"the model does not load in {runtime.name}: {error}") from error
            outputs = []
            for index in range(len(inputs)):
                _check_deadline(deadline)
                try:
                    outputs.append(np.asarray(infer(inputs[index:index + 1]), dtype="<f4"))
                except Exception as error:
                    raise RequestError(HTTPStatus.BAD_REQUEST, f"the model failed on input {index} of shape "
                                                               f"{list(inputs.shape[1:])}: {error}") from error
        result = np.concatenate(outputs)
        return {"device": self.server.device, "runtime": runtime.metadata(),
                "outputs": base64.b64encode(result.tobytes()).decode(), "shape": list(result.shape)}

    @contextlib.contextmanager
    def _queued(self) -> Iterator[None]:
        """Hold the measurement lock; 503 when ``max_waiting`` measurements already wait for it."""
        server = self.server
        with server.waiting_lock:
            if server.waiting >= server.max_waiting and server.measure_lock.locked():
                raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE, f"{server.waiting} measurements are queued: "
                                                                   "retry later")
            server.waiting += 1
        try:
            server.measure_lock.acquire()
        finally:
            with server.waiting_lock:
                server.waiting -= 1
        try:
            yield
        finally:
            server.measure_lock.release()


def _no_constant(name: str) -> None:
    raise RequestError(HTTPStatus.BAD_REQUEST, f"{name} is not a number JSON allows; send finite numbers")


def _bounded(runner: Callable[[], object], deadline: float) -> Callable[[], object]:
    """The runner, refusing to run once ``deadline`` has passed (so one request cannot hold the device)."""

    def run() -> object:
        _check_deadline(deadline)
        return runner()

    return run


class _BusyHandler(_Handler):
    """Reads a request (within the same timeouts as any) and answers 503 with Retry-After: the agent has no thread
    for it, and a client still sending sees an answer, not a reset."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._headers_read = True
        self._busy()

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self._headers_read = True
        length = self.headers.get("Content-Length", "")
        if length.isdigit():
            self._drain(int(length))
        self._busy()

    def _busy(self) -> None:
        self.close_connection = True
        self._reply(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "the agent is busy: retry later"}, retry_after_s=5)


def _raise(status: HTTPStatus, message: str) -> dict[str, Any]:
    raise RequestError(status, message)


def _check_deadline(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise RequestError(HTTPStatus.REQUEST_TIMEOUT, "the request ran past the agent's time limit; send fewer "
                                                       "models or inputs per request, or a shorter protocol")


def _decoded(encoded: Any, what: str) -> bytes:
    if not isinstance(encoded, str) or not encoded:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"{what} must be a base64-encoded file")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as error:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"{what} is not valid base64") from error


def _inputs_from(payload: Mapping[str, Any]) -> np.ndarray:
    """The request's float32 inputs, shaped by its ``shape`` (the number of inputs first)."""
    shape = payload.get("shape")
    if (not isinstance(shape, list) or not 2 <= len(shape) <= MAX_RANK
            or any(not isinstance(d, int) or isinstance(d, bool) or d < 1 for d in shape)):
        raise RequestError(HTTPStatus.BAD_REQUEST, f"'shape' must list 2-{MAX_RANK} positive whole numbers (the number "
                                                   f"of inputs first), got {shape!r}")
    data = _decoded(payload.get("inputs"), "'inputs'")
    if len(data) != 4 * math.prod(shape):
        raise RequestError(HTTPStatus.BAD_REQUEST, f"'inputs' holds {len(data)} bytes; float32 inputs of shape {shape} "
                                                   f"take {4 * math.prod(shape)}")
    return np.frombuffer(data, dtype="<f4").reshape(shape).astype(np.float32)


def _available_runtimes() -> dict[str, str]:
    found = {}
    for name in FILE_RUNTIMES:
        try:
            found[name] = get_runtime(name).version()
        except (ImportError, ValueError):
            continue
    return found


def _runtime_from(payload: Mapping[str, Any]) -> Runtime:
    name = payload.get("runtime")
    if name not in FILE_RUNTIMES:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"'runtime' must be one of {', '.join(FILE_RUNTIMES)}; "
                                                   f"got {name!r} (known runtimes: {', '.join(list_runtimes())})")
    threads, precision = payload.get("threads", 1), payload.get("precision", "fp32")
    if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= MAX_THREADS:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"'threads' must be a whole number 1-{MAX_THREADS}, got {threads!r}")
    if not isinstance(precision, str):
        raise RequestError(HTTPStatus.BAD_REQUEST, f"'precision' must be a string, got {precision!r}")
    try:
        return get_runtime(str(name), threads=threads, precision=precision)
    except (TypeError, ValueError) as error:
        raise RequestError(HTTPStatus.BAD_REQUEST, str(error)) from error


def _protocol_from(payload: Mapping[str, Any], max_seconds: float) -> Protocol:
    raw = payload.get("protocol", {})
    if not isinstance(raw, dict):
        raise RequestError(HTTPStatus.BAD_REQUEST, "'protocol' must be an object")
    fields = {f.name: f.type for f in dataclasses.fields(Protocol)}
    for key, value in raw.items():
        if key not in fields:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"unknown protocol setting {key!r}; known: {', '.join(fields)}")
        wanted = fields[key]
        if wanted == "str":
            ok = isinstance(value, str)
        else:
            ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and (
                wanted != "int" or isinstance(value, int)) and value >= 0
        if not ok:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"protocol setting {key!r} must be a non-negative "
                                                       f"{'whole number' if wanted == 'int' else wanted}, got {value!r}")
        if key in PROTOCOL_CAPS and value > PROTOCOL_CAPS[key]:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"protocol setting {key!r} is capped at {PROTOCOL_CAPS[key]} "
                                                       f"by this agent, got {value}")
    try:
        protocol = Protocol(**raw)
    except (TypeError, ValueError) as error:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"bad 'protocol': {error}") from error
    if max(protocol.max_rounds * protocol.round_budget_s, protocol.min_span_s) > max_seconds:
        raise RequestError(HTTPStatus.BAD_REQUEST, "the protocol asks for more time than the agent allows")
    return protocol


class AgentError(RuntimeError):
    """The agent answered with an error, or could not be reached."""


class AgentClient:
    """Measures on a remote agent; used as a profiling target (``hwnas profile --target URL``)."""

    def __init__(self, url: str, runtime: Runtime, token: str | None = None, chunk: int = 16,
                 timeout_s: float = 900.0) -> None:
        self.url = url.rstrip("/")
        self.runtime = runtime
        self.token = token
        self.chunk = chunk
        self.timeout_s = timeout_s
        self._device: dict[str, Any] | None = None

    def _request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                answer = json.loads(response.read(), parse_constant=_no_constant)
                if not isinstance(answer, dict):
                    raise AgentError(f"agent {self.url} answered with {type(answer).__name__}, not a JSON object")
                return answer
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")
            try:
                detail = json.loads(detail).get("error", detail)
            except json.JSONDecodeError:
                pass
            raise AgentError(f"agent {self.url} answered {error.code}: {detail}") from error
        except (json.JSONDecodeError, UnicodeDecodeError, RequestError) as error:
            raise AgentError(f"agent {self.url} answered with something that is not strict JSON: {error}") from None
        except (urllib.error.URLError, OSError) as error:
            raise AgentError(f"cannot reach the agent at {self.url}: {error}; is 'hwnas agent serve' running "
                             "there?") from error

    def info(self) -> dict[str, Any]:
        """The agent's device metadata and runtimes."""
        return self._request("GET", "/info")

    def device(self) -> dict[str, Any]:
        """The remote device's metadata (cached)."""
        if self._device is None:
            device = self.info().get("device")
            if not isinstance(device, dict):
                raise AgentError(f"agent {self.url} answered /info without its device; is it an hwnas agent?")
            self._device = dict(device)
            self._device["agent_url"] = self.url
        return self._device

    def measure_bytes(self, models: Mapping[str, bytes], protocol: Protocol) -> dict[str, LatencyStats]:
        """Measure model files on the agent in one request."""
        payload = {
            "runtime": self.runtime.name, "threads": self.runtime.threads, "precision": self.runtime.precision,
            "protocol": protocol.to_dict(),
            "models": {name: base64.b64encode(data).decode() for name, data in models.items()},
        }
        answer = self._request("POST", "/measure", payload)
        stats = answer.get("stats") if isinstance(answer, dict) else None
        if not isinstance(stats, dict) or set(stats) != set(models):
            raise AgentError(f"agent {self.url} answered without statistics for every model sent ({sorted(models)}); "
                             "is it an hwnas agent of this version?")
        try:
            return {name: LatencyStats.from_dict(s) for name, s in stats.items()}
        except ValueError as error:
            raise AgentError(f"agent {self.url} answered with unusable statistics: {error}") from None

    def outputs(self, path: Path, inputs: np.ndarray) -> np.ndarray:
        """The file's first output on each of ``inputs`` (N inputs stacked on the first axis, each run alone at batch
        1), computed on the agent's device, in requests that fit the agent's size limit (at most ``OUTPUT_REQUEST_BYTES``
        of inputs each)."""
        model = base64.b64encode(Path(path).read_bytes()).decode()
        inputs = np.ascontiguousarray(inputs, dtype="<f4")
        limits = self.info().get("limits")
        limit = limits.get("max_bytes") if isinstance(limits, dict) else None
        limit = limit if isinstance(limit, int) and not isinstance(limit, bool) else DEFAULT_MAX_BYTES
        room = min(OUTPUT_REQUEST_BYTES, (limit - len(model) - 4096) * 3 // 4)  # base64 grows bytes by 4/3
        per_request = max(1, room // max(1, inputs[:1].nbytes))
        parts = []
        for start in range(0, len(inputs), per_request):
            chunk = inputs[start:start + per_request]
            payload = {"runtime": self.runtime.name, "threads": self.runtime.threads,
                       "precision": self.runtime.precision, "model": model,
                       "inputs": base64.b64encode(chunk.tobytes()).decode(), "shape": list(chunk.shape)}
            try:
                answer = self._request("POST", "/outputs", payload)
            except AgentError as error:
                if "answered 404" in str(error):
                    raise AgentError(f"agent {self.url} has no /outputs (an hwnas older than this one): update hwnas "
                                     "there, or export without --target to check parity here") from None
                raise
            try:
                shape = [int(d) for d in answer["shape"]]
                out = np.frombuffer(base64.b64decode(answer["outputs"], validate=True), dtype="<f4").reshape(shape)
            except (KeyError, TypeError, ValueError, binascii.Error) as error:
                raise AgentError(f"agent {self.url} answered /outputs without usable outputs ({error}); is it an "
                                 "hwnas agent of this version?") from None
            if len(out) != len(chunk):
                raise AgentError(f"agent {self.url} returned {len(out)} outputs for {len(chunk)} inputs")
            parts.append(out.astype(np.float32))
        return np.concatenate(parts)

    def measure_files(
        self, refs: Mapping[str, ModelRef], protocol: Protocol, store: Any = None, prefix: str = "",
        on_round: Callable[[int, int], None] | None = None,
    ) -> dict[str, LatencyStats]:
        """Measure in chunks; each finished chunk is stored so a restart skips it."""
        keys = list(refs)
        results: dict[str, LatencyStats] = {}
        for start in range(0, len(keys), self.chunk):
            chunk = keys[start:start + self.chunk]
            cached = store.result(f"{prefix}chunk:{start}") if store else None
            if cached is None:
                stats = self.measure_bytes({k: refs[k].path.read_bytes() for k in chunk}, protocol)
                cached = {k: s.to_dict() for k, s in stats.items()}
                if store:
                    store.set_result(f"{prefix}chunk:{start}", cached)
            results.update({k: LatencyStats.from_dict(v) for k, v in cached.items()})
            if on_round is not None:
                on_round(round(protocol.max_rounds * len(results) / len(keys)), protocol.max_rounds)
        return results

    def measure_modules(
        self, items: Mapping[str, tuple[nn.Module, torch.Tensor]], protocol: Protocol, workdir: Path,
    ) -> dict[str, LatencyStats]:
        """Export locally, measure remotely."""
        refs = self.runtime.export(items, workdir)
        return self.measure_bytes({k: r.path.read_bytes() for k, r in refs.items()}, protocol)


def serve(host: str = "127.0.0.1", port: int = 8765, token: str | None = None, **limits: Any) -> None:
    """Run the agent until interrupted."""
    server = AgentServer(host, port, token, **limits)
    print(f"hwnas agent serving on {server.url} (runtimes: {', '.join(_available_runtimes())})", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
