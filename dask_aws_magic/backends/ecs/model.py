"""What the ``fargate`` and ``ecs`` backends created for one cluster, stored as JSON in its record."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


def task_id(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


@dataclass
class ECSResources:
    """Everything of one cluster; ``created_*`` say what ``down`` removes (never what the profile named)."""

    region: str
    aws_profile: str | None = None
    endpoint_url: str | None = None
    protocol: str = "tls"
    ecs_cluster: str | None = None  # name
    created_cluster: bool = False
    log_group: str | None = None
    keep_logs: bool = False
    execution_role: str | None = None  # ARN
    task_role: str | None = None  # ARN of the task role made for software.sync (never the profile's)
    security_group: str | None = None
    node_secret: str | None = None  # ARN
    client_secret: str | None = None  # ARN
    task_definitions: dict[str, str] = field(default_factory=dict)  # role -> ARN
    scheduler: str | None = None  # task ARN
    scheduler_ip: str | None = None  # private address: the task's network interface (fargate), its instance's (ecs)
    scheduler_public_ip: str | None = None  # ecs: the public address of the scheduler's container instance
    workers: dict[str, dict[str, Any]] = field(default_factory=dict)  # task ARN -> {"spot": bool}
    launch_template: str | None = None  # ecs: the container instances' template (id)
    autoscaling_group: str | None = None  # ecs: name
    instance_role: str | None = None  # ecs: the container instances' role and instance profile (name)
    efs: str | None = None  # file system id, when created
    keeper: dict[str, Any] | None = None  # the process that replaces reclaimed Spot workers
    tls: dict[str, str] | None = None  # the client's identity: {"ca", "cert", "key"}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ECSResources:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values.setdefault("region", "")
        values["workers"] = {k: dict(v) for k, v in (values.get("workers") or {}).items()}
        values["task_definitions"] = dict(values.get("task_definitions") or {})
        return cls(**values)

    def security(self) -> Any | None:
        """The client's ``distributed.Security``, or None without TLS."""
        if not self.tls:
            return None
        from ...aws.tls import client_security

        return client_security(self.tls["ca"], self.tls["cert"], self.tls["key"])

    def task_arns(self) -> list[str]:
        return ([self.scheduler] if self.scheduler else []) + list(self.workers)
