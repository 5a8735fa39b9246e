"""What the ``ec2`` backend created for one cluster, stored as JSON in the cluster's record."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ...aws.tls import ClusterTLS
from ..dask_commands import DASHBOARD_PORT, SCHEDULER_PORT


def endpoints(ip: str, protocol: str) -> tuple[str, str]:
    """The scheduler's address and dashboard link on an instance at ``ip``."""
    return f"{protocol}://{ip}:{SCHEDULER_PORT}", f"http://{ip}:{DASHBOARD_PORT}/status"


@dataclass
class EC2Resources:
    """The security group and instances of one cluster, and its TLS material (None without TLS,
    or when the record was rebuilt from tags: it is then read back from the scheduler's user-data)."""

    region: str
    aws_profile: str | None = None  # the credentials profile that sees it (None: the default credentials)
    endpoint_url: str | None = None  # where its AWS calls went, when not AWS itself (the sandbox)
    security_group: str | None = None
    scheduler: str | None = None  # instance id
    scheduler_ip: str | None = None  # private address, known from RunInstances before it boots
    scheduler_subnet: str | None = None  # where the workers go first (no traffic across zones)
    workers: dict[str, dict[str, bool]] = field(default_factory=dict)  # instance id -> {"spot": bool}
    tls: dict[str, str] | None = None  # {"cert", "key"}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EC2Resources:
        return cls(region=data.get("region", ""), aws_profile=data.get("aws_profile"),
                   endpoint_url=data.get("endpoint_url"), security_group=data.get("security_group"),
                   scheduler=data.get("scheduler"), scheduler_ip=data.get("scheduler_ip"),
                   scheduler_subnet=data.get("scheduler_subnet"),
                   workers={k: dict(v) for k, v in (data.get("workers") or {}).items()}, tls=data.get("tls"))

    @property
    def protocol(self) -> str:
        return "tls" if self.tls else "tcp"

    def cluster_tls(self) -> ClusterTLS | None:
        return ClusterTLS(**self.tls) if self.tls else None

    def instance_ids(self) -> list[str]:
        """Every instance recorded (the scheduler and the workers)."""
        return ([self.scheduler] if self.scheduler else []) + list(self.workers)

    def add_workers(self, instances: list[dict[str, Any]]) -> None:
        """Record launched worker instances (RunInstances or DescribeInstances items)."""
        for inst in instances:
            self.workers[inst["InstanceId"]] = {"spot": inst.get("InstanceLifecycle") == "spot"}
