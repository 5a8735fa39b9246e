"""What the ``ec2`` backend created for one cluster, stored as JSON in the cluster's record."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class EC2Resources:
    """The security group, secrets, roles and instances of one cluster, and the client's TLS identity
    (None without TLS, or when the record was rebuilt from tags: it is then read from the client secret)."""

    region: str
    aws_profile: str | None = None  # the credentials profile that sees it (None: the default credentials)
    endpoint_url: str | None = None  # where its AWS calls went, when not AWS itself (the sandbox)
    protocol: str = "tls"  # or "tcp" when the profile turned TLS off
    security_group: str | None = None
    node_secrets: dict[str, str] = field(default_factory=dict)  # node role -> ARN of its secret (its own identity)
    client_secret: str | None = None  # ARN of the manifest and the client's identity
    roles: dict[str, str] = field(default_factory=dict)  # node role -> the instance role and profile made for it
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
        mappings = ("workers", "protocol", "node_secrets", "roles")
        known = {name: data.get(name) for name in cls.__dataclass_fields__ if name not in mappings}
        both = ("scheduler", "worker")  # a record of an older version: one secret and one role for both
        node_secrets = data.get("node_secrets") or {r: data["node_secret"] for r in both if data.get("node_secret")}
        roles = data.get("roles") or {r: data["role"] for r in both if data.get("role")}
        return cls(**{**known, "region": data.get("region", "")},
                   protocol=data.get("protocol") or ("tls" if data.get("tls") else "tcp"),
                   workers={k: dict(v) for k, v in (data.get("workers") or {}).items()},
                   node_secrets=dict(node_secrets), roles=dict(roles))

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
