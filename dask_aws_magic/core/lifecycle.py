"""The operations every face calls: up, down, scale, adapt, attach, list, status, plan, logs...

This module knows nothing of IPython, widgets or HTTP. It returns records and handles and
reports progress through an ``on_event`` callback.
"""

from __future__ import annotations

import contextlib
import importlib
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import urlparse

from ..backends import Discovered, Event, Plan, Poll, get_backend
from ..faces.handle import ClusterHandle, close_handles, open_client
from . import registry
from .errors import (
    ClusterDead,
    ClusterExists,
    ClusterNotFound,
    DaskAwsMagicError,
    Interrupted,
    LaunchError,
    WaitTimeout,
)
from .naming import check_name, new_cluster_id
from .profiles import Profile, load
from .registry import ClusterRecord

EventSink = Callable[[Event], None]
DEFAULT_TIMEOUT = {"local": 60.0, "ec2": 600.0}
POLL_INTERVAL = 0.05


def _quiet(event: Event) -> None:
    pass


def _load(profile: str, overrides: Any, body: str | None, workers: int | None) -> Profile:
    extra = dict(overrides) if isinstance(overrides, Mapping) else list(overrides or [])
    if workers is not None:
        if isinstance(extra, dict):
            extra["worker.count"] = workers
        else:
            extra.append(f"worker.count={workers}")
    return load(profile, extra, body=body)


def plan(
    profile: str = "local",
    overrides: Iterable[str] | Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    workers: int | None = None,
    body: str | None = None,
) -> Plan:
    """What ``up`` would create and what it would cost per hour; creates nothing."""
    resolved = _load(profile, overrides, body, workers)
    cluster_name = check_name(name or resolved.name)
    return get_backend(resolved.backend).plan(resolved, cluster_name)


def profiles() -> list[dict[str, str]]:
    """Every profile: name, backend, where it comes from, description (or the error that breaks it)."""
    from . import profiles as profile_store

    rows = []
    for name, source in profile_store.available().items():
        try:
            loaded = load(name)
            rows.append({"name": name, "backend": loaded.backend, "source": source,
                         "description": loaded.data.get("description", "")})
        except DaskAwsMagicError as exc:
            rows.append({"name": name, "backend": "?", "source": source, "description": f"invalid: {exc}"})
    return rows


# -- finding clusters ---------------------------------------------------------------------------
def _discover_all(problems: list[str] | None = None) -> tuple[list[Discovered], set[str]]:
    """Clusters found from each backend's own source of truth (processes, AWS tags), and the names
    of the backends that answered. One that cannot be asked (AWS misconfigured, say) is reported
    in ``problems`` and skipped."""
    from ..backends.base import aws_backends_to_scan

    found, scanned = get_backend("local").discover(), {"local"}
    for backend in aws_backends_to_scan():
        try:
            found += backend.discover()
            scanned.add(backend.name)
        except DaskAwsMagicError as exc:
            if problems is not None:
                problems.append(f"could not list {backend.name} clusters: {exc}")
    return found, scanned


def _from_discovered(found: Discovered) -> ClusterRecord:
    return ClusterRecord(
        name=found.name, cluster_id=found.cluster_id, backend=found.backend, profile="(recovered)",
        status="running", scheduler_address=found.scheduler_address, dashboard_link=found.dashboard_link,
        resources=found.resources, workers=len(found.resources.get("workers", {})),
        created_at=found.created_at or time.time(), note="recovered from the cluster's tags",
    )


def _find(name: str) -> ClusterRecord:
    record = registry.get(name)
    if record is not None:
        return record
    discovered, _ = _discover_all()
    for found in discovered:
        if found.name == name:
            recovered = _from_discovered(found)
            with registry.locked():
                if registry.get(name) is None:
                    registry.write(recovered)
            return registry.get(name) or recovered
    known = ", ".join(sorted({r.name for r in registry.scan()[0]} | {d.name for d in discovered})) or "none"
    raise ClusterNotFound(
        f"There is no cluster named {name!r} (clusters: {known}). "
        "Check the name with `%dask_cluster list`, or start it with `%dask_cluster up`."
    )


def _still_starting(record: ClusterRecord) -> bool:
    """True while an ``up`` may still be launching ``record`` (its backend cannot see it yet)."""
    timeout = record.settings.get("timeout", DEFAULT_TIMEOUT.get(record.backend, 600.0))
    return record.status == "starting" and time.time() < record.created_at + timeout + 60


def _alive(record: ClusterRecord, problems: list[str] | None = None) -> bool | None:
    """Whether the backend still runs ``record``; None when it cannot tell (reported in ``problems``)."""
    try:
        return get_backend(record.backend).alive(record)
    except DaskAwsMagicError as exc:
        if problems is not None:
            problems.append(f"could not check {record.name}: {exc}")
        return None


def list_clusters(problems: list[str] | None = None) -> list[ClusterRecord]:
    """Every cluster, from the registry reconciled with what the backends really run.

    Corrupt records and backends that could not be asked are appended to ``problems``.
    """
    records, corrupt = registry.scan()
    if problems is not None:
        problems += corrupt
    by_id = {r.cluster_id: r for r in records}
    discovered, scanned = _discover_all(problems)
    # A backend that answered has just said which clusters still have a scheduler: no need to
    # ask it again cluster by cluster.
    running = {d.cluster_id for d in discovered if d.resources.get("scheduler")}
    for found in discovered:
        if found.cluster_id not in by_id:
            recovered = _from_discovered(found)
            with registry.locked():
                if registry.get(recovered.name) is None:
                    registry.write(recovered)
            by_id[found.cluster_id] = recovered
    for record in by_id.values():
        if not record.live or _still_starting(record):
            continue
        alive = record.cluster_id in running if record.backend in scanned else _alive(record, problems)
        if alive is False:
            record.status = "dead"
            _mark_dead(record)
    return sorted(by_id.values(), key=lambda r: r.created_at)


def _mark_dead(record: ClusterRecord) -> None:
    def change(stored: ClusterRecord) -> None:
        if stored.cluster_id == record.cluster_id:
            stored.status = "dead"

    with contextlib.suppress(ClusterNotFound):
        registry.update(record.name, change)


# -- up -------------------------------------------------------------------------------------------
def _reserve(record: ClusterRecord) -> None:
    """Write ``record`` unless a live cluster already has its name."""
    with registry.locked():
        existing = registry.get(record.name)
        if existing is not None and (_still_starting(existing) or _alive(existing) is not False):
            raise ClusterExists(
                f"A cluster named {record.name!r} is already running ({existing.backend}, started from "
                f"profile {existing.profile!r}). Use it with `%dask_cluster attach {record.name}` "
                f"(or `dask_aws_magic.attach({record.name!r})`), stop it with `%dask_cluster down "
                f"{record.name}`, or start another with `-n OTHER_NAME`."
            )
        registry.write(record)


def _answers(address: str, timeout: float = 0.5) -> bool:
    parsed = urlparse(address)
    try:
        with socket.create_connection((parsed.hostname, parsed.port), timeout=timeout):
            return True
    except OSError:
        return False


def up(
    profile: str = "local",
    *,
    name: str | None = None,
    workers: int | None = None,
    overrides: Iterable[str] | Mapping[str, Any] | None = None,
    body: str | None = None,
    timeout: float | None = None,
    wait_workers: int | None = None,
    keep_on_failure: bool = False,
    on_event: EventSink | None = None,
) -> ClusterHandle:
    """Start a cluster from ``profile``, wait until its scheduler answers, return a connected handle.

    Any failure or interrupt after launch tears down what was started, unless ``keep_on_failure``.
    """
    emit = on_event or _quiet
    resolved = _load(profile, overrides, body, workers)
    cluster_name = check_name(name or resolved.name)
    backend = get_backend(resolved.backend)
    emit(Event("plan", f"planning {cluster_name} ({resolved.backend})"))
    the_plan = backend.plan(resolved, cluster_name)
    if timeout is None:
        timeout = resolved.data.get("timeout", DEFAULT_TIMEOUT.get(resolved.backend, 600.0))
    if wait_workers is None:
        wait_workers = resolved.data.get("wait_workers", the_plan.workers if backend.name == "local" else 0)
    wait_workers = min(wait_workers, the_plan.workers)
    record = ClusterRecord(
        name=cluster_name, cluster_id=new_cluster_id(), backend=backend.name, profile=resolved.name,
        settings={"profile": resolved.data, "cost": _cost(the_plan), "timeout": timeout},
        workers=the_plan.workers,
    )
    _reserve(record)
    deadline = time.monotonic() + timeout
    try:
        price = f" (about ${the_plan.hourly_cost:.2f}/hour)" if the_plan.hourly_cost else ""
        emit(Event("launch", f"launching {the_plan.workers} worker(s) and a scheduler{price}"))
        backend.launch(the_plan, record, lambda: registry.write(record))
        _import_client_library_meanwhile()
        _wait_for_scheduler(backend, record, deadline, emit)
        handle = ClusterHandle(record)
        handle.connect(timeout=max(1.0, deadline - time.monotonic()))
        if wait_workers:
            _wait_for_workers(backend, handle, wait_workers, deadline, emit)
    except BaseException as exc:
        _fail(backend, record, exc, keep_on_failure, emit, timeout)
        raise  # _fail raises a user-facing error; this is for the type checker
    record.status = "running"
    registry.write(record)
    emit(Event("ready", f"cluster {cluster_name} ready at {record.scheduler_address}"))
    return handle


def _import_client_library_meanwhile() -> None:
    """Import distributed in a thread while the cluster boots: a fresh kernel would otherwise pay
    for it only once the scheduler answers."""
    if "distributed" not in sys.modules:
        threading.Thread(target=importlib.import_module, args=("distributed",), daemon=True).start()


def _cost(the_plan: Plan) -> dict[str, float]:
    """Hourly cost split into what scales with the workers and what does not."""
    per_worker = sum(r.hourly_cost for r in the_plan.resources if r.role == "worker")
    per_worker = per_worker / the_plan.workers if the_plan.workers else 0.0
    return {"base": the_plan.hourly_cost - per_worker * the_plan.workers, "per_worker": per_worker}


def _wait_for_scheduler(backend: Any, record: ClusterRecord, deadline: float, emit: EventSink) -> None:
    """Ask the backend for news every ``poll_interval``; probe the scheduler's port in between."""
    interval = getattr(backend, "poll_interval", POLL_INTERVAL)
    seen, next_poll = Poll(), 0.0
    while True:
        if time.monotonic() >= next_poll:
            seen, next_poll = backend.poll(record), time.monotonic() + interval
            if seen.failed:
                raise LaunchError(f"The cluster {record.name!r} failed to start: {seen.failed}")
            emit(Event("boot", seen.message, seen.done, seen.total))
            if seen.address and seen.address != record.scheduler_address:
                record.scheduler_address, record.dashboard_link = seen.address, seen.dashboard
                registry.write(record)
        if seen.address and _answers(seen.address, timeout=0.25):
            emit(Event("connect", f"scheduler answers at {seen.address}"))
            return
        if time.monotonic() > deadline:
            raise WaitTimeout(f"last state: {seen.message or 'nothing reported'}")
        time.sleep(POLL_INTERVAL)


def _wait_for_workers(backend: Any, handle: ClusterHandle, count: int, deadline: float, emit: EventSink) -> None:
    interval = getattr(backend, "poll_interval", POLL_INTERVAL)
    next_poll = time.monotonic() + interval
    while True:
        joined = len(handle.client.scheduler_info(n_workers=-1).get("workers", {}))
        emit(Event("workers", f"workers {joined}/{count} joined", joined, count))
        if joined >= count:
            return
        if time.monotonic() >= next_poll:
            seen, next_poll = backend.poll(handle.record), time.monotonic() + interval
            if seen.failed:
                raise LaunchError(f"The cluster {handle.name!r} failed to start: {seen.failed}")
        if time.monotonic() > deadline:
            raise WaitTimeout(f"only {joined} of {count} workers joined")
        time.sleep(POLL_INTERVAL)


def _fail(
    backend: Any, record: ClusterRecord, exc: BaseException, keep: bool, emit: EventSink, timeout: float
) -> None:
    close_handles(record.name)
    if keep:
        record.status = "failed"
        record.note = f"kept after a failed start: {exc}"
        registry.write(record)
        action = (f"Everything started was kept, as asked (--keep-on-failure): inspect it with "
                  f"`%dask_cluster logs {record.name}` and remove it with `%dask_cluster down {record.name}`.")
    else:
        emit(Event("teardown", f"tearing down {record.name}"))
        try:
            removed = backend.terminate(record)
        except BaseException as teardown:  # a second Ctrl-C, or AWS refusing: keep the trail
            record.status = "failed"
            record.note = f"teardown incomplete: {teardown!r}"
            registry.write(record)
            raise LaunchError(
                f"Starting {record.name!r} failed ({type(exc).__name__}: {exc}) and tearing it down did not "
                f"finish ({type(teardown).__name__}: {teardown}). Run `%dask_cluster down {record.name}` "
                "to remove what is left."
            ) from None
        registry.remove(record.name, record.cluster_id)
        action = f"Everything started was torn down ({'; '.join(removed) or 'nothing had started'})."
    if isinstance(exc, KeyboardInterrupt):
        raise Interrupted(f"Interrupted while starting {record.name!r}. {action}") from None
    if isinstance(exc, WaitTimeout):
        raise WaitTimeout(
            f"The cluster {record.name!r} did not become ready within {timeout:g} s ({exc}). {action} "
            f"Raise the limit with `--timeout SECONDS` (or `timeout:` in the profile)."
        ) from None
    if isinstance(exc, DaskAwsMagicError):
        raise type(exc)(f"{exc} {action}") from None
    raise LaunchError(f"Starting {record.name!r} failed: {type(exc).__name__}: {exc}. {action}") from exc


# -- everything else ----------------------------------------------------------------------------
def _answering(name: str) -> ClusterRecord:
    """The record of ``name`` if its scheduler answers; otherwise mark it dead and say what to do."""
    record = _find(check_name(name))
    alive = _alive(record)
    if alive is False or not record.scheduler_address or not _answers(record.scheduler_address):
        _mark_dead(record)
        raise ClusterDead(
            f"The cluster {name!r} is registered but its scheduler no longer answers "
            f"({record.scheduler_address or 'no address'}); it has been marked dead. "
            f"See why with `%dask_cluster logs {name}`, clean up with `%dask_cluster down {name}`, "
            "then start a new one with `%dask_cluster up`."
        )
    return record


def attach(name: str, *, timeout: float = 10.0) -> ClusterHandle:
    """A connected handle to the running cluster ``name``."""
    handle = ClusterHandle(_answering(name))
    handle.connect(timeout=timeout)
    return handle


def down(names: Iterable[str] = (), *, all: bool = False) -> list[str]:
    """Stop clusters and remove everything they created; one line per cluster.

    Every cluster is tried; failures are reported together at the end.
    """
    if all:
        targets = list_clusters()
    else:
        names = list(names)
        if not names:
            raise ClusterNotFound("Name the cluster(s) to stop, e.g. `down local`, or pass `--all`.")
        targets = [_find(check_name(n)) for n in names]
    lines, failures = [], []
    for record in targets:
        close_handles(record.name)
        try:
            _stop_adaptor(record)
            record = registry.get(record.name) or record  # what the adaptor may have added meanwhile
            removed = get_backend(record.backend).terminate(record)
        except DaskAwsMagicError as exc:
            failures.append(f"{record.name}: {exc}")
            continue
        registry.remove(record.name, record.cluster_id)
        lines.append(f"{record.name}: {'; '.join(removed)}")
    if failures:
        done = f" Stopped: {'; '.join(lines)}." if lines else ""
        raise DaskAwsMagicError(f"Could not stop every cluster: {' | '.join(failures)}.{done} "
                                "Fix the cause and run `down` again.")
    return lines


@contextlib.contextmanager
def _client_for(record: ClusterRecord, timeout: float = 10.0) -> Iterator[Any]:
    """A short-lived client of ``record``'s scheduler; connection failures become :class:`ClusterDead`."""
    client = open_client(record, timeout=timeout)
    try:
        yield client
    except (OSError, TimeoutError) as exc:
        raise ClusterDead(f"The connection to {record.name!r} failed: {type(exc).__name__}: {exc}") from None
    finally:
        client.close()


def scale(name: str, workers: int, *, stop_adaptive: bool = True) -> ClusterRecord:
    """Set the number of workers of ``name``."""
    if not isinstance(workers, int) or workers < 0:
        raise DaskAwsMagicError(f"The worker count must be a whole number >= 0, not {workers!r}.")
    record = _answering(name)
    if "profile" not in record.settings:
        raise DaskAwsMagicError(
            f"The cluster {name!r} was recovered from its tags, without the settings it was started with, "
            f"so new workers cannot be made like the others. Stop it with `down {name}` and start it again."
        )
    if stop_adaptive:
        _stop_adaptor(record)

    def retire(labels: list[str]) -> None:
        """Move data off the workers named ``label`` or ``label-N`` (several per instance)."""
        with _client_for(record) as client:
            workers = client.scheduler_info(n_workers=-1)["workers"]
            chosen = [address for address, info in workers.items()
                      if any(str(info.get("name")) == label or str(info.get("name")).startswith(f"{label}-")
                             for label in labels)]
            if chosen:
                client.retire_workers(workers=chosen, close_workers=True)

    # Slow work (AWS calls, moving data) happens outside the registry lock; only the write holds it.
    get_backend(record.backend).scale(record, workers, retire)

    def change(stored: ClusterRecord) -> None:
        stored.resources["workers"] = record.resources["workers"]
        if "next_index" in record.resources:
            stored.resources["next_index"] = record.resources["next_index"]
        stored.workers = workers

    return registry.update(record.name, change)


def _stop_adaptor(record: ClusterRecord) -> None:
    """Stop the adaptive-scaling process of ``record``, if it has one."""
    adaptor = record.resources.pop("adaptor", None)
    record.settings.pop("adaptive", None)
    if not adaptor:
        return
    from .processes import stop_groups

    stop_groups([adaptor])

    def change(stored: ClusterRecord) -> None:
        stored.resources.pop("adaptor", None)
        stored.settings.pop("adaptive", None)

    with contextlib.suppress(ClusterNotFound):
        registry.update(record.name, change)


def adapt(name: str, minimum: int = 0, maximum: int | None = None) -> ClusterRecord:
    """Let the cluster ``name`` scale itself between ``minimum`` and ``maximum`` workers."""
    if maximum is None or minimum < 0 or maximum < minimum or maximum < 1:
        raise DaskAwsMagicError(
            f"Adaptive bounds must satisfy 0 <= minimum <= maximum and maximum >= 1 "
            f"(got minimum={minimum}, maximum={maximum}); e.g. `adapt NAME --minimum 1 --maximum 8`."
        )
    record = _answering(name)
    _stop_adaptor(record)
    from .adaptive import spawn_adaptor

    info = spawn_adaptor(record, minimum, maximum)

    def change(r: ClusterRecord) -> None:
        r.resources["adaptor"] = info
        r.settings["adaptive"] = {"minimum": minimum, "maximum": maximum}

    return registry.update(record.name, change)


def restart(name: str, *, timeout: float = 60.0) -> ClusterRecord:
    """Restart every worker process of ``name`` (their memory is cleared, tasks are lost)."""
    record = _answering(name)
    with _client_for(record) as client:
        client.restart(timeout=timeout, wait_for_workers=True)
    return record


def status(name: str) -> dict[str, Any]:
    """What the cluster is doing: workers, threads, memory, tasks, uptime, cost."""
    record = _find(check_name(name))
    info: dict[str, Any] = {
        "name": record.name, "backend": record.backend, "profile": record.profile,
        "status": record.status, "scheduler_address": record.scheduler_address,
        "dashboard_link": record.dashboard_link, "uptime": time.time() - record.created_at,
        "adaptive": record.settings.get("adaptive"), "planned_workers": record.workers,
        "cost": record.hourly_cost,
    }
    try:
        record = _answering(name)
    except ClusterDead:
        info["status"] = "dead"
        return info
    with _client_for(record) as client:
        workers = client.scheduler_info(n_workers=-1).get("workers", {})
        info.update(
            workers=len(workers),
            threads=sum(w.get("nthreads", 0) for w in workers.values()),
            memory=sum(w.get("memory_limit", 0) or 0 for w in workers.values()),
            tasks=sum(w.get("metrics", {}).get("executing", 0) for w in workers.values()),
        )
    return info


def logs(name: str) -> dict[str, str]:
    """Each process's or instance's log output."""
    record = _find(check_name(name))
    return get_backend(record.backend).logs(record)
