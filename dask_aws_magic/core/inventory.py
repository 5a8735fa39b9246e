"""Which clusters exist: the registry (a cache) reconciled with what every backend finds from its
own source of truth (processes, AWS tags)."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

from ..backends import Discovered, Discovery, discoverable_backends, get_backend
from . import adaptive, registry
from .connection import identity, security_of
from .errors import ClusterDead, ClusterNotFound, DaskAwsMagicError, ForeignCluster
from .naming import check_name, is_cluster_id, is_owner
from .processes import running
from .registry import ClusterRecord

STARTING_GRACE = 60.0  # how long past its timeout a record may say "starting" before it is doubted


@dataclass
class Survey:
    """What looking for clusters found: the clusters, where it looked, and what it could not see."""

    clusters: list[ClusterRecord] = field(default_factory=list)
    searched: list[str] = field(default_factory=list)  # "local: this machine", "ec2: us-east-1"...
    ignored: list[str] = field(default_factory=list)  # tagged things that fail our checks: reported, untouched
    others: dict[str, int] = field(default_factory=dict)  # clusters of other owners left out, by owner
    failed: list[str] = field(default_factory=list)  # scopes that could not be listed: clusters may hide there
    corrupt: list[str] = field(default_factory=list)  # records that could not be read (skipped)

    def incomplete(self, done: str = "") -> DaskAwsMagicError | None:
        """The error to raise when some place could not be listed (clusters there may be billing)."""
        if not self.failed:
            return None
        return DaskAwsMagicError(
            f"Could not look everywhere clusters may run, so some may be missing: {' | '.join(self.failed)}. "
            f"{done}Fix the cause (credentials, a missing Describe permission, throttling) and run it again."
        )


def discover_all(ignored: list[str] | None = None) -> tuple[list[Discovered], dict[str, Discovery]]:
    """Clusters found by each backend that can be asked here, and each backend's whole answer.

    Names and ids read from tags are untrusted: what fails the checks a typed name passes is left
    out (and described in ``ignored``), so it never reaches a file path, a shell line or a teardown.
    """
    found: list[Discovered] = []
    answers: dict[str, Discovery] = {}
    for backend in discoverable_backends():
        try:
            answer = backend.discover()
        except DaskAwsMagicError as exc:  # a backend that breaks its promise not to raise
            answer = Discovery(failed=[f"could not list {backend.name} clusters: {exc}"])
        answers[backend.name] = answer
        for cluster in answer.clusters:
            problem = _untrusted(cluster)
            if problem is None:
                found.append(cluster)
            elif ignored is not None:
                ignored.append(problem)
    return found, answers


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
        name=found.name, cluster_id=found.cluster_id, backend=found.backend, profile="(recovered)",
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
        if owner == found.owner:
            return recovered(found)
        raise ForeignCluster(
            f"The cluster {name!r} belongs to {found.owner}, not to you ({', '.join(sorted(me))}). To act on it "
            f"anyway, name its owner: `--owner {found.owner}` (`owner=` in Python)."
        )
    known = ", ".join(sorted({r.name for r in registry.scan()[0]} | {d.name for d in discovered})) or "none"
    raise ClusterNotFound(
        f"There is no cluster named {name!r} (clusters: {known}). "
        "Check the name with `%dask_cluster list`, or start it with `%dask_cluster up`."
    )


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
    def change(stored: ClusterRecord) -> None:
        if stored.cluster_id == record.cluster_id:
            stored.status = "dead"

    record.status = "dead"
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
    return not owner or owner in me  # an untagged cluster predates owner tags: it was made from here


def survey(owner: str | None = None) -> Survey:
    """The clusters of the caller (``owner=None``), of every owner (``"*"``) or of one owner, from the
    registry reconciled with what the backends really run. Others' clusters are counted in ``others``.

    A cluster whose backend or scope could not be asked shows as ``unknown``: never as running or dead.
    """
    records, corrupt = registry.scan()
    result = Survey(corrupt=corrupt)
    by_id = {r.cluster_id: r for r in records}
    discovered, answers = discover_all(result.ignored)
    me = _identities(answers)
    for name, answer in answers.items():
        result.failed += answer.failed
        if answer.searched:
            result.searched.append(f"{name}: {', '.join(answer.searched)}")
    found_by_id = {d.cluster_id: d for d in discovered}
    for found in discovered:
        if found.cluster_id in by_id:
            continue
        wanted = owner == "*" or (owner is None and _is_mine(found.owner, me)) or owner == found.owner
        if not wanted:
            result.others[found.owner] = result.others.get(found.owner, 0) + 1
        elif _is_mine(found.owner, me):
            by_id[found.cluster_id] = _remember(found)
        else:
            by_id[found.cluster_id] = recovered(found)  # someone else's: never written to your registry
    for record in by_id.values():
        if not record.live or still_starting(record):
            continue
        answer = answers.get(record.backend)
        # A backend that answered for the record's scope has just said which clusters still have a
        # scheduler: no need to ask it again cluster by cluster.
        if answer is not None and _scope(record) in answer.searched:
            found = found_by_id.get(record.cluster_id)
            if found is not None and found.running:
                if record.status == "starting":
                    _complete(record, found)
            else:
                mark_dead(record)
        else:
            is_alive = alive(record, result.failed)
            if is_alive is False:
                mark_dead(record)
            elif is_alive is None:
                record.status = "unknown"  # shown, never written: nobody could check
    if owner not in (None, "*"):
        by_id = {key: r for key, r in by_id.items() if r.owner == owner}
    result.clusters = sorted(by_id.values(), key=lambda r: r.created_at)
    _ask_schedulers(result.clusters)
    return result


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
    """Set ``reported_workers`` from each running scheduler's own count (asked in parallel)."""
    running = [r for r in records if r.status == "running" and r.scheduler_address]
    if not running:
        return
    from concurrent.futures import ThreadPoolExecutor

    def ask(record: ClusterRecord) -> None:
        try:
            answer = identity(str(record.scheduler_address), security_of(record), timeout=3.0)
        except DaskAwsMagicError:
            return
        if answer is not None:
            record.reported_workers = answer.get("n_workers")

    with ThreadPoolExecutor(max_workers=min(8, len(running))) as pool:
        list(pool.map(ask, running))


def answering(name: str) -> ClusterRecord:
    """The record of ``name`` if its scheduler answers; otherwise mark it dead and say what to do."""
    record = find(name)
    answers = (alive(record) is not False and bool(record.scheduler_address)
               and identity(record.scheduler_address, security_of(record), timeout=5.0) is not None)
    if not answers:
        mark_dead(record)
        raise ClusterDead(
            f"The cluster {name!r} is registered but its scheduler no longer answers "
            f"({record.scheduler_address or 'no address'}); it has been marked dead. "
            f"See why with `%dask_cluster logs {name}`, clean up with `%dask_cluster down {name}`, "
            "then start a new one with `%dask_cluster up`."
        )
    return record
