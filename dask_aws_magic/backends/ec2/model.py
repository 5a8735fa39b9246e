"""What the ``ec2`` backend created for one cluster, stored as JSON in the cluster's record."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class EC2Resources:
    """The security group, secrets, role and instances of one cluster, and the client's TLS identity
    (None without TLS, or when the record was rebuilt from tags: it is then read from the client secret)."""

    region: str
    aws_profile: str | None = None  # the credentials profile that sees it (None: the default credentials)
    endpoint_url: str | None = None  # where its AWS calls went, when not AWS itself (the sandbox)
    protocol: str = "tls"  # or "tcp" when the profile turned TLS off
    security_group: str | None = None
    node_secret: str | None = None  # ARN of the nodes' secret
    client_secret: str | None = None  # ARN of the client's identity
    role: str | None = None  # the instance role and profile created for the cluster (same name)
    scheduler: str | None = None  # instance id
    scheduler_ip: str | None = None  # private address, known from RunInstances before it boots
    scheduler_subnet: str | None = None  # where the workers go first (no traffic across zones)
    workers: dict[str, dict[str, bool]] = field(default_factory=dict)  # instance id -> {"spot": bool}
    tls: dict[str, str] | None = None  # the client's identity: {"ca", "cert", "key"}
    keeper: dict[str, Any] | None = None  # the process that replaces reclaimed Spot workers

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EC2Resources:
        known = {name: data.get(name) for name in cls.__dataclass_fields__ if name not in ("workers", "protocol")}
        return cls(**{**known, "region": data.get("region", "")},
                   protocol=data.get("protocol") or ("tls" if data.get("tls") else "tcp"),
                   workers={k: dict(v) for k, v in (data.get("workers") or {}).items()})

    def security(self) -> Any | None:
        """The client's ``distributed.Security``, None without TLS."""
        from ...aws.tls import client_security

        return client_security(**self.tls) if self.tls else None

    def instance_ids(self) -> list[str]:
        """Every instance recorded (the scheduler and the workers)."""
        return ([self.scheduler] if self.scheduler else []) + list(self.workers)

    def add_workers(self, instances: list[dict[str, Any]]) -> None:
        """Record launched worker instances (RunInstances or DescribeInstances items)."""
        for inst in instances:
            self.workers[inst["InstanceId"]] = {"spot": inst.get("InstanceLifecycle") == "spot"}
