"""Versions that differ between this kernel and a cluster's workers, said in one line.

What matters: Python, distributed's own list (dask, distributed, cloudpickle, msgpack, tornado, toolz,
numpy, pandas, lz4), every distribution the kernel has imported, and every local or editable project.
A distribution the workers lack is reported only when user code may need it there: not the kernel's
own machinery (ipykernel, Jupyter, this package and what only they require).
"""

from __future__ import annotations

import json
import sys
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from ..backends.environment import canonical

# distributed's versions module lists these; its multi-line table is replaced by our line.
DISTRIBUTED_PACKAGES = ("dask", "distributed", "msgpack", "cloudpickle", "tornado", "toolz", "numpy", "pandas",
                        "lz4")
KERNEL_ONLY = ("ipykernel", "dask-aws-magic", "jupyter-server", "jupyterlab", "notebook", "nbclient",
               "ipywidgets")
SCHEDULER_PACKAGES = ("python", "dask", "distributed", "cloudpickle", "lz4", "tornado", "toolz")
ABSENT = "missing"


@dataclass(frozen=True)
class Mismatch:
    """One distribution whose version differs: here (the kernel) and there (the workers, or the scheduler)."""

    name: str
    here: str
    there: str


def closure(roots: tuple[str, ...] | list[str]) -> set[str]:
    """The distributions ``roots`` require on this platform, transitively (as installed here; extras left out)."""
    from packaging.requirements import InvalidRequirement, Requirement

    seen: set[str] = set()
    todo = [canonical(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            try:
                req = Requirement(text)
            except InvalidRequirement:
                continue
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonical(req.name))
    return seen


@dataclass(frozen=True)
class _Installed:
    by_module: dict[str, list[str]]  # import name -> distributions
    local: set[str]  # distributions installed from a local folder (editable or not)
    machinery: set[str]  # the kernel's own machinery


def _read_installed() -> _Installed:
    local = set()
    for dist in metadata.distributions():
        text = dist.read_text("direct_url.json")
        if text and dist.metadata["Name"]:
            try:
                if "dir_info" in json.loads(text):
                    local.add(canonical(dist.metadata["Name"]))
            except ValueError:
                continue
    return _Installed(dict(metadata.packages_distributions()), local,
                      closure(KERNEL_ONLY) - closure(("dask", "distributed")))


_installed: Future[_Installed] | None = None
_installed_lock = threading.Lock()


def prepare() -> Future[_Installed]:
    """Start reading what is installed (~0.5 s: every distribution's file list), once per process, in a
    thread: :func:`connect`'s callers start it before opening the client, so it costs no waiting."""
    global _installed
    with _installed_lock:
        if _installed is None:
            _installed = Future()
            future = _installed

            def read() -> None:
                try:
                    future.set_result(_read_installed())
                except BaseException as exc:  # noqa: BLE001 - handed to whoever waits
                    future.set_exception(exc)

            threading.Thread(target=read, name="dask-aws-magic-versions", daemon=True).start()
        return _installed


def relevant() -> tuple[list[str], set[str]]:
    """The distributions to compare, and those among them the workers must have (not kernel machinery)."""
    installed = prepare().result()
    imported = {name.split(".")[0] for name in list(sys.modules)}
    names = {canonical(d) for module in imported for d in installed.by_module.get(module, [])}
    names |= installed.local | {canonical(n) for n in DISTRIBUTED_PACKAGES}
    needed = names - installed.machinery
    return sorted(names - (installed.local & installed.machinery)), needed


def compare(here: dict[str, Any], there: dict[str, dict[str, Any]], needed: set[str]) -> list[Mismatch]:
    """Mismatches between the kernel's ``here`` (name -> version or None) and each node's (node -> the same)."""
    found: dict[str, Mismatch] = {}
    for packages in there.values():
        for name, mine in here.items():
            theirs = packages.get(name)
            if mine is None or theirs == mine or name in found:
                continue
            if theirs is None and canonical(name) not in needed and name != "python":
                continue  # the kernel's own machinery
            found[name] = Mismatch(name, str(mine), str(theirs or ABSENT))
    return [found[name] for name in sorted(found)]


def mismatches(client: Any, excluded: list[str] | tuple[str, ...] = ()) -> list[Mismatch]:
    """What differs between this kernel and the cluster ``client`` is connected to (scheduler and workers);
    the ``excluded`` distributions (the profile's ``software.exclude``) may be missing there."""
    names, needed = relevant()
    needed = needed - {canonical(n) for n in excluded}
    reply = client.get_versions(check=False, packages=names)
    mine = reply["client"]["packages"]
    here = {"python": ".".join(str(p) for p in sys.version_info[:2]), **{n: mine.get(n) for n in names}}
    workers = reply.get("workers") or {}
    there = {}
    for node, info in [("scheduler", reply.get("scheduler")), *workers.items()]:
        packages = dict((info or {}).get("packages") or {})
        if packages.get("python"):
            packages["python"] = ".".join(str(packages["python"]).split(".")[:2])
        if node == "scheduler" and workers:  # it runs no user code: only what distributed checks there
            packages = {k: v for k, v in packages.items() if k in SCHEDULER_PACKAGES}
            packages = {**{k: here[k] for k in here if k not in packages}, **packages}
        # With no worker yet, the scheduler stands for them: the same image, given the same software.
        there[node] = packages
    return compare(here, there, needed)


def one_line(found: list[Mismatch], cluster: str) -> str:
    """The report: every mismatch, both versions, and the fix."""
    listed = "; ".join(f"{m.name} {m.here} here, {m.there} on the cluster" for m in found)
    return (f"dask-aws-magic: {cluster}'s workers differ from this kernel: {listed}. Fix: `%dask_cluster down "
            f"{cluster}` and `up` again with `software.sync` on (the default on AWS: it installs this kernel's "
            "versions), or pin them in `software.pip`.")
