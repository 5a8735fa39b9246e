"""The backend interface and the values it exchanges with the core.

Backends are stateless: everything they need to find a cluster again is in the typed model of
what they created (stored as JSON in the cluster's record) or in the tags on those things. Each
call that creates, waits or removes receives a :class:`Context` from the core: to report
progress, to notice a cancel, to wait without blocking a cancel, and to save what exists so far.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

if TYPE_CHECKING:
    from ..core.profiles import Profile
    from ..core.registry import ClusterRecord


@dataclass
class PlannedResource:
    """One thing ``up`` would create."""

    kind: str  # "process", "instance", "security-group", ...
    role: str  # "scheduler", "worker", "network", ...
    count: int
    detail: str
    hourly_cost: float = 0.0  # USD per hour, on-demand
    spot_hourly_cost: float | None = None  # USD per hour if on spot


@dataclass
class Plan:
    """What ``up`` would do, and what it would cost."""

    name: str
    backend: str
    profile: str
    workers: int
    threads_per_worker: int
    memory_per_worker: int | None
    owner: str = ""  # the identity that will own the cluster (tagged on everything it creates)
    processes_per_worker: int = 1  # Dask worker processes on each worker (an instance may run several)
    resources: list[PlannedResource] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # backend-resolved values launch uses

    @property
    def hourly_cost(self) -> float:
        return sum(r.hourly_cost for r in self.resources)

    @property
    def spot_hourly_cost(self) -> float:
        return sum(r.hourly_cost if r.spot_hourly_cost is None else r.spot_hourly_cost for r in self.resources)


@dataclass
class Poll:
    """What a backend sees of a starting cluster."""

    address: str | None = None  # the scheduler's address once known
    dashboard: str | None = None
    message: str = ""
    done: int | None = None
    total: int | None = None
    failed: str | None = None  # why the cluster cannot come up (fail fast)


@dataclass
class Discovered:
    """A cluster found from the backend's own source of truth (processes, tags)."""

    name: str
    cluster_id: str
    backend: str
    resources: dict[str, Any]  # the backend's model, as JSON
    scheduler_address: str | None = None
    dashboard_link: str | None = None
    created_at: float | None = None
    running: bool = True  # False when only leftovers remain (no live scheduler)
    owner: str = ""  # who started it: its manifest's owner on AWS (never the owner tag); "" when unknown


@dataclass
class Unverified:
    """Resources that carry a cluster's tags but that no proof (the cluster's manifest, a record made
    on this machine) ties to that cluster: shown apart, never acted on unless named one by one."""

    backend: str
    cluster_id: str  # as tagged: a claim
    name: str  # as tagged: a claim
    owner: str  # as tagged: a claim
    scope: str  # where they are, in words
    resources: list[str]  # their ids: instances, security groups, task ARNs...
    reason: str  # why they are not proven, in a sentence
    location: dict[str, Any] = field(default_factory=dict)  # what the backend needs to reach them again

    def to_json(self) -> dict[str, Any]:
        return {"backend": self.backend, "cluster_id": self.cluster_id, "name": self.name, "owner": self.owner,
                "scope": self.scope, "resources": list(self.resources), "reason": self.reason}


@dataclass
class Discovery:
    """What one backend's discovery found, where it looked, and where it could not look."""

    clusters: list[Discovered] = field(default_factory=list)
    searched: list[str] = field(default_factory=list)  # scopes that answered: "this machine", "us-east-1"...
    failed: list[str] = field(default_factory=list)  # one paragraph per scope that could not be listed
    me: list[str] = field(default_factory=list)  # the caller's own identities in the scopes searched
    unverified: list[Unverified] = field(default_factory=list)  # tagged, but proven part of no cluster


@dataclass(frozen=True)
class NodeCredentials:
    """Temporary AWS credentials a cluster's nodes act with on the user's data. Held in memory only:
    never in a record, a log or a file (the secret parts stay out of ``repr``)."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    expiration: float  # epoch seconds, as AWS returned it
    identity: str  # the ARN whose permissions they carry (the caller's)
    description: str  # what they are, in words: "a federation token of arn:..., limited to s3://..."
    issued_at: float = field(default_factory=time.time)

    def for_nodes(self) -> dict[str, Any]:
        """What the nodes' credentials endpoint serves (the container credentials format), plus when
        they were issued (not secret: when to renew)."""
        stamp = datetime.fromtimestamp(self.expiration, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"AccessKeyId": self.access_key_id, "SecretAccessKey": self.secret_access_key,
                "Token": self.session_token, "Expiration": stamp, "IssuedAt": self.issued_at}

    def renew_at(self) -> float:
        """When to renew them: half-way through their life."""
        return self.issued_at + max(0.0, self.expiration - self.issued_at) / 2


@dataclass(frozen=True)
class BackendDefaults:
    """What the core uses for a backend's clusters when the profile and the caller say nothing."""

    timeout: float  # seconds ``up`` waits for the scheduler (and the workers it waits for)
    poll_interval: float  # seconds between two looks at a starting cluster
    wait_for_workers: bool  # True: ``up`` returns once every worker joined; False: once the scheduler answers
    boot_time: float = 10.0  # seconds a new worker usually takes to join (adaptive scaling waits that long)
    look_every: float = 0.0  # seconds a shared inventory may reuse a discovery (0: looking costs nothing)


class Resources(Protocol):
    """A backend's typed model of what it created for one cluster."""

    def to_json(self) -> dict[str, Any]: ...


R = TypeVar("R")


class Context(Protocol):
    """Given by the core to every backend call that creates, waits or removes."""

    def emit(self, stage: str, message: str, done: int | None = None, total: int | None = None) -> None:
        """Report progress (shown by every face, kept in the cluster's record)."""

    @property
    def cancelled(self) -> bool:
        """True once someone asked to stop; the backend should return soon (the core tears down)."""

    def check(self) -> None:
        """Raise the core's cancel exception if cancelled."""

    def sleep(self, seconds: float) -> None:
        """Wait, ending early (with the cancel exception) if cancelled. Never ``time.sleep`` in a wait loop."""

    def save(self, resources: Resources) -> None:
        """Persist what exists so far, at once, so a cancel or a crash can still tear it down."""

    def retire(self, worker_names: list[str]) -> None:
        """Ask the scheduler to move data off the Dask workers with these exact names, then close them."""


class Backend(Protocol):
    """What every backend implements. Found by name through the ``dask_aws_magic.backends`` entry points."""

    name: ClassVar[str]
    defaults: ClassVar[BackendDefaults]

    @classmethod
    def discoverable(cls) -> bool:
        """True when asking this backend for clusters makes sense here (AWS: credentials configured)."""

    # Optional: ``check_profile(data, source)`` raises ProfileError on values this backend refuses,
    # when profiles are loaded (before anything starts).
    # Optional: ``node_credentials(record) -> NodeCredentials | None``: fresh credentials for the nodes
    # to act with on the user's data (None when the profile does not forward any); raises a
    # DaskAwsMagicError naming the alternatives when they cannot be made. Called before ``launch``
    # (so an impossible forwarding creates nothing) and again to renew them.

    def plan(self, profile: Profile, name: str) -> Plan: ...

    def launch(self, ctx: Context, plan: Plan, record: ClusterRecord) -> Resources:
        """Start everything without waiting for it to boot; ``ctx.save`` as soon as anything exists."""

    def poll(self, record: ClusterRecord) -> Poll: ...

    def security(self, record: ClusterRecord) -> Any | None:
        """The ``distributed.Security`` a client needs, or None."""

    def discover(self) -> Discovery:
        """Every cluster of this backend that can be found here. A scope (region, credentials profile)
        that cannot be listed goes into ``failed``, naming the backend and the scope; never raise."""

    def scope(self, record: ClusterRecord) -> str:
        """The discovery scope ``record`` lives in (matches an entry of ``Discovery.searched``)."""

    def alive(self, record: ClusterRecord) -> bool:
        """True while the cluster's scheduler is still running."""

    def terminate(self, ctx: Context, record: ClusterRecord) -> list[str]:
        """Remove everything of the cluster; return one line per kind of thing removed."""

    def scale(self, ctx: Context, record: ClusterRecord, workers: int) -> Resources:
        """Add or remove workers (``ctx.retire`` first for those that go); return the updated model."""

    def logs(self, record: ClusterRecord) -> dict[str, str]: ...

    # Optional: ``remove_unverified(entry, ids)`` removes the resources ``ids`` of an ``Unverified``
    # entry its discovery reported (the user named them one by one); one line per thing removed.


Factory = Callable[[], Backend]
