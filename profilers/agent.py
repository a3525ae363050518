"""The device agent: a small HTTP server for phones and boards with Python, and its client.

``hwnas agent serve`` receives model files (ONNX or TFLite bytes), runs them with the local runtime under the same
measurement protocol and returns statistics with its device metadata.

API (JSON over HTTP):
- ``GET /info`` -> device metadata and the runtimes available here;
- ``POST /measure`` with ``{"runtime", "threads", "precision", "protocol": {...}, "models": {name: base64}}``
  -> ``{"device": {...}, "runtime": {...}, "stats": {name: {min, p10, median, p90, mean, n}}}``.

Binds 127.0.0.1 by default; any other address requires a token (``Authorization: Bearer TOKEN``). Requests are
limited in size and in measurement time; malformed ones get a 4xx with a message, never a crash.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import torch
from torch import nn

from profilers import MissingRuntimeError, get_runtime, list_runtimes
from profilers._base import ModelRef, Runtime
from profilers._device import device_metadata
from profilers._protocol import Protocol, measure
from profilers._stats import LatencyStats

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_SECONDS = 600.0
FILE_RUNTIMES = ("onnxruntime", "litert", "onnxruntime-cuda", "tensorrt")


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


class AgentServer(ThreadingHTTPServer):
    """The agent's HTTP server; one measurement at a time (a lock), ``/info`` always answers."""

    daemon_threads = True

    def __init__(
        self, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES, max_seconds: float = DEFAULT_MAX_SECONDS, device_name: str | None = None,
    ) -> None:
        if not is_loopback(host) and not token:
            raise ValueError(f"the agent binds {host}, which is reachable from other machines: give --token "
                             "(or bind 127.0.0.1)")
        super().__init__((host, port), _Handler)
        self.token = token
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.device = device_metadata(device_name)
        self.measure_lock = threading.Lock()

    @property
    def url(self) -> str:
        """Where clients reach this server."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: AgentServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass

    def _reply(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _guard(self, handler: Callable[[], dict[str, Any]]) -> None:
        try:
            self._check_token()
            self._reply(HTTPStatus.OK, handler())
        except RequestError as error:
            self.close_connection = True
            self._reply(error.status, {"error": str(error)})
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
        if self.path != "/info":
            self._guard(lambda: _raise(HTTPStatus.NOT_FOUND, f"no such endpoint {self.path}; use GET /info or "
                                                             "POST /measure"))
            return
        self._guard(lambda: {"device": self.server.device, "runtimes": _available_runtimes()})

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path != "/measure":
            self._guard(lambda: _raise(HTTPStatus.NOT_FOUND, f"no such endpoint {self.path}; use POST /measure"))
            return
        self._guard(self._measure)

    def _read_json(self) -> dict[str, Any]:
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.isdigit():
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length header")
        length = int(length_text)
        if length > self.server.max_bytes:
            self._drain(length)
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"request of {length} bytes exceeds the agent's limit of {self.server.max_bytes}")
        try:
            payload = json.loads(self.rfile.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"body is not valid JSON: {error}") from error
        if not isinstance(payload, dict):
            raise RequestError(HTTPStatus.BAD_REQUEST, "body must be a JSON object")
        return payload

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
        with self.server.measure_lock, tempfile.TemporaryDirectory() as tmp:
            runners = {}
            for index, (name, encoded) in enumerate(models.items()):
                try:
                    data = base64.b64decode(str(encoded), validate=True)
                except (binascii.Error, ValueError) as error:
                    raise RequestError(HTTPStatus.BAD_REQUEST, f"model {name!r} is not valid base64") from error
                path = Path(tmp) / f"model_{index}{runtime.file_suffix}"
                path.write_bytes(data)
                try:
                    runners[str(name)] = runtime.load(path)["main"]
                except MissingRuntimeError:
                    raise
                except Exception as error:
                    raise RequestError(HTTPStatus.BAD_REQUEST,
                                       f"model {name!r} does not load in {runtime.name}: {error}") from error
            deadline = time.monotonic() + self.server.max_seconds
            stats = measure(runners, protocol, on_round=lambda done, total: _check_deadline(deadline))
        return {"device": self.server.device, "runtime": runtime.metadata(),
                "stats": {name: s.to_dict() for name, s in stats.items()}}


def _raise(status: HTTPStatus, message: str) -> dict[str, Any]:
    raise RequestError(status, message)


def _check_deadline(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise RequestError(HTTPStatus.REQUEST_TIMEOUT, "measurement ran past the agent's time limit; send fewer "
                                                       "models per request or a shorter protocol")


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
    try:
        return get_runtime(str(name), threads=int(payload.get("threads", 1)),
                           precision=str(payload.get("precision", "fp32")))
    except (TypeError, ValueError) as error:
        raise RequestError(HTTPStatus.BAD_REQUEST, str(error)) from error


def _protocol_from(payload: Mapping[str, Any], max_seconds: float) -> Protocol:
    raw = payload.get("protocol", {})
    if not isinstance(raw, dict):
        raise RequestError(HTTPStatus.BAD_REQUEST, "'protocol' must be an object")
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
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")
            try:
                detail = json.loads(detail).get("error", detail)
            except json.JSONDecodeError:
                pass
            raise AgentError(f"agent {self.url} answered {error.code}: {detail}") from error
        except (urllib.error.URLError, OSError) as error:
            raise AgentError(f"cannot reach the agent at {self.url}: {error}; is 'hwnas agent serve' running "
                             "there?") from error

    def info(self) -> dict[str, Any]:
        """The agent's device metadata and runtimes."""
        return self._request("GET", "/info")

    def device(self) -> dict[str, Any]:
        """The remote device's metadata (cached)."""
        if self._device is None:
            self._device = dict(self.info()["device"])
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
        return {name: LatencyStats.from_dict(s) for name, s in answer["stats"].items()}

    def measure_files(
        self, refs: Mapping[str, ModelRef], protocol: Protocol, store: Any, prefix: str,
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
