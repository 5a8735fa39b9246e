"""Software on emulated machines: the Python their image has, a local wheel index they may install
from, and ``uv`` allowed only into a folder under the machine's own directory.

- Machine images: ``"host"`` (default) is this host's Python, which has everything the tests' kernel
  has; a :class:`MachineImage` is a Python with only the packages it names (e.g. dask, distributed and
  bokeh), built once with uv into a cache folder and reused, so installs on the nodes really happen.
- The wheel index: a folder of wheels served over HTTP on a loopback address (a flat ``--find-links``
  page), standing in for the package index; the nodes never reach the internet.
- ``uv`` on a node: ``uv pip install --target DIR`` with DIR under the node's own directory, its
  cache there too, from the local index only; anything else is refused, as package managers are.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.server
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from functools import partial

IMAGES_CACHE = os.environ.get("DASK_AWS_MAGIC_SANDBOX_CACHE") or os.path.join(
    os.path.expanduser("~"), ".cache", "dask-aws-magic-sandbox")


def uv_binary() -> str:
    """The host's uv (a test dependency of the project): its Python package's binary, or the PATH's."""
    with contextlib.suppress(ImportError, FileNotFoundError):
        import uv

        return str(uv.find_uv_bin())
    found = shutil.which("uv")
    if not found:
        raise RuntimeError("the sandbox needs uv for machine images and installs on nodes: pip install uv")
    return found


@dataclass(frozen=True)
class MachineImage:
    """A node Python with only ``packages`` installed (pip requirement strings), from ``find_links`` (a wheel
    folder) when given, else from the package index; built once and cached under ``IMAGES_CACHE``."""

    packages: tuple[str, ...]
    find_links: str | None = None
    name: str = field(default="bare", compare=False)

    @property
    def folder(self) -> str:
        wanted = json.dumps([sys.version, sys.executable, sorted(self.packages), self.find_links])
        return os.path.join(IMAGES_CACHE, "images", hashlib.sha256(wanted.encode()).hexdigest()[:16])

    def python(self) -> str:
        """The image's interpreter, building the image first if it is not in the cache."""
        folder = self.folder
        python = os.path.join(folder, "bin", "python")
        done = os.path.join(folder, ".built")
        if os.path.exists(done):
            return python
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        with open(folder + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two sandboxes building the same image: one builds
            if os.path.exists(done):
                return python
            shutil.rmtree(folder, ignore_errors=True)
            uv = uv_binary()
            base = os.path.realpath(sys.executable)  # the host's interpreter itself, not its venv
            subprocess.run([uv, "venv", "-q", "--python", base, folder], check=True)
            source = ["--no-index", "--find-links", self.find_links] if self.find_links else []
            subprocess.run([uv, "pip", "install", "-q", "--python", python, *source, *self.packages], check=True)
            open(done, "w").close()
        return python


def image_python(image: MachineImage | str | None) -> str:
    """The interpreter of a machine image: "host" or None, this host's own; a path, that interpreter."""
    if image is None or image == "host":
        return sys.executable
    if isinstance(image, MachineImage):
        return image.python()
    if os.path.isabs(image) and os.access(image, os.X_OK):
        return image
    raise ValueError(f"unknown machine image {image!r}: use 'host', a Python interpreter's path or a MachineImage")


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


class WheelIndex:
    """A folder of wheels served on a loopback address: its URL is a ``--find-links`` page."""

    def __init__(self, folder: str) -> None:
        if not os.path.isdir(folder):
            raise ValueError(f"the wheel folder {folder} does not exist")
        self.folder = folder
        handler = partial(_QuietFiles, directory=folder)
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="sandbox-wheels", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> WheelIndex:
        self._thread.start()
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._server.shutdown()
        self._server.server_close()


# The `uv` a node finds first on its PATH: run by the host's Python, it checks the command and runs the
# host's uv with the node's cache and the sandbox's index only.
_GUARD = r"""
import os, sys
uv, node, index, args = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
def refuse(why):
    print("[sandbox] uv " + " ".join(args) + ": refused: " + why, file=sys.stderr)
    sys.exit(1)
if args[:2] != ["pip", "install"]:
    refuse("only `uv pip install --target DIR` runs on an emulated machine")
if any(a in ("--system", "--prefix", "--user", "--break-system-packages") or a.startswith("--prefix=")
       for a in args):
    refuse("installs go into a folder of the machine's own (--target), never into a Python")
targets = [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("--target", "-t")]
targets += [a.split("=", 1)[1] for a in args if a.startswith("--target=")]
root = os.path.realpath(node) + os.sep
if len(targets) != 1 or not os.path.realpath(targets[0]).startswith(root):
    refuse("--target must name one folder under this machine's own root")
env = dict(os.environ, UV_CACHE_DIR=os.path.join(node, "uv-cache"), UV_PYTHON_DOWNLOADS="never",
           UV_NO_CONFIG="1")
env.pop("UV_INDEX_URL", None)
env.pop("UV_EXTRA_INDEX_URL", None)
source = ["--no-index"] + (["--find-links", index] if index else [])
os.execve(uv, [uv, *args[:2], *source, *args[2:]], env)
"""


def uv_shim(node_directory: str, index_url: str | None) -> str:
    """The body of the ``uv`` command on a node (a ``/bin/sh`` script)."""
    host = shlex.quote(sys.executable)
    try:
        uv = shlex.quote(uv_binary())
    except RuntimeError as exc:
        return f"echo {shlex.quote(f'[sandbox] uv: {exc}')} >&2\nexit 1\n"
    return (f"exec {host} -I -S -c {shlex.quote(_GUARD)} {uv} {shlex.quote(node_directory)} "
            f'{shlex.quote(index_url or "")} "$@"\n')
