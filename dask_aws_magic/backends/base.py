"""The backend interface and the records it exchanges with the operations.

Backends are stateless: everything they need to find a cluster again is in its
:class:`~dask_aws_magic.registry.ClusterRecord` or in the tags on what they created.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

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
class Event:
    """A progress report while ``up`` waits."""

    stage: str  # "plan", "launch", "boot", "connect", "workers", "ready", "teardown"
    message: str
    done: int | None = None
    total: int | None = None


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
    resources: dict[str, Any]
    scheduler_address: str | None = None
    dashboard_link: str | None = None
    created_at: float | None = None


class Backend(Protocol):
    """What every backend implements."""

    name: str

    def plan(self, profile: Profile, name: str) -> Plan: ...

    def launch(self, plan: Plan, record: ClusterRecord, save: Callable[[], None]) -> None:
        """Start everything without waiting for it to boot; fill ``record.resources`` and call
        ``save()`` as soon as anything exists, so that an interrupted launch can be torn down."""

    def poll(self, record: ClusterRecord) -> Poll: ...

    def security(self, record: ClusterRecord) -> Any | None:
        """The ``distributed.Security`` a client needs, or None."""

    def discover(self) -> list[Discovered]: ...

    def alive(self, record: ClusterRecord) -> bool:
        """True while anything of the cluster is still running."""

    def terminate(self, record: ClusterRecord) -> list[str]:
        """Remove everything of the cluster; return one line per kind of thing removed."""

    def scale(self, record: ClusterRecord, workers: int, retire: Callable[[list[str]], None]) -> None:
        """Add or remove workers; ``retire(names)`` moves data off workers before they stop."""

    def logs(self, record: ClusterRecord) -> dict[str, str]: ...


def get_backend(name: str) -> Backend:
    """The backend called ``name`` (imported on first use)."""
    if name == "local":
        from .local import LocalBackend

        return LocalBackend()
    if name == "ec2":
        from .ec2.backend import EC2Backend

        return EC2Backend()
    from ..core.errors import ProfileError

    raise ProfileError(
        f"The backend {name!r} is not available yet (ECS and Fargate are planned); use `backend: local` or "
        "`backend: ec2` in the profile."
    )


def aws_backends_to_scan() -> list[Backend]:
    """The AWS backends worth asking for tagged clusters: none until AWS credentials are configured."""
    from ..aws.session import credentials_available

    if not credentials_available():
        return []
    return [get_backend("ec2")]
