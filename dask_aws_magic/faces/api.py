"""The kernel-side Python API: ``dask_aws_magic.up(...)`` and friends. Works in a plain script too."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..backends.base import Plan
from ..core import lifecycle
from ..core.registry import ClusterRecord
from .handle import ClusterHandle


def up(
    profile: str = "local",
    name: str | None = None,
    workers: int | None = None,
    overrides: Iterable[str] | Mapping[str, Any] | None = None,
    timeout: float | None = None,
    *,
    wait_workers: int | None = None,
    keep_on_failure: bool = False,
    progress: bool = True,
) -> ClusterHandle:
    """Start a cluster from ``profile`` and return a connected :class:`ClusterHandle`.

    ``overrides`` is a mapping like ``{"worker.count": 8}`` or a list like ``["worker.count=8"]``.
    """
    from .progress import ProgressReporter

    reporter = ProgressReporter(f"up {name or profile}") if progress else None
    try:
        return lifecycle.up(profile, name=name, workers=workers, overrides=overrides, timeout=timeout,
                             wait_workers=wait_workers, keep_on_failure=keep_on_failure, on_event=reporter)
    finally:
        if reporter is not None:
            reporter.finish()


def attach(name: str) -> ClusterHandle:
    """Connect to the running cluster ``name`` (started by any kernel or the terminal)."""
    return lifecycle.attach(name)


def down(name: str | Iterable[str] | None = None, *, all: bool = False) -> list[str]:
    """Stop one or more clusters (or ``all=True``) and remove what they created."""
    names = [name] if isinstance(name, str) else list(name or [])
    return lifecycle.down(names, all=all)


def list_clusters() -> list[ClusterRecord]:
    """Every known cluster, reconciled with what is really running."""
    return lifecycle.list_clusters()


def plan(profile: str = "local", overrides: Iterable[str] | Mapping[str, Any] | None = None) -> Plan:
    """What ``up(profile)`` would create and cost, without creating anything."""
    return lifecycle.plan(profile, overrides)


def profiles() -> list[dict[str, str]]:
    """Every available profile with its backend, source and description."""
    return lifecycle.profiles()


def status(name: str) -> dict[str, Any]:
    """Workers, threads, memory and tasks of the cluster ``name``."""
    return lifecycle.status(name)


def scale(name: str, workers: int) -> ClusterRecord:
    """Set the number of workers of the cluster ``name``."""
    return lifecycle.scale(name, workers)


def adapt(name: str, minimum: int = 0, maximum: int | None = None) -> ClusterRecord:
    """Let the cluster ``name`` scale between ``minimum`` and ``maximum`` workers."""
    return lifecycle.adapt(name, minimum, maximum)


def logs(name: str) -> dict[str, str]:
    """Log output of each process or instance of the cluster ``name``."""
    return lifecycle.logs(name)


def restart(name: str) -> ClusterRecord:
    """Restart the workers of the cluster ``name``."""
    return lifecycle.restart(name)
