"""moto's threaded server, with a WSGI layer that counts calls, holds some and injects faults."""

from __future__ import annotations

import io
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import WSGIRequestHandler, make_server

from .awsrequest import AwsRequest, parse_request
from .faults import Delays, Fault, Rules, error_response

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class CallCounter:
    """Thread-safe Counter of "service:Action" keys, and the last requests of each (their region and
    parameters, query-protocol names)."""

    KEPT = 200  # requests kept per action

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._requests: dict[str, deque[dict[str, str]]] = {}

    def add(self, request: AwsRequest) -> None:
        with self._lock:
            self._counts[request.key] += 1
            kept = self._requests.setdefault(request.key, deque(maxlen=self.KEPT))
            kept.append({**request.params, "@region": request.region or ""})

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self._counts)

    def requests(self, key: str) -> list[dict[str, str]]:
        with self._lock:
            return list(self._requests.get(key, ()))

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._requests.clear()


class SandboxMiddleware:
    """Counts every AWS request, holds those matching a delay (each server thread serves one
    request, so others go on meanwhile), and answers those matching a fault with an error."""

    def __init__(self, app: WsgiApp, calls: CallCounter, faults: Rules[Fault], delays: Delays) -> None:
        self.app = app
        self.calls = calls
        self.faults = faults
        self.delays = delays

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = _read_body(environ)
        request = parse_request(environ, body)
        if request is not None:
            self.calls.add(request)
            self.delays.hold(request)
            fault = self.faults.take(request)
            if fault is not None:
                status, headers, data = error_response(fault, request)
                start_response(f"{status} {_reason(status)}", headers)
                return [data]
        return self.app(environ, start_response)


def _read_body(environ: dict[str, Any]) -> bytes:
    """Read the request body and put an equivalent stream back for moto."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class SandboxServer(ThreadedMotoServer):
    """`ThreadedMotoServer` on a free loopback port, wrapped in `SandboxMiddleware`."""

    def __init__(self, calls: CallCounter, faults: Rules[Fault], delays: Delays,
                 ip_address: str = "127.0.0.1") -> None:
        super().__init__(ip_address=ip_address, port=0, verbose=False)
        self.calls = calls
        self.faults = faults
        self.delays = delays

    def _server_entry(self) -> None:
        app = SandboxMiddleware(DomainDispatcherApplication(create_backend_app), self.calls, self.faults,
                                self.delays)
        self._server = make_server(self._ip_address, self._port, app, True, request_handler=_QuietHandler)
        self._server_ready_event.set()
        self._server.serve_forever(poll_interval=0.05)

    @property
    def endpoint_url(self) -> str:
        host, port = self.get_host_and_port()
        return f"http://{host}:{port}"
