"""The ECS task metadata endpoint (v4) of emulated tasks: ``$ECS_CONTAINER_METADATA_URI_V4/task``.

On ECS a container learns its task's address there; an emulated task gets the address moto gave
its network interface. Only the fields a container needs are served.

The same server is the container credentials endpoint of tasks that have a task role:
``$AWS_CONTAINER_CREDENTIALS_FULL_URI`` with ``$AWS_CONTAINER_AUTHORIZATION_TOKEN`` in the
``Authorization`` header (what the AWS SDKs send) answers the role's temporary credentials, issued by
STS when asked; a wrong or missing token is refused.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class TaskMetadataServer:
    """One HTTP server on 127.0.0.1 for every emulated task, keyed by task id."""

    def __init__(self) -> None:
        self._tasks: dict[str, dict[str, Any]] = {}
        self._credentials: dict[str, tuple[str, Callable[[], str]]] = {}  # task id -> (token, issue)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        tasks, lock, credentials = self._tasks, self._lock, self._credentials

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                parts = self.path.strip("/").split("/")  # v4/<task id>[/task] or v2/credentials/<task id>
                if parts[:2] == ["v2", "credentials"]:
                    self._credentials(parts[2] if len(parts) == 3 else "")
                    return
                with lock:
                    found = tasks.get(parts[1]) if len(parts) >= 2 and parts[0] == "v4" else None
                if found is None:
                    self.send_error(404)
                    return
                body = json.dumps(found if parts[2:] == ["task"] else found["Containers"][0]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _credentials(self, task_id: str) -> None:
                with lock:
                    token, issue = credentials.get(task_id, ("", None))
                given = self.headers.get("Authorization") or ""
                if issue is None or not hmac.compare_digest(given.encode(), token.encode()):
                    self.send_error(403 if issue is not None else 404)
                    return
                try:
                    body = issue().encode()
                except Exception as exc:  # the role cannot be assumed: as the ECS agent answers
                    self.send_error(500, f"unable to assume the task role: {type(exc).__name__}")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="sandbox-task-metadata",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def add(self, task_id: str, task_arn: str, cluster: str, container: str, ip: str) -> str:
        """Serve a task's metadata; returns its ``ECS_CONTAINER_METADATA_URI_V4``."""
        network = {"NetworkMode": "awsvpc", "IPv4Addresses": [ip]}
        with self._lock:
            self._tasks[task_id] = {"Cluster": cluster, "TaskARN": task_arn,
                                    "Containers": [{"Name": container, "Networks": [network]}]}
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v4/{task_id}"

    def add_credentials(self, task_id: str, issue: Callable[[], str]) -> dict[str, str]:
        """Serve a task role's credentials (``issue()`` gives them as JSON); returns the variables
        that point the task's AWS SDKs at them."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._credentials[task_id] = (token, issue)
        assert self._server is not None
        return {"AWS_CONTAINER_CREDENTIALS_FULL_URI":
                f"http://127.0.0.1:{self._server.server_address[1]}/v2/credentials/{task_id}",
                "AWS_CONTAINER_AUTHORIZATION_TOKEN": token}

    def remove(self, task_id: str) -> None:
        with self._lock:
            self._tasks.pop(task_id, None)
            self._credentials.pop(task_id, None)
