"""The kernel-side Python API: ``dask_aws_magic.up(...)`` and friends. Works in a plain script too.

Long calls (``up``, ``down``, ``scale``, ``restart``) take ``wait=False`` to return the running
:class:`~dask_aws_magic.core.operation.Operation` at once (``cancel()``, ``events_since()``,
``result()``); by default they wait, showing progress, and Ctrl-C cancels them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..backends.base import Plan
from ..core import inventory, lifecycle
from ..core.errors import DaskAwsMagicError
from ..core.operation import Operation, follow
from ..core.registry import ClusterRecord
from .handle import ClusterHandle, close_handles
from .handle import attach as attach  # the API's attach is the handle's


def _follow(operation: Operation, title: str, progress: bool) -> Any:
    from .progress import ProgressReporter

    reporter = ProgressReporter(title) if progress else None
    try:
        return follow(operation, reporter)
    finally:
        if reporter is not None:
            reporter.finish()


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
    wait: bool = True,
) -> ClusterHandle | Operation:
    """Start a cluster from ``profile`` and return a connected :class:`ClusterHandle`.

    ``overrides`` is a mapping like ``{"worker.count": 8}`` or a list like ``["worker.count=8"]``.
    With ``wait=False`` the running operation is returned instead; connect later with
    ``attach(operation.cluster)`` once ``operation.result()`` has returned.
    """
    operation = lifecycle.start_up(profile, name=name, workers=workers, overrides=overrides, timeout=timeout,
                                   wait_workers=wait_workers, keep_on_failure=keep_on_failure)
    if not wait:
        return operation
    record = _follow(operation, f"up {operation.cluster}", progress)
    handle = ClusterHandle(record)
    handle.connect()
    return handle


def down(name: str | Iterable[str] | None = None, *, all: bool = False, owner: str | None = None,
         wait: bool = True, unverified: Iterable[str] = ()) -> list[str] | Operation:
    """Stop one or more clusters (or all of yours with ``all=True``) and remove what they created.
    Someone else's cluster is stopped only by name and with ``owner`` naming its owner.

    ``unverified`` (used alone) removes exactly these resources, ids as ``list`` shows them, that carry
    our tags but that nothing proves belong to a cluster of yours; one line per thing removed."""
    if unverified:
        from ..core import unverified as unproven

        if name is not None or all:
            raise DaskAwsMagicError("Remove unverified resources on their own: `down --unverified ID ...`, "
                                    "without cluster names or --all.")
        return unproven.remove(list(unverified))
    names = [name] if isinstance(name, str) else list(name or [])
    for each in [None] if all else names:
        close_handles(each)
    operation = lifecycle.start_down(names, all=all, owner=owner)
    return follow(operation) if wait else operation


def list_clusters(owner: str | None = None) -> list[ClusterRecord]:
    """Your clusters (``owner="*"``: everyone's; a name: that owner's), reconciled with what is really
    running. Places that could not be listed (a region, a credentials profile) are reported as a
    warning; their clusters show as ``unknown`` when a record knows them."""
    found = inventory.survey(owner)
    incomplete = found.incomplete()
    if incomplete is not None:
        import warnings

        warnings.warn(str(incomplete), stacklevel=2)
    return found.clusters


def plan(profile: str = "local", overrides: Iterable[str] | Mapping[str, Any] | None = None) -> Plan:
    """What ``up(profile)`` would create and cost, without creating anything."""
    return lifecycle.plan(profile, overrides)


def profiles() -> list[dict[str, str]]:
    """Every available profile with its backend, source and description."""
    return lifecycle.profiles()


def status(name: str) -> dict[str, Any]:
    """Workers, threads, memory and tasks of the cluster ``name``."""
    return lifecycle.status(name)


def scale(name: str, workers: int, *, wait: bool = True) -> ClusterRecord | Operation:
    """Set the number of workers of the cluster ``name``."""
    operation = lifecycle.start_scale(name, workers)
    return follow(operation) if wait else operation


def adapt(name: str, minimum: int = 0, maximum: int | None = None) -> ClusterRecord:
    """Let the cluster ``name`` scale between ``minimum`` and ``maximum`` workers."""
    return lifecycle.adapt(name, minimum, maximum)


def logs(name: str) -> dict[str, str]:
    """Log output of each process or instance of the cluster ``name``."""
    return lifecycle.logs(name)


def panel(refresh: float = 3.0) -> Any:
    """An ipywidgets panel to start, follow, use and stop clusters (returned as a widget: make it the
    last expression of a cell). ``refresh``: seconds between two looks at the clusters."""
    from .panel import panel as make_panel

    return make_panel(refresh)


def restart(name: str, *, wait: bool = True) -> ClusterRecord | Operation:
    """Restart the workers of the cluster ``name``."""
    operation = lifecycle.start_restart(name)
    return follow(operation) if wait else operation
