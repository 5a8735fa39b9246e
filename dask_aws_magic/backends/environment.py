"""The kernel's software as a lock the nodes can reproduce (``software.sync``).

Runs in the kernel's process, with no AWS: every installed distribution (``importlib.metadata``) as
``name==version``; those installed from a local folder or in editable mode (the code being developed)
built into small wheels with the kernel's own build tooling (``--no-deps``, never a whole venv);
VCS installs pinned to their commit. What a Linux node cannot reproduce (conda-installed, wanted only
on another OS, a local folder without a build backend, a failed build) is left out and listed with
its fix. The lock's key hashes everything that decides what the nodes get.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

FORMAT = 1
# Kernel-only tools that never go to the nodes whatever the profile says: this package (the nodes get
# what they need of it as text) and the installers themselves.
ALWAYS_EXCLUDED = ("dask-aws-magic", "pip", "uv")
BUILD_TIMEOUT = 300.0
NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")


def canonical(name: str) -> str:
    """A distribution name as indexes compare them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class LocalWheel:
    """A wheel built on the kernel's machine from a local folder or an editable install."""

    name: str
    version: str
    file: str  # the wheel's file name
    sha256: str  # of its contents (member names and bytes), not of the zip: builds differ in timestamps only
    path: str = ""  # where it is on this machine (not part of the lock)

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "file": self.file, "sha256": self.sha256}


@dataclass(frozen=True)
class Left:
    """A distribution left out of the lock, why, and the fix."""

    name: str
    version: str
    reason: str
    fix: str

    def line(self) -> str:
        return f"{self.name} {self.version}: {self.reason}; {self.fix}"


@dataclass
class Lock:
    """What the nodes get: pins from the index, direct references, local wheels and ``software.pip``."""

    python: str  # major.minor
    arch: str  # x86_64 | arm64 (the nodes')
    pins: list[str] = field(default_factory=list)  # name==version, sorted
    direct: list[str] = field(default_factory=list)  # "name @ git+url@commit", "name @ https://..."
    wheels: list[LocalWheel] = field(default_factory=list)
    pip: list[str] = field(default_factory=list)  # software.pip, installed with their dependencies
    left_out: list[Left] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The environment's name: a hash of everything that decides what the nodes install."""
        wanted = {"format": FORMAT, "python": self.python, "arch": self.arch, "pins": sorted(self.pins),
                  "direct": sorted(self.direct), "wheels": sorted(w.sha256 for w in self.wheels),
                  "pip": list(self.pip)}
        return hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()[:24]

    def to_json(self) -> dict[str, Any]:
        """The lock as the nodes read it (no local paths, nothing left out)."""
        return {"format": FORMAT, "key": self.key, "python": self.python, "arch": self.arch, "pins": self.pins,
                "direct": self.direct, "wheels": [w.to_json() for w in self.wheels], "pip": self.pip}

    def summary(self) -> str:
        parts = [f"{len(self.pins)} pinned distributions"]
        if self.wheels:
            parts.append(f"{len(self.wheels)} local wheel(s) ({', '.join(w.name for w in self.wheels)})")
        if self.direct:
            parts.append(f"{len(self.direct)} direct reference(s)")
        if self.pip:
            parts.append(f"software.pip: {', '.join(self.pip)}")
        return ", ".join(parts)


# -- reading the kernel's distributions ----------------------------------------------------------
@dataclass
class _Dist:
    name: str
    version: str
    installer: str
    direct_url: dict[str, Any] | None
    requires: list[str]
    files_root: str  # the folder holding its .dist-info


def _distributions(paths: list[str] | None) -> dict[str, _Dist]:
    """The distributions visible on ``paths`` (sys.path by default), first found wins as for imports."""
    from importlib import metadata

    from ..aws.sync_environment import core_metadata

    found: dict[str, _Dist] = {}
    for dist in metadata.distributions(path=paths if paths is not None else sys.path):
        name, version, requires = core_metadata(dist)
        if not name or canonical(name) in found:
            continue
        text = dist.read_text("direct_url.json")
        try:
            direct = json.loads(text) if text else None
        except ValueError:
            direct = None
        root = str(getattr(dist, "_path", ""))
        found[canonical(name)] = _Dist(name=name, version=version, installer=(dist.read_text("INSTALLER") or "")
                                       .strip(), direct_url=direct, requires=requires, files_root=root)
    return found


def _node_environment(python: str, arch: str) -> dict[str, str]:
    """What environment markers see on a Linux node with ``python`` and ``arch``."""
    machine = "aarch64" if arch == "arm64" else "x86_64"
    return {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix", "platform_machine": machine,
            "python_version": python, "python_full_version": f"{python}.0", "implementation_name": "cpython",
            "platform_python_implementation": "CPython"}


def _wanted_elsewhere_only(dists: dict[str, _Dist], python: str, arch: str) -> dict[str, str]:
    """Distributions that every installed distribution requiring them requires only under markers a Linux
    node does not meet (``pywin32; sys_platform == "win32"``): name -> the marker."""
    from packaging.requirements import InvalidRequirement, Requirement

    node = _node_environment(python, arch)
    needed_here: set[str] = set()
    elsewhere: dict[str, str] = {}
    for dist in dists.values():
        for text in dist.requires:
            if ";" not in text:  # no marker: needed everywhere (most requirements; parsing them costs)
                needed_here.add(canonical(re.split(r"[\s\[(<>=!~@]", text, maxsplit=1)[0]))
                continue
            if "extra" in text.split(";", 1)[1]:
                continue  # an extra's requirement says nothing about the platform
            try:
                req = Requirement(text)
            except InvalidRequirement:
                continue
            name = canonical(req.name)
            if req.marker is None or req.marker.evaluate(node):
                needed_here.add(name)
            else:
                elsewhere.setdefault(name, str(req.marker))
    return {name: marker for name, marker in elsewhere.items() if name not in needed_here and name in dists}


# -- local builds --------------------------------------------------------------------------------
def _content_hash(wheel: str) -> str:
    digest = hashlib.sha256()
    with zipfile.ZipFile(wheel) as archive:
        for info in sorted(archive.infolist(), key=lambda i: i.filename):
            digest.update(info.filename.encode() + b"\0")
            digest.update(hashlib.sha256(archive.read(info)).digest())
    return digest.hexdigest()


def _has_build_backend(folder: str) -> bool:
    return any(os.path.isfile(os.path.join(folder, f)) for f in ("pyproject.toml", "setup.py", "setup.cfg"))


def build_wheel(folder: str, out: str) -> str:
    """Build the project in ``folder`` into a wheel in ``out``; its path. First with the kernel's own build
    tooling (nothing downloaded), then, if that lacks something (say ``wheel`` for an old setuptools), in
    pip's isolated build environment with the project's declared build requirements. Raises RuntimeError
    with pip's own reason."""
    os.makedirs(out, exist_ok=True)
    first = None
    for isolation in (["--no-build-isolation", "--no-index"], []):
        fresh = tempfile.mkdtemp(dir=out)  # only this build's wheel in it
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "--disable-pip-version-check",
                   "-q", "-w", fresh, folder]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT,
                                  env={**os.environ, "PIP_NO_INPUT": "1"})
            wheels = sorted(f for f in os.listdir(fresh) if f.endswith(".whl"))
            if not done.returncode and wheels:
                return shutil.move(os.path.join(fresh, wheels[0]), os.path.join(out, wheels[0]))
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(str(exc)) from None
        finally:
            shutil.rmtree(fresh, ignore_errors=True)
        first = first or _reason(done.stderr or done.stdout, done.returncode)
    raise RuntimeError(first)


def _reason(output: str, status: int) -> str:
    """The line of pip's output that says why a build failed."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith(("error:", "modulenotfounderror", "importerror"))
              and "subprocess-exited-with-error" not in line and "metadata-generation-failed" not in line]
    return (errors or lines or [f"pip exited with status {status}"])[-1]


_built: dict[tuple[str, str], LocalWheel] = {}
_built_lock = threading.Lock()


def _tree_stamp(folder: str) -> str:
    """A cheap fingerprint of a source tree (names, sizes, modification times), to reuse a build."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not d.endswith(".egg-info")
                         and d not in ("build", "dist", "__pycache__", "node_modules"))  # what builds write
        for name in sorted(files):
            path = os.path.join(root, name)
            try:
                stat = os.stat(path)
            except OSError:
                continue
            digest.update(f"{os.path.relpath(path, folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _local_wheel(dist: _Dist, folder: str, out: str) -> LocalWheel:
    """The wheel of ``dist`` built from ``folder`` (the same build again while the tree is unchanged)."""
    key = (folder, _tree_stamp(folder))
    with _built_lock:
        cached = _built.get(key)
    if cached is not None and os.path.isfile(cached.path):
        return cached
    path = build_wheel(folder, out)
    wheel = LocalWheel(dist.name, dist.version, os.path.basename(path), _content_hash(path), path)
    with _built_lock:
        _built[key] = wheel
    return wheel


def _from_url(url: str) -> str | None:
    """A local path from a ``file://`` URL (None for others)."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(url)
    return unquote(parsed.path) if parsed.scheme == "file" else None


def _carries_credentials(url: str) -> bool:
    """True when a URL names a password or a token (``https://user:token@host/...``, ``${TOKEN}``)."""
    from urllib.parse import urlparse

    parsed = urlparse(url.split("+", 1)[-1] if "+" in url.split("://", 1)[0] else url)
    return bool(parsed.password) or (bool(parsed.username) and parsed.username != "git") or "${" in url


# -- the lock ------------------------------------------------------------------------------------
def lock(*, python: str, arch: str, exclude: Iterable[str] = (), pip: Iterable[str] = (),
         paths: list[str] | None = None, wheel_dir: str | None = None) -> Lock:
    """The lock of the kernel's environment (``paths``: where to look, sys.path by default) for Linux
    nodes of ``arch`` running ``python``. Local projects are built into ``wheel_dir`` (a temporary folder
    by default)."""
    dists = _distributions(paths)
    excluded = {canonical(n) for n in [*ALWAYS_EXCLUDED, *exclude]}
    elsewhere = _wanted_elsewhere_only(dists, python, arch)
    out = wheel_dir or tempfile.mkdtemp(prefix="dask-aws-magic-wheels-")
    result = Lock(python=python, arch=arch, pip=list(pip))
    for key in sorted(dists):
        dist = dists[key]
        if key in excluded:
            continue
        if key in elsewhere:
            result.left_out.append(Left(dist.name, dist.version, f"wanted only where {elsewhere[key]}",
                                        f"nothing to do if it is not needed on Linux; else add it to software.pip "
                                        f"or `software.exclude: [{dist.name}]` to silence this"))
            continue
        if dist.installer == "conda":
            result.left_out.append(Left(dist.name, dist.version, "installed by conda (its name and build need not "
                                        "exist on the package index)", f"add `{dist.name}=={dist.version}` to "
                                        "software.pip if the index has it, or use software.image"))
            continue
        direct = dist.direct_url
        if not direct:
            result.pins.append(f"{dist.name}=={dist.version}")
            continue
        url = str(direct.get("url", ""))
        if _carries_credentials(url):
            result.left_out.append(Left(dist.name, dist.version, "installed from a URL that carries credentials, "
                                        "which never leave this machine", "install it on the nodes with "
                                        "software.image, or publish it to an index the nodes may read"))
            continue
        vcs = direct.get("vcs_info")
        if vcs:
            result.direct.append(f"{dist.name} @ {vcs['vcs']}+{url}@{vcs.get('commit_id', '')}")
            continue
        local = _from_url(url)
        if local is None:  # an archive from a URL: the same URL again
            result.direct.append(f"{dist.name} @ {url}")
            continue
        if os.path.isfile(local) and local.endswith(".whl"):
            result.wheels.append(LocalWheel(dist.name, dist.version, os.path.basename(local), _content_hash(local),
                                            local))
            continue
        if not os.path.isdir(local) or not _has_build_backend(local):
            result.left_out.append(Left(dist.name, dist.version, f"installed from {local}, which "
                                        f"{'has no pyproject.toml or setup.py' if os.path.isdir(local) else 'is gone'}",
                                        "give it a pyproject.toml (a build backend) and reinstall it, or "
                                        f"`software.exclude: [{dist.name}]`"))
            continue
        try:
            result.wheels.append(_local_wheel(dist, local, out))
        except RuntimeError as exc:
            result.left_out.append(Left(dist.name, dist.version, f"building a wheel from {local} failed ({exc})",
                                        "fix the build (`pip wheel --no-deps --no-build-isolation "
                                        f"{local}` shows why), or `software.exclude: [{dist.name}]`"))
    return result


def copy_wheels(lock_: Lock, folder: str) -> list[str]:
    """Copy the lock's local wheels into ``folder``; their paths there."""
    os.makedirs(folder, exist_ok=True)
    return [shutil.copy(w.path, os.path.join(folder, w.file)) for w in lock_.wheels]


def as_json(lock_: Lock) -> dict[str, Any]:
    """The lock with what was left out, for the cluster's record."""
    data = lock_.to_json()
    data["left_out"] = [asdict(left) for left in lock_.left_out]
    return data
