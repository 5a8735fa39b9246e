"""The scheduler's dashboard through the Jupyter server: ``dashboard/NAME/PATH`` (HTTP and websockets).

An authenticated route, so the dashboard works when JupyterLab runs on a machine whose users'
browsers cannot reach the scheduler. For a TLS dashboard the server connects as the cluster's own
client would: the cluster's CA, and its client certificate when it has one.
"""

from __future__ import annotations

import json
import os
import ssl
import tempfile
from typing import Any
from urllib.parse import urlsplit

import tornado.ioloop
import tornado.web
import tornado.websocket
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from ..core import inventory
from ..core.connection import security_of
from ..core.errors import ClusterNotFound, DaskAwsMagicError

HOP_HEADERS = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
               "transfer-encoding", "upgrade", "host", "content-length", "cookie", "authorization",
               "content-encoding"}
TIMEOUT = 30.0


def dashboard_origin(record: Any) -> str:
    """``scheme://host:port`` of the cluster's dashboard."""
    if not record.dashboard_link:
        raise ClusterNotFound(f"The cluster {record.name!r} has no dashboard (yet): it is {record.display_status}.")
    parts = urlsplit(record.dashboard_link)
    return f"{parts.scheme}://{parts.netloc}"


def ssl_context(record: Any) -> ssl.SSLContext | None:
    """The client TLS context for the cluster's dashboard (None for plain HTTP)."""
    if not (record.dashboard_link or "").startswith("https:"):
        return None
    security = security_of(record)
    context = ssl.create_default_context()
    if security is None:
        return context
    ca = getattr(security, "tls_ca_file", None)
    if ca:
        if "-----BEGIN" in ca:
            context.load_verify_locations(cadata=ca)
        else:
            context.load_verify_locations(cafile=ca)
        context.check_hostname = False  # the cluster's own CA signs certificates for its addresses
    cert, key = getattr(security, "tls_client_cert", None), getattr(security, "tls_client_key", None)
    if cert:
        _load_client_cert(context, cert, key)
    return context


def _load_client_cert(context: ssl.SSLContext, cert: str, key: str | None) -> None:
    """The client certificate (file paths, or PEM text: ssl only reads files, so a private temporary one)."""
    if "-----BEGIN" not in cert:
        context.load_cert_chain(cert, key)
        return
    with tempfile.TemporaryDirectory(prefix="dask-aws-magic-tls-") as folder:  # 0700
        path = os.path.join(folder, "client.pem")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as out:
            out.write(cert if not key or key in cert else f"{cert.rstrip()}\n{key}")
        context.load_cert_chain(path)


class DashboardProxyHandler(WebSocketMixin, tornado.websocket.WebSocketHandler, JupyterHandler):
    """Forwards a request (or a websocket) to the cluster's dashboard."""

    upstream: Any = None

    async def _target(self, name: str, path: str, scheme: str = "") -> tuple[str, ssl.SSLContext | None]:
        try:
            record = await tornado.ioloop.IOLoop.current().run_in_executor(None, inventory.find, name)
            origin, context = dashboard_origin(record), ssl_context(record)
        except ClusterNotFound as exc:
            raise tornado.web.HTTPError(404, log_message=str(exc).replace("%", "%%")) from None
        except DaskAwsMagicError as exc:
            raise tornado.web.HTTPError(400, log_message=str(exc).replace("%", "%%")) from None
        if scheme:
            origin = origin.replace("http", scheme, 1)
        query = f"?{self.request.query}" if self.request.query else ""
        return f"{origin}/{path}{query}", context

    @tornado.web.authenticated
    async def get(self, name: str, path: str) -> None:
        if self.request.headers.get("Upgrade", "").lower() == "websocket":
            self.target = await self._target(name, path, "ws")
            await tornado.websocket.WebSocketHandler.get(self, name, path)
            return
        await self._forward(name, path)

    @tornado.web.authenticated
    async def post(self, name: str, path: str) -> None:
        await self._forward(name, path)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": message.replace("%%", "%"), "status": status_code}))

    async def _forward(self, name: str, path: str) -> None:
        url, context = await self._target(name, path)
        headers = {k: v for k, v in self.request.headers.get_all() if k.lower() not in HOP_HEADERS}
        body = self.request.body if self.request.method == "POST" else None
        request = HTTPRequest(url, method=self.request.method, headers=headers, body=body, ssl_options=context,
                              follow_redirects=False, request_timeout=TIMEOUT, decompress_response=True)
        try:
            answer = await AsyncHTTPClient().fetch(request, raise_error=False)
        except (OSError, HTTPClientError) as exc:
            raise tornado.web.HTTPError(502, log_message=f"The dashboard of {name!r} did not answer: {exc}") from None
        self.set_status(answer.code, answer.reason)
        seen: set[str] = set()  # Jupyter's own headers (its CSP, ...) stay unless the dashboard sets them
        for key, value in answer.headers.get_all():
            if key.lower() in HOP_HEADERS | {"set-cookie"}:
                continue
            (self.add_header if key.lower() in seen else self.set_header)(key, value)
            seen.add(key.lower())
        if answer.code in (301, 302, 303, 307, 308) and "Location" in answer.headers:
            self.set_header("Location", self._local(name, answer.headers["Location"]))
        if answer.body:
            self.write(answer.body)
        self.finish()

    def _local(self, name: str, location: str) -> str:
        """A redirect of the dashboard, pointed back at this proxy."""
        path = urlsplit(location).path if "://" in location else location
        if not path.startswith("/"):
            return location
        return f"{self.base_url.rstrip('/')}/dask-aws-magic/dashboard/{name}{path}"

    # -- websockets ------------------------------------------------------------------------
    async def open(self, name: str, path: str) -> None:  # type: ignore[override]
        url, context = self.target
        request = HTTPRequest(url, ssl_options=context, request_timeout=TIMEOUT)
        try:
            self.upstream = await tornado.websocket.websocket_connect(
                request, on_message_callback=self._from_upstream,
                subprotocols=self.request.headers.get("Sec-WebSocket-Protocol", "").replace(" ", "").split(",")
                if self.request.headers.get("Sec-WebSocket-Protocol") else None)
        except (OSError, tornado.websocket.WebSocketError, HTTPClientError) as exc:
            self.log.warning("dashboard websocket of %s: %s", name, exc)
            self.close(1011, "the dashboard did not answer")

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return subprotocols[0] if subprotocols else None

    def _from_upstream(self, message: str | bytes | None) -> None:
        if message is None:
            self.close()
            return
        if self.ws_connection is not None:
            self.write_message(message, binary=isinstance(message, bytes))

    def on_message(self, message: str | bytes) -> None:
        if self.upstream is not None:
            self.upstream.write_message(message, binary=isinstance(message, bytes))

    def on_close(self) -> None:
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None
