"""Which clusters exist: the registry (a cache) reconciled with what every backend finds from its
own source of truth (processes, AWS tags), and what each scheduler says of itself.

A cluster's status says only what was seen: ``running`` (its backend shows it and its scheduler
answered), ``unreachable`` (its backend shows it runs, its scheduler did not answer this time: busy,
frozen, or a network away), ``dead`` (its backend confirms nothing of it runs), ``unknown`` (nobody
could check). Only ``dead`` is ever written from a look; a record not known to be gone (``dead``
included: a launch may not show yet) is looked at again by every survey.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..backends import Backend, Discovered, Discovery, Unverified, discoverable_backends, get_backend
from . import adaptive, paths, registry
from .connection import identity, security_of
from .errors import (
    ClusterDead,
    ClusterNotFound,
    ClusterStarting,
    ClusterUnreachable,
    DaskAwsMagicError,
    ForeignCluster,
)
from .naming import check_name, is_cluster_id, is_owner, owner_key, same_owner
from .processes import running
from .registry import ClusterRecord

STARTING_GRACE = 60.0  # how long past its timeout a record may say "starting" before it is doubted
LOOKED_AT = ("starting", "running", "dead")  # statuses a survey checks again (never "stopped", "failed")
PROBE_TIMEOUT = 3.0  # seconds a scheduler has to answer a survey's probe


@dataclass
class Survey:
    """What looking for clusters found: the clusters, where it looked, and what it could not see."""

    clusters: list[ClusterRecord] = field(default_factory=list)
    searched: list[str] = field(default_factory=list)  # "local: this machine", "ec2: us-east-1"...
    ignored: list[str] = field(default_factory=list)  # tagged things that fail our checks: reported, untouched
    others: dict[str, int] = field(default_factory=dict)  # clusters of other owners left out, by owner
    failed: list[str] = field(default_factory=list)  # scopes that could not be listed: clusters may hide there
    corrupt: list[str] = field(default_factory=list)  # records that could not be read (skipped)
    unverified: list[Unverified] = field(default_factory=list)  # tagged, proven no one's cluster: never touched

    def incomplete(self, done: str = "") -> DaskAwsMagicError | None:
        """The error to raise when some place could not be listed (clusters there may be billing)."""
        if not self.failed:
            return None
        return DaskAwsMagicError(
            f"Could not look everywhere clusters may run, so some may be missing: {' | '.join(self.failed)}. "
            f"{done}Fix the cause (credentials, a missing Describe permission, throttling) and run it again."
        )


@dataclass
class Look:
    """What one backend's discovery answered (tagged things failing our checks set apart) and when the
    look began."""

    answer: Discovery
    found: list[Discovered]
    ignored: list[str]
    at: float


def look(backend: Backend) -> Look:
    """Ask ``backend`` for its clusters. Names, ids and owners read from tags are untrusted: what
    fails the checks a typed value passes is left out (and described in ``ignored``), so it never
    reaches a file path, a shell line, a teardown or a printed line."""
    at = time.time()
    try:
        answer = backend.discover()
    except DaskAwsMagicError as exc:  # a backend that breaks its promise not to raise
        answer = Discovery(failed=[f"could not list {backend.name} clusters: {exc}"])
    found, ignored = [], []
    for cluster in answer.clusters:
        problem = _untrusted(cluster)
        if problem is None:
            found.append(cluster)
        else:
            ignored.append(problem)
    return Look(answer, found, ignored, at)


def look_everywhere() -> dict[str, Look]:
    """A fresh look of every backend that can be asked here, by backend name."""
    return {backend.name: look(backend) for backend in discoverable_backends()}


def discover_all(ignored: list[str] | None = None) -> tuple[list[Discovered], dict[str, Discovery]]:
    """Clusters found by each backend that can be asked here, and each backend's whole answer."""
    looks = look_everywhere()
    if ignored is not None:
        ignored += [line for item in looks.values() for line in item.ignored]
    return [c for item in looks.values() for c in item.found], {name: item.answer for name, item in looks.items()}


def _untrusted(found: Discovered) -> str | None:
    """Why a tagged cluster is not one of ours to act on, or None."""
    if not is_cluster_id(found.cluster_id):
        return (f"ignored {found.backend} resources tagged with the cluster id {found.cluster_id!r}, which this "
                "tool never makes; check who tagged them")
    try:
        check_name(found.name)
    except DaskAwsMagicError:
        return (f"ignored {found.backend} cluster {found.cluster_id} tagged with the name {found.name!r}, which "
                "this tool never makes; check who tagged it")
    if not is_owner(found.owner):
        return (f"ignored {found.backend} cluster {found.cluster_id} tagged with the owner {found.owner!r}, which "
                "this tool never makes; check who tagged it")
    return None


def recovered(found: Discovered) -> ClusterRecord:
    """A record rebuilt from what a backend found (its settings are unknown)."""
    return ClusterRecord(
        name=found.name, cluster_id=found.cluster_id, backend=found.backend, profile=registry.RECOVERED,
        status="running" if found.running else "dead", scheduler_address=found.scheduler_address, owner=found.owner,
        dashboard_link=found.dashboard_link, resources=found.resources,
        workers=len(found.resources.get("workers", {})), created_at=found.created_at or time.time(),
        adaptor=adaptive.find(found.cluster_id), note="recovered from the cluster's tags",
    )


def _remember(found: Discovered) -> ClusterRecord:
    """The record of a found cluster, written to the registry unless its name is taken there (by
    another cluster with that name: both are then listed, each by its id)."""
    record = recovered(found)
    with registry.locked():
        existing = registry.get(record.name)
        if existing is None:
            registry.write(record)
            return record
    return existing if existing.cluster_id == record.cluster_id else record


def find(name: str, owner: str | None = None) -> ClusterRecord:
    """The record of the cluster ``name``, from the registry or else rebuilt from discovery.
    A cluster of another owner is only found when ``owner`` names that owner."""
    check_name(name)
    record = registry.get(name)
    if record is not None:
        return record
    discovered, answers = discover_all()
    me = _identities(answers)
    for found in discovered:
        if found.name != name:
            continue
        if _is_mine(found.owner, me):
            return _remember(found)
        if owner is not None and same_owner(owner, found.owner):
            return recovered(found)
        raise ForeignCluster(
            f"The cluster {name!r} belongs to {found.owner}, not to you ({', '.join(sorted(me))}). To act on it "
            f"anyway, name its owner: `--owner {found.owner}` (`owner=` in Python)."
        )
    doubtful = [u for answer in answers.values() for u in answer.unverified if u.name == name]
    if doubtful:
        raise ClusterNotFound(unverified_message(name, doubtful))
    known = ", ".join(sorted({r.name for r in registry.scan()[0]} | {d.name for d in discovered})) or "none"
    raise ClusterNotFound(
        f"There is no cluster named {name!r} (clusters: {known}). "
        "Check the name with `%dask_cluster list`, or start it with `%dask_cluster up`."
    )


def unverified_message(name: str, entries: list[Unverified]) -> str:
    """Why a name that only unverified resources carry is nobody's cluster to act on."""
    ids = [i for entry in entries for i in entry.resources]
    return (f"No proven cluster is named {name!r}: the resources tagged with that name ({', '.join(ids)}) are "
            f"unverified: {entries[0].reason}. Nothing acts on them unless you name them: if you know they are "
            f"yours, `down --unverified {' '.join(ids)}` removes them.")


def still_starting(record: ClusterRecord) -> bool:
    """True while an ``up`` may still be launching ``record`` (its backend may not see it yet): the
    process running it is alive, and its time is not up."""
    if record.status != "starting":
        return False
    if record.up_process is not None and not running(record.up_process):
        return False  # the up was killed: what discovery finds is all there is
    timeout = record.settings.get("timeout") or get_backend(record.backend).defaults.timeout
    return time.time() < record.created_at + timeout + STARTING_GRACE


def alive(record: ClusterRecord, problems: list[str] | None = None) -> bool | None:
    """Whether the backend still runs ``record``; None when it cannot tell (reported in ``problems``)."""
    try:
        return get_backend(record.backend).alive(record)
    except DaskAwsMagicError as exc:
        if problems is not None:
            problems.append(f"could not check {record.name}: {exc}")
        return None


def mark_dead(record: ClusterRecord) -> None:
    """Write ``dead``: only when the backend confirmed nothing of the cluster runs."""
    _set_status(record, "dead")


def _set_status(record: ClusterRecord, status: str, note: str | None = None) -> None:
    def change(stored: ClusterRecord) -> None:
        if stored.cluster_id == record.cluster_id:
            stored.status = status
            if note is not None:
                stored.note = note

    record.status = status
    if note is not None:
        record.note = note
    with contextlib.suppress(ClusterNotFound):
        registry.update(record.name, change)


def list_clusters(problems: list[str] | None = None) -> list[ClusterRecord]:
    """Every cluster, from the registry reconciled with what the backends really run. What could not
    be read or listed is appended to ``problems``."""
    found = survey()
    if problems is not None:
        problems += found.corrupt + found.failed
    return found.clusters


def _identities(answers: dict[str, Discovery]) -> set[str]:
    return {identity for answer in answers.values() for identity in answer.me}


def _is_mine(owner: str, me: set[str]) -> bool:
    """``me``: the caller's identities. An untagged cluster predates owner tags: it was made from here."""
    return not owner or owner_key(owner) in {owner_key(m) for m in me}


def survey(owner: str | None = None, looks: dict[str, Look] | None = None) -> Survey:
    """The clusters of the caller (``owner=None``), of every owner (``"*"``) or of one owner, from the
    registry reconciled with what the backends really run. Others' clusters are counted in ``others``.

    ``looks`` are earlier looks to reuse (a shared :class:`Inventory`): a record written after its
    backend's look is not judged by it, and nothing found in it is written to the registry. Without
    them every backend is asked now. A cluster whose backend or scope could not be asked shows as
    ``unknown``, one whose scheduler does not answer as ``unreachable``: never as running or dead.
    """
    fresh = looks is None
    if looks is None:
        looks = look_everywhere()
    records, corrupt = registry.scan()
    result = Survey(corrupt=corrupt)
    by_id = {r.cluster_id: r for r in records}
    answers = {name: item.answer for name, item in looks.items()}
    me = _identities(answers)
    for name, item in looks.items():
        result.failed += item.answer.failed
        result.ignored += item.ignored
        result.unverified += item.answer.unverified
        if item.answer.searched:
            result.searched.append(f"{name}: {', '.join(item.answer.searched)}")
    found_by_id = {d.cluster_id: d for item in looks.values() for d in item.found}
    _forget_unproven(by_id, found_by_id, result.unverified)
    for found in found_by_id.values():
        if found.cluster_id in by_id:
            continue
        wanted = (owner == "*" or (owner is None and _is_mine(found.owner, me))
                  or (owner is not None and same_owner(owner, found.owner)))
        if not wanted:
            key = owner_key(found.owner)
            result.others[key] = result.others.get(key, 0) + 1
        elif _is_mine(found.owner, me) and fresh:
            by_id[found.cluster_id] = _remember(found)
        else:
            by_id[found.cluster_id] = recovered(found)  # someone else's, or from an earlier look: not written
    for record in by_id.values():
        if record.status not in LOOKED_AT or still_starting(record):
            continue
        item = looks.get(record.backend)
        covered = item is not None and _scope(record) in item.answer.searched
        if covered and item is not None and (fresh or item.at >= record.updated_at):
            # The backend has just said which clusters of the record's scope run: no need to ask again.
            _judge(record, found_by_id.get(record.cluster_id))
        elif fresh or not covered:
            is_alive = alive(record, result.failed)
            if is_alive is False and record.status != "dead":
                mark_dead(record)
            elif is_alive is True and record.status == "dead":
                _revive(record)
            elif is_alive is None:
                record.status = "unknown"  # shown, never written: nobody could check
        # else: the record changed after the shared look; its scheduler's answer decides below.
    if owner not in (None, "*"):
        by_id = {key: r for key, r in by_id.items() if same_owner(r.owner, owner)}
    result.clusters = sorted(by_id.values(), key=lambda r: r.created_at)
    _ask_schedulers([r for r in result.clusters if _is_mine(r.owner, me)])
    return result


def _forget_unproven(by_id: dict[str, ClusterRecord], proven: dict[str, Discovered],
                     unverified: list[Unverified]) -> None:
    """Drop the records rebuilt from tags (by an older version) of what no proof ties to a cluster now."""
    claimed = {entry.cluster_id for entry in unverified}
    for cluster_id, record in list(by_id.items()):
        if record.profile == registry.RECOVERED and cluster_id in claimed and cluster_id not in proven:
            registry.remove(record.name, cluster_id)
            del by_id[cluster_id]


def _judge(record: ClusterRecord, found: Discovered | None) -> None:
    """Reconcile ``record`` with what its backend found of it in a look that covered its scope."""
    if found is not None and found.running:
        if record.status == "starting":
            _complete(record, found)
        elif record.status == "dead":
            _revive(record)
    elif record.status != "dead":
        mark_dead(record)


def _revive(record: ClusterRecord) -> None:
    """A record marked dead whose cluster its backend (or its scheduler) shows running after all."""
    _set_status(record, "running", "marked dead earlier, found running again")


class Inventory:
    """A view of the clusters shared by everything in one process that polls (a Jupyter server's
    handlers and sidebars, a kernel's panels): each backend is asked at most every its
    ``defaults.look_every`` seconds (AWS: 30; the local processes: every time), at once after
    :meth:`changed` (an action) and whenever the registry gains or loses a cluster or one changes
    status or size; the registry and each scheduler are read at every survey."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._looks: dict[str, Look] = {}
        self._seen: dict[str, tuple[str, str, int]] = {}  # the registry at the last look: id -> backend, status, size
        self._where: tuple[Any, ...] = ()  # the home and AWS settings the looks were made with

    def changed(self) -> None:
        """Something was just started, scaled or stopped: the next survey asks every backend again."""
        with self._lock:
            self._looks.clear()

    def survey(self, owner: str | None = None) -> Survey:
        return survey(owner, self.looks())

    def looks(self) -> dict[str, Look]:
        """Each backend's latest look, asked again where it is too old or the registry moved."""
        with self._lock:  # one look at a time: concurrent pollers share it
            where = (str(paths.home()), sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))
            if where != self._where:  # another home, other credentials or endpoint: nothing seen applies
                self._looks, self._where = {}, where
            records, _ = registry.scan()
            seen = {r.cluster_id: (r.backend, r.status, r.workers) for r in records}
            moved = {(seen.get(key) or self._seen[key])[0] for key in seen.keys() | self._seen.keys()
                     if seen.get(key) != self._seen.get(key)}  # the backends of what appeared, went or changed
            now, backends = time.time(), discoverable_backends()

            def age(backend: Backend) -> float:
                kept = self._looks.get(backend.name)
                return float("inf") if kept is None else now - kept.at

            due = {b.name for b in backends if b.name in moved or age(b) >= b.defaults.look_every}
            if any(b.defaults.look_every for b in backends if b.name in due):  # a costly look is due: those half
                # way to their turn go along (backends that look together share their AWS answers)
                due |= {b.name for b in backends if age(b) >= b.defaults.look_every / 2}
            for backend in backends:
                if backend.name in due:
                    self._looks[backend.name] = look(backend)
            self._seen = seen
            return dict(self._looks)


_shared: Inventory | None = None
_shared_lock = threading.Lock()


def shared() -> Inventory:
    """This process's shared :class:`Inventory` (made on first use)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Inventory()
        return _shared


def _scope(record: ClusterRecord) -> str | None:
    try:
        return get_backend(record.backend).scope(record)
    except DaskAwsMagicError:
        return None


def _complete(record: ClusterRecord, found: Discovered) -> None:
    """Finish the record of a cluster whose ``up`` was killed after launch, from what was found."""

    def change(stored: ClusterRecord) -> None:
        if stored.cluster_id == record.cluster_id:
            stored.status, stored.up_process, stored.progress = "running", None, {}
            stored.scheduler_address = stored.scheduler_address or found.scheduler_address
            stored.dashboard_link = stored.dashboard_link or found.dashboard_link
            stored.resources = stored.resources or found.resources
            stored.note = "its `up` was interrupted; completed from what was found"

    with contextlib.suppress(ClusterNotFound):
        updated = registry.update(record.name, change)
        record.__dict__.update(updated.__dict__)


def _ask_schedulers(records: list[ClusterRecord]) -> None:
    """Ask each running scheduler (in parallel) how many workers it has: ``reported_workers``, or the
    status ``unreachable`` (shown, never written) when it does not answer this time."""
    running = [r for r in records if r.status == "running"]
    if not running:
        return
    from concurrent.futures import ThreadPoolExecutor

    def ask(record: ClusterRecord) -> None:
        answer = None
        if record.scheduler_address:
            try:
                answer = identity(str(record.scheduler_address), security_of(record), timeout=PROBE_TIMEOUT)
            except DaskAwsMagicError:
                answer = None
        if answer is None:
            record.status, record.reported_workers = "unreachable", None
        else:
            record.reported_workers = answer.get("n_workers")

    with ThreadPoolExecutor(max_workers=min(8, len(running))) as pool:
        list(pool.map(ask, running))


def answering(name: str, owner: str | None = None, timeout: float = 5.0) -> ClusterRecord:
    """The record of ``name`` if its scheduler answers. Otherwise :class:`ClusterStarting` while its
    ``up`` runs, :class:`ClusterDead` when its backend confirms nothing runs (the record is then
    marked dead), and :class:`ClusterUnreachable` when it still runs (or nobody could tell): a busy or
    frozen scheduler is never marked dead."""
    record = find(name, owner)
    if record.status == "starting" and still_starting(record):
        raise ClusterStarting(
            f"The cluster {name!r} is still starting ({record.display_status}). Wait for its `up` to finish "
            f"(`%dask_cluster list` shows its progress), then try again."
        )
    if record.scheduler_address and identity(record.scheduler_address, security_of(record), timeout=timeout):
        if record.status == "dead":
            _revive(record)
        return record
    problems: list[str] = []
    is_alive = alive(record, problems)
    if is_alive is False:
        if record.status != "dead":
            mark_dead(record)
        raise ClusterDead(
            f"The cluster {name!r} has stopped: {record.backend} shows nothing of it running, so it has been "
            f"marked dead. See why with `%dask_cluster logs {name}`, clean up with `%dask_cluster down {name}`, "
            "then start a new one with `%dask_cluster up`."
        )
    why = (f"and nobody could check whether it still runs ({'; '.join(problems)})" if is_alive is None else
           f"although {record.backend} shows it still runs: it may be busy (a large graph) or paused")
    raise ClusterUnreachable(
        f"The scheduler of {name!r} ({record.scheduler_address or 'no address yet'}) did not answer within "
        f"{timeout:g} s, {why}. Nothing was changed; try again in a moment, or see what it does with "
        f"`%dask_cluster logs {name}`."
    )
