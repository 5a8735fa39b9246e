"""The scheduler's dashboard through the Jupyter server (HTTP and websockets), so it works when
JupyterLab runs on a machine whose users' browsers cannot reach the scheduler.

A proxied page is served from Jupyter's own origin, one fetch away from the Jupyter API: it must
never act as that origin, and Jupyter's credentials must never reach the upstream. So:

- the upstream proves it is the cluster's dashboard before anything is sent to it: an HTTPS dashboard
  by a certificate the cluster's own CA signed (that CA alone: not the system's, never plain HTTP
  instead), a local one by being served by the cluster's own scheduler process. A plain-HTTP
  dashboard elsewhere (``network.tls: false``) is proxied only when the server allows it
  (``c.DaskAwsMagicProxy.allow_plain_http = True``), with a warning in its log;
- only clusters proven yours are proxied (``inventory.find`` never returns an unverified one);
- every proxied answer carries ``Content-Security-Policy: sandbox`` without ``allow-same-origin``: the
  browser runs the page in an opaque origin, which Jupyter's cookies and API do not answer;
- the upstream gets no cookie, no ``Authorization``, no XSRF header, no ``Referer`` or ``Origin``, and
  no ``token`` in the query: only a short list of harmless headers.

A sandboxed page sends no cookies at all, so its scripts, styles and websockets could not pass
Jupyter's login. Two routes therefore: ``dashboard/NAME/PATH`` behind Jupyter's login, which answers
a page with a redirect to ``dashboard/NAME/~CAPABILITY/PATH``; there the capability (an HMAC of the
cluster's id with a key this server process made) is the credential, good for that one cluster's
dashboard and nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import ssl
import tempfile
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import tornado.ioloop
import tornado.web
import tornado.websocket
from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Bool
from traitlets.config import Configurable

from ..core import inventory, registry
from ..core.connection import DashboardIdentity, dashboard_identity
from ..core.errors import ClusterNotFound, DaskAwsMagicError

TIMEOUT = 30.0
# What the upstream may learn of the browser's request: nothing that authenticates to Jupyter.
REQUEST_HEADERS = {"accept", "accept-language", "cache-control", "content-type", "if-modified-since",
                   "if-none-match", "pragma", "range", "user-agent"}
JUPYTER_QUERY = {"token", "_xsrf"}  # Jupyter's credentials in a query string
# What the browser may not take from the upstream: hop-by-hop headers, and anything that acts on Jupyter's origin.
RESPONSE_DROPPED = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
                    "transfer-encoding", "upgrade", "content-length", "content-encoding", "set-cookie", "set-cookie2",
                    "clear-site-data", "service-worker-allowed", "strict-transport-security",
                    "access-control-allow-origin", "access-control-allow-credentials",
                    "access-control-allow-headers", "access-control-allow-methods", "access-control-expose-headers"}
SANDBOX = "sandbox allow-scripts allow-popups allow-downloads"  # never allow-same-origin
CAPABILITY = r"~(?P<capability>[0-9a-f]{32})"
_KEY = secrets.token_bytes(32)  # this server process's: its capabilities die with it
_CONTEXTS: dict[tuple[str, str | None], ssl.SSLContext] = {}  # (cluster id, dashboard link) -> its TLS check


class DaskAwsMagicProxy(Configurable):
    """The dashboard proxy's settings (``c.DaskAwsMagicProxy.allow_plain_http = True`` in
    ``jupyter_server_config.py``, or ``--DaskAwsMagicProxy.allow_plain_http=True``)."""

    allow_plain_http = Bool(False, config=True, help=(
        "Proxy the plain-HTTP dashboards of clusters started with `network.tls: false` on other machines, "
        "which nothing proves are the cluster's. Their pages still run sandboxed."))


def capability_of(cluster_id: str) -> str:
    """The path credential of one cluster's dashboard on this server."""
    return hmac.new(_KEY, cluster_id.encode(), hashlib.sha256).hexdigest()[:32]


def dashboard_origin(record: Any) -> str:
    """``scheme://host:port`` of the cluster's dashboard."""
    if not record.dashboard_link:
        raise ClusterNotFound(f"The cluster {record.name!r} has no dashboard (yet): it is {record.display_status}.")
    parts = urlsplit(record.dashboard_link)
    return f"{parts.scheme}://{parts.netloc}"


def ssl_context(proof: DashboardIdentity) -> ssl.SSLContext:
    """A client TLS context that trusts the cluster's CA and nothing else (no system store)."""
    security = proof.security
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # the cluster's own CA signs certificates for no hostname
    context.verify_mode = ssl.CERT_REQUIRED
    ca = security.tls_ca_file
    if "-----BEGIN" in ca:
        context.load_verify_locations(cadata=ca)
    else:
        context.load_verify_locations(cafile=ca)
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


def upstream_query(query: str) -> str:
    """The query string without Jupyter's credentials."""
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in JUPYTER_QUERY]
    return f"?{urlencode(kept)}" if kept else ""


def upstream_headers(headers: Any) -> dict[str, str]:
    return {k: v for k, v in headers.get_all() if k.lower() in REQUEST_HEADERS}


class _Proxy(WebSocketMixin, tornado.websocket.WebSocketHandler, JupyterHandler):
    """Forwards a request (or a websocket) to a proven cluster's dashboard."""

    upstream: Any = None
    record: Any = None

    async def _record(self, name: str) -> Any:
        try:
            return await tornado.ioloop.IOLoop.current().run_in_executor(None, inventory.find, name)
        except ClusterNotFound as exc:
            raise tornado.web.HTTPError(404, log_message=str(exc).replace("%", "%%")) from None
        except DaskAwsMagicError as exc:
            raise tornado.web.HTTPError(400, log_message=str(exc).replace("%", "%%")) from None

    async def _target(self, record: Any, path: str, scheme: str = "") -> tuple[str, ssl.SSLContext | None]:
        """The upstream URL of ``path`` and the TLS context that checks it; 403 when nothing proves the
        dashboard is the cluster's (and the server does not accept that)."""
        key = (record.cluster_id, record.dashboard_link)
        try:
            origin = dashboard_origin(record)
            context = _CONTEXTS.get(key)  # a cluster's CA never changes: checked once per server
            proof = DashboardIdentity() if context is not None else await tornado.ioloop.IOLoop.current(
                ).run_in_executor(None, dashboard_identity, record)
        except ClusterNotFound as exc:
            raise tornado.web.HTTPError(404, log_message=str(exc).replace("%", "%%")) from None
        except DaskAwsMagicError as exc:
            raise tornado.web.HTTPError(400, log_message=str(exc).replace("%", "%%")) from None
        if proof.security is not None:
            context = _CONTEXTS[key] = ssl_context(proof)
        elif context is None and not proof.own_process:
            allowed = self.settings.get("dask_aws_magic_proxy", DaskAwsMagicProxy()).allow_plain_http
            if not allowed:
                message = (f"The dashboard of {record.name!r} is not proxied: {proof.problem}. Open it directly "
                           f"({record.dashboard_link}), or let this server proxy plain-HTTP dashboards with "
                           "`c.DaskAwsMagicProxy.allow_plain_http = True`.")
                raise tornado.web.HTTPError(403, log_message=message.replace("%", "%%"))
            self.log.warning("dask-aws-magic: proxying the plain-HTTP dashboard of %s (%s), which nothing proves "
                             "is the cluster's (allow_plain_http is on)", record.name, record.dashboard_link)
        if scheme:
            origin = origin.replace("http", scheme, 1)
        return f"{origin}/{path}{upstream_query(self.request.query)}", context

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": message.replace("%%", "%"), "status": status_code}))

    def _prefix(self, name: str) -> str:
        """Where this cluster's proxied dashboard lives on this server (with its capability)."""
        return f"{self.base_url.rstrip('/')}/dask-aws-magic/dashboard/{name}/~{capability_of(self.record.cluster_id)}"

    async def _forward(self, name: str, path: str) -> None:
        url, context = await self._target(self.record, path)
        body = self.request.body if self.request.method == "POST" else None
        request = HTTPRequest(url, method=self.request.method, headers=upstream_headers(self.request.headers),
                              body=body, ssl_options=context, follow_redirects=False, request_timeout=TIMEOUT,
                              decompress_response=True)
        client = AsyncHTTPClient(force_instance=True)  # the loop's shared client may be another's (tests)
        try:
            answer = await client.fetch(request, raise_error=False)
        except (OSError, HTTPClientError) as exc:
            raise tornado.web.HTTPError(502, log_message=f"The dashboard of {name!r} did not answer: {exc}") from None
        finally:
            client.close()
        self.set_status(answer.code, answer.reason)
        seen: set[str] = set()  # Jupyter's own headers (its CSP, ...) stay unless the dashboard sets them
        for key, value in answer.headers.get_all():
            if key.lower() in RESPONSE_DROPPED:
                continue
            (self.add_header if key.lower() in seen else self.set_header)(key, value)
            seen.add(key.lower())
        self._sandbox()
        if answer.code in (301, 302, 303, 307, 308) and "Location" in answer.headers:
            self.set_header("Location", self._local(name, answer.headers["Location"]))
        if answer.body:
            self.write(answer.body)
        self.finish()

    def _sandbox(self) -> None:
        """Whatever the upstream said: the page runs in an opaque origin and leaks no URL."""
        self.add_header("Content-Security-Policy", SANDBOX)
        self.set_header("Referrer-Policy", "no-referrer")

    def _local(self, name: str, location: str) -> str:
        """A redirect of the dashboard, pointed back at this proxy."""
        path = urlsplit(location).path if "://" in location else location
        if not path.startswith("/"):
            return location
        return f"{self._prefix(name)}{path}"

    # -- websockets ------------------------------------------------------------------------
    async def _websocket(self, name: str, path: str) -> None:
        self.target = await self._target(self.record, path, "ws")
        await tornado.websocket.WebSocketHandler.get(self, name, path)

    async def open(self, name: str, path: str, *args: Any) -> None:  # type: ignore[override]
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

    def _is_websocket(self) -> bool:
        return self.request.headers.get("Upgrade", "").lower() == "websocket"


class DashboardProxyHandler(_Proxy):
    """``dashboard/NAME/PATH``, behind Jupyter's login: a page is answered with a redirect to its
    capability path; websockets and POSTs of token-authenticated clients are forwarded."""

    @tornado.web.authenticated
    async def get(self, name: str, path: str) -> None:
        self.record = await self._record(name)
        if self._is_websocket():
            await self._websocket(name, path)
            return
        query = upstream_query(self.request.query)
        self.set_header("Cache-Control", "no-store")
        self.set_header("Referrer-Policy", "no-referrer")
        self.redirect(f"{self._prefix(name)}/{path}{query}")

    @tornado.web.authenticated
    async def post(self, name: str, path: str) -> None:
        self.record = await self._record(name)
        await self._forward(name, path)


class CapabilityProxyHandler(_Proxy):
    """``dashboard/NAME/~CAPABILITY/PATH``: what a sandboxed dashboard page loads (it sends no cookie).
    The capability authenticates; Jupyter's login is not asked for, and nothing else is reachable."""

    def _checked(self, name: str, given: str) -> None:
        """The capability first, from the registry alone: an unauthenticated request costs no AWS call.
        (The entry route's ``find`` wrote the record of a cluster found elsewhere.)"""
        try:
            record = registry.get(name)
        except DaskAwsMagicError:
            record = None
        if record is None or not hmac.compare_digest(given, capability_of(record.cluster_id)):
            raise tornado.web.HTTPError(403, log_message="Not a dashboard of this server.")
        self.record = record

    def check_origin(self, origin: str | None = None) -> bool:
        # A sandboxed page's websocket comes from the opaque origin "null"; the capability authenticates it.
        return True

    def check_xsrf_cookie(self) -> None:
        """No cookie authenticates here, so there is no cross-site request to forge."""

    @allow_unauthenticated
    async def get(self, name: str, capability: str, path: str) -> None:
        self._checked(name, capability)
        if self._is_websocket():
            await self._websocket(name, path)
            return
        await self._forward(name, path)

    @allow_unauthenticated
    async def post(self, name: str, capability: str, path: str) -> None:
        self._checked(name, capability)
        await self._forward(name, path)
