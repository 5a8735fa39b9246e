"""A real ``jupyter lab`` for browser tests, and a JupyterLab page driven by Playwright.

Used through the fixtures in ``conftest.py`` (``jupyter_lab``, ``lab_page``); kept apart from them so
other browser tests (the JupyterLab sidebar's) reuse the same pieces.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Debian's chromium: the real binary first (the /usr/bin script adds flags of its own).
CHROMIUM_PATHS = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
NO_NEWS = {"@jupyterlab/apputils-extension/notification.jupyterlab-settings":
           {"checkForUpdates": False, "fetchNews": "false"}}
SERVER_START_TIMEOUT = 90.0
PAGE_TIMEOUT_MS = 30_000


def chromium_path() -> str | None:
    """The Chromium binary to drive: ``$DASK_AWS_MAGIC_CHROMIUM``, else Debian's, else None."""
    chosen = os.environ.get("DASK_AWS_MAGIC_CHROMIUM")
    if chosen:
        return chosen if os.access(chosen, os.X_OK) else None
    return next((p for p in CHROMIUM_PATHS if os.access(p, os.X_OK)), None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class JupyterLab:
    """A ``jupyter lab`` server started by the tests, stopped by its PID."""

    root: Path  # the folder it serves (notebooks go here)
    home: Path  # DASK_AWS_MAGIC_HOME of the server and of its kernels
    port: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, workdir: Path, env: dict[str, str] | None = None) -> JupyterLab:
        """Start the server with its own settings, workspaces and runtime folders; wait until it answers."""
        settings, workspaces, runtime = (workdir / n for n in ("settings", "workspaces", "runtime"))
        for path, values in NO_NEWS.items():
            target = settings / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(values))
        for folder in (workspaces, runtime, self.root, self.home.parent):
            folder.mkdir(parents=True, exist_ok=True)
        environment = {**os.environ, **(env or {}), "DASK_AWS_MAGIC_HOME": str(self.home),
                       "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(workspaces),
                       "JUPYTER_RUNTIME_DIR": str(runtime), "JUPYTER_CONFIG_DIR": str(workdir / "config")}
        command = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={self.port}",
                   "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1", f"--ServerApp.root_dir={self.root}",
                   f"--IdentityProvider.token={self.token}", "--LabApp.expose_app_in_browser=True",
                   # The sidebar's server extension, even where the install did not enable it.
                   "--ServerApp.jpserver_extensions=dask_aws_magic.serverext=True"]
        if os.geteuid() == 0:
            command.append("--allow-root")
        self.log = workdir / "jupyter-lab.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=environment,
                                            cwd=self.root, start_new_session=True)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited ({self.process.returncode}):\n{self.log_tail()}")
            with contextlib.suppress(OSError, urllib.error.URLError):
                self.api("GET", "api/status")
                return
            time.sleep(0.2)
        raise RuntimeError(f"jupyter lab did not answer within {SERVER_START_TIMEOUT:g} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        if self.log is None or not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Call the server's REST API with the token; the decoded JSON answer (None when empty)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Authorization": f"token {self.token}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            text = answer.read()
        return json.loads(text) if text else None

    def write_notebook(self, name: str, cells: list[str]) -> str:
        """Write a Python notebook of code ``cells`` into the served folder; its path for ``LabPage.open``."""
        import nbformat

        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(notebook, self.root / name)
        return name

    def shutdown_kernels(self) -> None:
        """Stop every session and kernel (between tests)."""
        for session in self.api("GET", "api/sessions") or []:
            with contextlib.suppress(OSError, urllib.error.URLError):
                self.api("DELETE", f"api/sessions/{session['id']}")
        for kernel in self.api("GET", "api/kernels") or []:
            with contextlib.suppress(OSError, urllib.error.URLError):
                self.api("DELETE", f"api/kernels/{kernel['id']}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


WAIT_FOR_APP = "() => window.jupyterapp !== undefined"
RESTORED = "async () => { await window.jupyterapp.restored; return true; }"
KERNEL_IDLE = """() => {
    const widget = window.jupyterapp.shell.currentWidget;
    const kernel = widget && widget.sessionContext && widget.sessionContext.session
        && widget.sessionContext.session.kernel;
    return Boolean(kernel) && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
}"""


class LabPage:
    """A JupyterLab page in headless Chromium; screenshots go to ``artifacts`` named after the test."""

    def __init__(self, page: Any, lab: JupyterLab, artifacts: Path, test_name: str):
        self.page, self.lab, self.artifacts, self.test_name = page, lab, artifacts, test_name
        self.saved: list[Path] = []

    def open(self, path: str) -> Any:
        """Open ``path`` in JupyterLab and wait until the app is restored and the kernel is idle."""
        self.page.goto(f"{self.lab.url}lab/tree/{path}?token={self.lab.token}")
        self.page.wait_for_function(WAIT_FOR_APP)
        self.page.evaluate(RESTORED)
        self.wait_kernel_idle()
        return self.page

    def wait_kernel_idle(self, timeout_ms: float = 60_000) -> None:
        self.page.wait_for_function(KERNEL_IDLE, timeout=timeout_ms)

    def command(self, name: str, args: dict[str, Any] | None = None) -> None:
        """Run a JupyterLab command without awaiting it (a command that opens a dialog never resolves)."""
        self.page.evaluate("([name, args]) => { window.jupyterapp.commands.execute(name, args); }",
                           [name, args or {}])

    def run_all_cells(self) -> None:
        self.command("notebook:run-all-cells")

    def screenshot(self, name: str, locator: Any = None) -> Path:
        """Save a screenshot of the page (or of ``locator`` only) as ``<test>-<name>.png``."""
        path = self.artifacts / f"{self.test_name}-{name}.png"
        if locator is None:
            self.page.screenshot(path=str(path), full_page=True)
        else:
            locator.screenshot(path=str(path))
        self.saved.append(path)
        return path
