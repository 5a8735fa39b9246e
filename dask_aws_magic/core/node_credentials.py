"""What a cluster's scheduler and workers run to hold the data credentials forwarded to them.

Standalone: the standard library and ``distributed`` only, because the nodes do not have
dask_aws_magic; the plugins are sent pickled by value over the cluster's own (TLS) connection.

Each process keeps the credentials in memory and serves them on a loopback container credentials
endpoint: ``AWS_CONTAINER_CREDENTIALS_FULL_URI`` (``http://127.0.0.1:PORT/RANDOM``) with a random
``AWS_CONTAINER_AUTHORIZATION_TOKEN``, and the variables that would take precedence over it (static
keys, a relative container URI, a web identity, a profile) removed from ``os.environ``. Every AWS
SDK in the process (botocore, aiobotocore for s3fs, the C++ SDK for pyarrow) then reads them from
there and reads them again as they near their expiry, so registering the plugins again with new
credentials (same name) renews them in place; a worker that joins later gets the current ones from
the scheduler. Nothing is written to a file or a log.
"""

from __future__ import annotations

import calendar
import hmac
import json
import os
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin, WorkerPlugin

NAME = "dask-aws-magic-data-credentials"
ATTRIBUTE = "_dask_aws_magic_data_credentials"  # on the Worker or Scheduler: its endpoint, kept across renewals
FULL_URI = "AWS_CONTAINER_CREDENTIALS_FULL_URI"
TOKEN = "AWS_CONTAINER_AUTHORIZATION_TOKEN"
# Credential sources the SDKs would use before (or instead of) the container endpoint.
OVERRIDDEN = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
              "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
              "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE")
SERVED = ("AccessKeyId", "SecretAccessKey", "Token", "Expiration")


class CredentialsEndpoint:
    """A loopback HTTP server answering the current credentials to whoever shows the token."""

    def __init__(self) -> None:
        self.token = secrets.token_urlsafe(32)
        self.path = "/" + secrets.token_urlsafe(16)
        self._current: dict[str, Any] = {}
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                given = (self.headers.get("Authorization") or "").encode()
                with endpoint._lock:
                    current = dict(endpoint._current)
                if self.path != endpoint.path or not hmac.compare_digest(given, endpoint.token.encode()):
                    self.send_error(403)
                    return
                if not current:
                    self.send_error(404)
                    return
                body = json.dumps({key: current[key] for key in SERVED}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:  # never log a request
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="dask-aws-magic-credentials", daemon=True).start()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.path}"

    def update(self, credentials: dict[str, Any]) -> None:
        with self._lock:
            self._current = dict(credentials)

    def held(self) -> dict[str, Any]:
        """When the credentials held were issued and when they expire (nothing secret)."""
        with self._lock:
            return {key: self._current.get(key) for key in ("Expiration", "IssuedAt")} if self._current else {}

    def install(self) -> None:
        """Point this process's AWS SDKs at the endpoint (and at nothing that would come first)."""
        for variable in OVERRIDDEN:
            os.environ.pop(variable, None)
        os.environ[FULL_URI] = self.uri
        os.environ[TOKEN] = self.token


def hold(server: Any, credentials: dict[str, Any]) -> CredentialsEndpoint:
    """Give ``server`` (a Worker or the Scheduler) these credentials, through its one endpoint."""
    endpoint = getattr(server, ATTRIBUTE, None)
    if endpoint is None:
        endpoint = CredentialsEndpoint()
        setattr(server, ATTRIBUTE, endpoint)
    endpoint.update(credentials)
    endpoint.install()
    return endpoint


def held(dask_scheduler: Any = None, dask_worker: Any = None) -> dict[str, Any]:
    """What a node holds now (for ``client.run_on_scheduler``): issue and expiry times, never the secrets."""
    endpoint = getattr(dask_scheduler or dask_worker, ATTRIBUTE, None)
    return endpoint.held() if endpoint is not None else {}


def expired(info: dict[str, Any]) -> bool:
    """True when ``held()``'s answer holds nothing, or credentials whose expiry has passed."""
    if not info.get("Expiration"):
        return True
    return calendar.timegm(time.strptime(info["Expiration"], "%Y-%m-%dT%H:%M:%SZ")) <= time.time()


class WorkerCredentials(WorkerPlugin):
    """The data credentials of one worker process (registered again to renew them)."""

    name = NAME
    idempotent = False

    def __init__(self, credentials: dict[str, Any]) -> None:
        self.credentials = credentials

    def __repr__(self) -> str:
        return f"<WorkerCredentials expiring {self.credentials.get('Expiration')}>"

    def setup(self, worker: Any) -> None:
        hold(worker, self.credentials)

    def teardown(self, worker: Any) -> None:
        # Called when the plugin is replaced by its renewal too: the endpoint (and what the SDKs
        # cached from it) stays, and the credentials expire on their own.
        pass


class SchedulerCredentials(SchedulerPlugin):
    """The scheduler's data credentials (registered again to renew them)."""

    name = NAME
    idempotent = False

    def __init__(self, credentials: dict[str, Any]) -> None:
        self.credentials = credentials

    def __repr__(self) -> str:
        return f"<SchedulerCredentials expiring {self.credentials.get('Expiration')}>"

    async def start(self, scheduler: Any) -> None:
        scheduler.plugins.pop(self.name, None)  # a renewal replaces its predecessor without a warning
        hold(scheduler, self.credentials)
