"""The lifecycle of one cluster: plan, up, down, scale, adapt, restart, status, logs.

``up``, ``down``, ``scale`` and ``restart`` are :class:`~.operation.Operation` objects run in the
background (``start_*``); the blocking functions of the same names follow them with
:func:`~.operation.follow`, so every face shares one code path. Provisioning ends when the
scheduler answers (and the workers asked for have joined); connecting a client is the kernel
faces' step, never this module's.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..backends import Backend, Plan, Poll, get_backend
from . import adaptive, forwarding, inventory, registry
from .connection import identity, security_of, short_client
from .errors import (
    ClusterExists,
    ClusterNotFound,
    DaskAwsMagicError,
    Interrupted,
    LaunchError,
    TeardownIncomplete,
    WaitTimeout,
)
from .naming import check_name, is_owner, new_cluster_id
from .operation import Cancelled, Event, Operation, follow
from .processes import create_time
from .profiles import DEFAULT_MAX_WORKERS, Profile, load
from .registry import ClusterRecord

Overrides = Iterable[str] | Mapping[str, Any] | None
EventSink = Callable[[Event], None]
PROBE_INTERVAL = 0.05  # between two probes of the scheduler
PROGRESS_WRITE_INTERVAL = 0.25  # the registry gets a starting cluster's progress at most this often
HANDOVER_TIMEOUT = 60.0  # seconds the scheduler gets to take the nodes' data credentials


class _Context:
    """What a backend is given while an operation works on ``record`` (see ``backends.base.Context``).

    ``cancellable=False`` is for teardown, which must finish even after a cancel.
    """

    def __init__(self, operation: Operation, record: ClusterRecord, *, cancellable: bool = True):
        self.operation, self.record, self.cancellable = operation, record, cancellable
        self._written = 0.0
        self._never = threading.Event()

    def emit(self, stage: str, message: str, done: int | None = None, total: int | None = None) -> None:
        # The record first: whoever hears of the event can already read it from the registry.
        if self.record.status == "starting" and time.monotonic() - self._written >= PROGRESS_WRITE_INTERVAL:
            self.record.progress = {"stage": stage, "message": message, "done": done, "total": total}
            self._write()
        self.operation.emit(stage, message, done, total)
        self.check()  # every step reported is also a point where a cancel takes effect

    def _write(self) -> None:
        self._written = time.monotonic()
        registry.write(self.record)

    @property
    def cancelled(self) -> bool:
        return self.cancellable and self.operation.cancelled

    def check(self) -> None:
        if self.cancellable:
            self.operation.check()

    def sleep(self, seconds: float) -> None:
        if self.cancellable:
            self.operation.sleep(seconds)
        else:
            self._never.wait(seconds)

    def save(self, resources: Any) -> None:
        self.record.resources = resources.to_json()
        self._write()

    def retire(self, worker_names: list[str]) -> None:
        wanted = set(worker_names)
        with short_client(self.record) as client:
            workers = client.scheduler_info(n_workers=-1)["workers"]
            chosen = [address for address, info in workers.items() if str(info.get("name")) in wanted]
            if chosen:
                client.retire_workers(workers=chosen, close_workers=True)


def _load(profile: str, overrides: Overrides, body: str | None, workers: int | None) -> Profile:
    extra = dict(overrides) if isinstance(overrides, Mapping) else list(overrides or [])
    if workers is not None:
        if isinstance(extra, dict):
            extra["worker.count"] = workers
        else:
            extra.append(f"worker.count={workers}")
    return load(profile, extra, body=body)


def plan(profile: str = "local", overrides: Overrides = None, *, name: str | None = None,
         workers: int | None = None, body: str | None = None) -> Plan:
    """What ``up`` would create and what it would cost per hour; creates nothing."""
    resolved = _load(profile, overrides, body, workers)
    return get_backend(resolved.backend).plan(resolved, check_name(name or resolved.name))


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


# -- up -------------------------------------------------------------------------------------------
@dataclass
class _UpRequest:
    profile: Profile
    backend: Backend
    record: ClusterRecord
    timeout: float | None
    wait_workers: int | None
    keep_on_failure: bool


def _exists(name: str, backend: str, profile: str) -> ClusterExists:
    return ClusterExists(
        f"A cluster named {name!r} is already running ({backend}, started from profile {profile!r}). Use it "
        f"with `%dask_cluster attach {name}` (or `dask_aws_magic.attach({name!r})`), stop it with "
        f"`%dask_cluster down {name}`, or start another with `-n OTHER_NAME`."
    )


def _reserve(record: ClusterRecord) -> None:
    """Write ``record`` unless a live cluster already has its name in the registry."""
    with registry.locked():
        existing = registry.get(record.name)
        if existing is not None and (inventory.still_starting(existing) or inventory.alive(existing) is not False):
            raise _exists(record.name, existing.backend, existing.profile)
        registry.write(record)


def _refuse_if_discovered(backend: Backend, record: ClusterRecord) -> None:
    """Refuse a name that a live cluster found by the backend already carries (its record may be gone,
    or live on another machine)."""
    for found in backend.discover().clusters:
        if found.name == record.name and found.cluster_id != record.cluster_id and found.running:
            raise _exists(record.name, backend.name, "unknown: found by its tags")


def start_up(
    profile: str = "local",
    *,
    name: str | None = None,
    workers: int | None = None,
    overrides: Overrides = None,
    body: str | None = None,
    timeout: float | None = None,
    wait_workers: int | None = None,
    keep_on_failure: bool = False,
    subscriber: Callable[[Event], None] | None = None,
) -> Operation:
    """Start a cluster from ``profile`` in the background; the operation's result is its record.

    The profile is checked and the name reserved before this returns (bad input fails here);
    planning, launching and waiting happen in the operation, which can be cancelled at any time:
    whatever was started is then torn down, unless ``keep_on_failure``. ``subscriber`` hears every
    event from the first (in the operation's thread).
    """
    resolved = _load(profile, overrides, body, workers)
    cluster_name = check_name(name or resolved.name)
    backend = get_backend(resolved.backend)
    record = ClusterRecord(name=cluster_name, cluster_id=new_cluster_id(), backend=backend.name,
                           profile=resolved.name, progress={"stage": "plan", "message": "planning"},
                           up_process={"pid": os.getpid(), "started": create_time(os.getpid())})
    _reserve(record)
    request = _UpRequest(resolved, backend, record, timeout, wait_workers, keep_on_failure)
    operation = Operation("up", cluster_name, lambda op: _up(op, request))
    if subscriber is not None:
        operation.subscribe(subscriber)
    return operation.start()


def up(profile: str = "local", *, on_event: EventSink | None = None, **options: Any) -> ClusterRecord:
    """``start_up`` followed to its end in the calling thread (Ctrl-C cancels it)."""
    return follow(start_up(profile, **options), on_event)


def _up(op: Operation, req: _UpRequest) -> ClusterRecord:
    record, backend = req.record, req.backend
    ctx = _Context(op, record)
    timeout = req.timeout or req.profile.data.get("timeout") or backend.defaults.timeout
    deadline = time.monotonic() + timeout
    try:
        ctx.emit("plan", f"planning {record.name} ({backend.name})")
        with ThreadPoolExecutor(max_workers=1) as pool:  # looking for a namesake while planning
            namesake = pool.submit(_refuse_if_discovered, backend, record)
            the_plan = backend.plan(req.profile, record.name)
            namesake.result()
        wait_workers = req.wait_workers
        if wait_workers is None:
            wait_workers = req.profile.data.get(
                "wait_workers", the_plan.workers if backend.defaults.wait_for_workers else 0)
        wait_workers = min(wait_workers, the_plan.workers) * the_plan.processes_per_worker
        record.settings = {**the_plan.settings, "profile": req.profile.data, "cost": _cost(the_plan),
                           "timeout": timeout}
        record.workers, record.owner = the_plan.workers, the_plan.owner
        record.processes_per_worker = the_plan.processes_per_worker
        ctx.check()
        credentials = forwarding.make(backend, record)  # forwarding that cannot work fails before any launch
        price = f" (about ${the_plan.hourly_cost:.2f}/hour)" if the_plan.hourly_cost else ""
        ctx.emit("launch", f"launching {the_plan.workers} worker(s) and a scheduler{price}")
        ctx.save(backend.launch(ctx, the_plan, record))
        importing = _import_client_library_meanwhile()
        _wait_for_scheduler(ctx, backend, deadline, importing)
        if credentials is not None:
            ctx.emit("connect", f"handing the nodes {credentials.description}")
            _within(ctx, HANDOVER_TIMEOUT, "the scheduler to take the data credentials",
                    lambda: forwarding.deliver(backend, record, credentials))
        if wait_workers:
            _wait_for_workers(ctx, backend, wait_workers, deadline)
    except BaseException as exc:
        raise _failed(op, backend, record, exc, req.keep_on_failure, timeout) from None
    record.status, record.progress, record.up_process = "running", {}, None
    registry.write(record)
    op.emit("ready", _ready_message(record))
    return record


def _within(ctx: _Context, seconds: float, what: str, work: Callable[[], Any]) -> Any:
    """``work()`` in a thread of its own, waited for at most ``seconds`` and never past a cancel: a call
    into a frozen scheduler must not hold ``up`` (nor its Ctrl-C)."""
    from concurrent.futures import Future

    future: Future[Any] = Future()

    def run() -> None:
        try:
            future.set_result(work())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name=f"dask-aws-magic {what}", daemon=True).start()
    deadline = time.monotonic() + seconds
    while not future.done():
        if time.monotonic() > deadline:
            raise LaunchError(f"Waited {seconds:g} s for {what}, in vain: the scheduler may be frozen or "
                              "overloaded.")
        ctx.sleep(PROBE_INTERVAL)
    return future.result()


def _ready_message(record: ClusterRecord) -> str:
    """The last line of ``up``: where the cluster is, and how many of its workers have joined."""
    text = f"cluster {record.name} ready at {record.scheduler_address}"
    expected = record.workers * record.processes_per_worker
    answer = identity(str(record.scheduler_address), security_of(record), timeout=2.0)
    joined = answer.get("n_workers", 0) if answer else 0
    if joined >= expected:
        return f"{text}; {joined} worker(s) joined"
    return (f"{text}; {joined} of {expected} workers joined, the rest are booting "
            f"(`client.wait_for_workers({expected})` waits for them; `up --wait-workers` makes up wait)")


def _import_client_library_meanwhile() -> threading.Thread | None:
    """Import distributed in a thread while the cluster boots, so the first probe does not wait (the
    probe would wait for this import's lock: polling goes on meanwhile, the probe waits for the thread)."""
    if "distributed" in sys.modules:
        return None
    from ..imports import distributed

    thread = threading.Thread(target=distributed, daemon=True)
    thread.start()
    return thread


def _cost(the_plan: Plan) -> dict[str, float]:
    """Hourly cost split into what scales with the workers and what does not."""
    per_worker = sum(r.hourly_cost for r in the_plan.resources if r.role == "worker")
    per_worker = per_worker / the_plan.workers if the_plan.workers else 0.0
    return {"base": the_plan.hourly_cost - per_worker * the_plan.workers, "per_worker": per_worker}


def _poll(ctx: _Context, backend: Backend) -> Poll:
    seen = backend.poll(ctx.record)
    if seen.failed:
        raise LaunchError(f"The cluster {ctx.record.name!r} failed to start: {seen.failed}")
    return seen


def _wait_for_scheduler(ctx: _Context, backend: Backend, deadline: float,
                        importing: threading.Thread | None = None) -> None:
    """Ask the backend for news every ``poll_interval``; probe the scheduler in between."""
    record = ctx.record
    seen, next_poll, security, secured = Poll(), 0.0, None, False
    while True:
        if time.monotonic() >= next_poll:
            seen, next_poll = _poll(ctx, backend), time.monotonic() + backend.defaults.poll_interval
            ctx.emit("boot", seen.message, seen.done, seen.total)
            if seen.address and seen.address != record.scheduler_address:
                record.scheduler_address, record.dashboard_link = seen.address, seen.dashboard
                registry.write(record)
                secured = False
                ctx.emit("connect", f"connecting to the scheduler at {seen.address}")
        # The probe would wait for the background import of distributed: polling goes on meanwhile.
        if seen.address and (importing is None or not importing.is_alive()):
            if not secured:
                security, secured = security_of(record), True
            if identity(seen.address, security, timeout=2.0) is not None:
                ctx.emit("connect", f"scheduler answers at {seen.address}")
                return
        if time.monotonic() > deadline:
            raise WaitTimeout(f"last state: {seen.message or 'nothing reported'}")
        ctx.sleep(PROBE_INTERVAL)


def _wait_for_workers(ctx: _Context, backend: Backend, count: int, deadline: float) -> None:
    record = ctx.record
    security = security_of(record)
    next_poll = time.monotonic() + backend.defaults.poll_interval
    joined = 0
    while True:
        answer = identity(record.scheduler_address, security, timeout=2.0)
        joined = answer.get("n_workers", joined) if answer else joined
        ctx.emit("workers", f"workers {joined}/{count} joined", joined, count)
        if joined >= count:
            return
        if time.monotonic() >= next_poll:
            _poll(ctx, backend)
            next_poll = time.monotonic() + backend.defaults.poll_interval
        if time.monotonic() > deadline:
            raise WaitTimeout(f"only {joined} of {count} workers joined")
        ctx.sleep(PROBE_INTERVAL)


def _failed(op: Operation, backend: Backend, record: ClusterRecord, exc: BaseException, keep: bool,
            timeout: float) -> BaseException:
    """Tear down (or keep) what a failed or cancelled ``up`` started; the error to report."""
    if keep:
        record.status, record.note = "failed", f"kept after a failed start: {exc!r}"
        registry.write(record)
        action = (f"Everything started was kept, as asked (--keep-on-failure): inspect it with "
                  f"`%dask_cluster logs {record.name}` and remove it with `%dask_cluster down {record.name}`.")
    else:
        teardown_ctx = _Context(op, record, cancellable=False)
        teardown_ctx.emit("teardown", f"tearing down {record.name}")
        try:
            removed = backend.terminate(teardown_ctx, record) if record.resources else []
        except TeardownIncomplete as teardown:
            record.status, record.note = "failed", f"teardown incomplete; left: {'; '.join(teardown.left)}"
            registry.write(record)
            return LaunchError(
                f"Starting {record.name!r} failed ({type(exc).__name__}: {exc}) and tearing it down did not "
                f"finish ({teardown}). Run `%dask_cluster down {record.name}` to remove what is left."
            )
        except BaseException as teardown:  # AWS refusing, or the process being stopped: keep the trail
            record.status, record.note = "failed", f"teardown incomplete: {teardown!r}"
            registry.write(record)
            return LaunchError(
                f"Starting {record.name!r} failed ({type(exc).__name__}: {exc}) and tearing it down did not "
                f"finish ({type(teardown).__name__}: {teardown}). Run `%dask_cluster down {record.name}` "
                "to remove what is left."
            )
        registry.remove(record.name, record.cluster_id)
        action = f"Everything started was torn down ({'; '.join(removed) or 'nothing had started'})."
    # A failure that follows a cancel is its consequence (Ctrl-C also reaches a process being spawned).
    if isinstance(exc, (Cancelled, KeyboardInterrupt)) or op.cancelled:
        return Interrupted(f"Interrupted while starting {record.name!r}. {action}")
    if isinstance(exc, WaitTimeout):
        return WaitTimeout(
            f"The cluster {record.name!r} did not become ready within {timeout:g} s ({exc}). {action} "
            f"Raise the limit with `--timeout SECONDS` (or `timeout:` in the profile)."
        )
    if isinstance(exc, DaskAwsMagicError):
        return type(exc)(f"{exc} {action}")
    return LaunchError(f"Starting {record.name!r} failed: {type(exc).__name__}: {exc}. {action}")


# -- down -------------------------------------------------------------------------------------------
def start_down(names: Iterable[str] = (), *, all: bool = False, owner: str | None = None) -> Operation:
    """Stop clusters and remove everything they created, in the background; the result is one line
    per cluster. Every cluster is tried; failures are reported together at the end. ``all`` means
    all of the caller's own clusters, or with ``owner`` all of that owner's; another owner's cluster is
    stopped only when ``owner`` names that owner."""
    names = list(names)
    if not all and not names:
        raise ClusterNotFound("Name the cluster(s) to stop, e.g. `down local`, or pass `--all`.")
    if owner is not None and (not owner or owner == "*" or not is_owner(owner)):
        raise DaskAwsMagicError(f"`--owner` names one owner, as `list --all-owners` shows it, not {owner!r}.")
    for name in names:
        check_name(name)
    label = (f"every cluster of {owner}" if owner else "every cluster") if all else ", ".join(names)
    return Operation("down", label, lambda op: _down(op, names, all, owner)).start()


def down(names: Iterable[str] = (), *, all: bool = False, owner: str | None = None,
         on_event: EventSink | None = None) -> list[str]:
    """``start_down`` followed to its end."""
    return follow(start_down(names, all=all, owner=owner), on_event)


def _down(op: Operation, names: list[str], everything: bool, owner: str | None) -> list[str]:
    survey = inventory.survey(owner) if everything else None  # yours, or every cluster of the owner named
    targets = survey.clusters if survey else [inventory.find(n, owner) for n in names]
    lines, failures, touched = [], [], False
    for record in targets:
        op.emit("teardown", f"stopping {record.name}")
        try:
            adaptive.stop(record)
            stored = registry.get(record.name)  # what a scale may have added meanwhile
            if stored is not None and stored.cluster_id == record.cluster_id:
                record = stored
            removed = get_backend(record.backend).terminate(_Context(op, record, cancellable=False), record)
        except TeardownIncomplete as exc:  # what was removed and what is left, each named
            failures.append(str(exc))
            touched = touched or bool(exc.removed)
            _note(record, f"`down` did not finish; left: {'; '.join(exc.left)}")
            continue
        except DaskAwsMagicError as exc:
            failures.append(f"{record.name}: {exc}")
            continue
        registry.remove(record.name, record.cluster_id)
        lines.append(f"{record.name}: {'; '.join(removed)}")
    done = f"Stopped: {'; '.join(lines)}. " if lines else ("" if touched else "Nothing was stopped. ")
    if failures:
        raise DaskAwsMagicError(f"Could not stop every cluster: {' | '.join(failures)}. {done}"
                                "Fix the cause and run `down` again.")
    incomplete = survey.incomplete(done) if survey else None
    if incomplete is not None:
        raise incomplete
    return lines


def _note(record: ClusterRecord, note: str) -> None:
    def change(stored: ClusterRecord) -> None:
        if stored.cluster_id == record.cluster_id:
            stored.note = note

    with contextlib.suppress(ClusterNotFound):
        registry.update(record.name, change)


# -- scale, adapt, restart ------------------------------------------------------------------------
def start_scale(name: str, workers: int, *, stop_adaptive: bool = True) -> Operation:
    """Set the number of workers of ``name``, in the background; the result is the updated record."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise DaskAwsMagicError(f"The worker count must be a whole number >= 0, not {workers!r}.")
    record = inventory.answering(name)
    if "profile" not in record.settings:
        raise DaskAwsMagicError(
            f"The cluster {name!r} was recovered from its tags, without the settings it was started with, "
            f"so new workers cannot be made like the others. Stop it with `down {name}` and start it again."
        )
    limit = record.settings["profile"].get("limits", {}).get("max_workers", DEFAULT_MAX_WORKERS)
    if workers > limit:
        raise DaskAwsMagicError(
            f"{workers} workers is above the limit of {limit} of the cluster {name!r} (a guard against typos "
            "that cost money). Ask for fewer, or start the cluster from a profile with a higher `limits.max_workers`."
        )
    return Operation("scale", name, lambda op: _scale(op, record, workers, stop_adaptive)).start()


def scale(name: str, workers: int, *, stop_adaptive: bool = True, on_event: EventSink | None = None) -> ClusterRecord:
    """``start_scale`` followed to its end."""
    return follow(start_scale(name, workers, stop_adaptive=stop_adaptive), on_event)


def _scale(op: Operation, record: ClusterRecord, workers: int, stop_adaptive: bool) -> ClusterRecord:
    if stop_adaptive:
        _stop_adaptor(record)
    op.emit("scale", f"scaling {record.name} to {workers} worker(s)")
    # Slow work (AWS calls, moving data) happens outside the registry lock; only the write holds it.
    resources = get_backend(record.backend).scale(_Context(op, record), record, workers).to_json()

    def change(stored: ClusterRecord) -> None:
        stored.resources, stored.workers = resources, workers

    return registry.update(record.name, change)


def _stop_adaptor(record: ClusterRecord) -> None:
    if not adaptive.stop(record) and not record.settings.get("adaptive"):
        return

    def change(stored: ClusterRecord) -> None:
        stored.adaptor = None
        stored.settings.pop("adaptive", None)

    record.adaptor = None
    record.settings.pop("adaptive", None)
    with contextlib.suppress(ClusterNotFound):
        registry.update(record.name, change)


def adapt(name: str, minimum: int = 0, maximum: int | None = None) -> ClusterRecord:
    """Let the cluster ``name`` scale itself between ``minimum`` and ``maximum`` workers."""
    if maximum is None or minimum < 0 or maximum < minimum or maximum < 1:
        raise DaskAwsMagicError(
            f"Adaptive bounds must satisfy 0 <= minimum <= maximum and maximum >= 1 "
            f"(got minimum={minimum}, maximum={maximum}); e.g. `adapt NAME --minimum 1 --maximum 8`."
        )
    record = inventory.answering(name)
    _stop_adaptor(record)
    info = adaptive.spawn(record, minimum, maximum)

    def change(stored: ClusterRecord) -> None:
        stored.adaptor = info
        stored.settings["adaptive"] = {"minimum": minimum, "maximum": maximum}

    return registry.update(record.name, change)


def start_restart(name: str, *, timeout: float = 60.0) -> Operation:
    """Restart every worker process of ``name`` in the background (memory cleared, tasks lost)."""
    record = inventory.answering(name)

    def work(op: Operation) -> ClusterRecord:
        op.emit("restart", f"restarting the workers of {name}")
        with short_client(record) as client:
            client.restart(timeout=timeout, wait_for_workers=True)
        return record

    return Operation("restart", name, work).start()


def restart(name: str, *, timeout: float = 60.0, on_event: EventSink | None = None) -> ClusterRecord:
    """``start_restart`` followed to its end."""
    return follow(start_restart(name, timeout=timeout), on_event)


# -- looking -----------------------------------------------------------------------------------
def status(name: str) -> dict[str, Any]:
    """What the cluster is doing: workers, threads, memory, tasks, uptime, cost. A scheduler that does
    not answer is ``unreachable`` (never marked dead: it may be busy); ``dead`` is what the backend shows."""
    from .errors import ClusterDead, ClusterUnreachable

    record = inventory.find(name)
    info: dict[str, Any] = {
        "name": record.name, "backend": record.backend, "profile": record.profile,
        "status": record.status, "scheduler_address": record.scheduler_address,
        "dashboard_link": record.dashboard_link, "uptime": time.time() - record.created_at,
        "adaptive": record.settings.get("adaptive"), "planned_workers": record.workers,
        "cost": record.hourly_cost,
    }
    if record.status == "starting" and inventory.still_starting(record):
        info["status"] = record.display_status
        return info
    try:
        record = inventory.answering(name)
    except ClusterDead:
        info.update(status="dead", cost=0.0)
        return info
    except ClusterUnreachable as exc:
        info.update(status="unreachable", note=str(exc))
        return info
    with short_client(record) as client:
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
    record = inventory.find(name)
    return get_backend(record.backend).logs(record)
