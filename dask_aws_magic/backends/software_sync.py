"""``software.sync`` for the AWS backends: the plan's part (the lock, the bucket, what is left out) and
the launch's (the bucket made when missing, the lock and local wheels published), and what the nodes'
role may do in the bucket. The lock itself is :mod:`.environment`; the node's side is
:mod:`..aws.sync_environment`."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from typing import Any

from ..aws import environments
from ..aws.session import aws
from .base import PlannedResource

_wheel_dir: str | None = None


def _wheels() -> str:
    """One folder per process for the wheels built from the kernel's local projects."""
    global _wheel_dir
    if _wheel_dir is None:
        _wheel_dir = tempfile.mkdtemp(prefix="dask-aws-magic-wheels-")
    return _wheel_dir


@dataclass
class SyncPlan:
    """The plan's view of software sync: the settings launch uses, the bucket as a resource, notes."""

    settings: dict[str, Any] | None  # None: no sync
    resources: list[PlannedResource] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# Whether software.sync is on when the profile does not say: on every AWS backend (ECS and Fargate tasks
# read their environment with their task role's credentials, from ECS's container credentials endpoint).
DEFAULT_ON = {"ec2": True, "fargate": True, "ecs": True}


def wanted(software: dict[str, Any], backend: str, borrowed: str | None = None) -> tuple[bool, str | None]:
    """Whether to sync, and why not. ``borrowed`` names the profile field of a role the user brings
    (`ecs.task_role`, `instance.iam_instance_profile`): no role is made for the cluster then, and that
    role reads the environment only if its owner allowed it, so sync is on only when asked."""
    if software.get("image"):
        return False, "software.sync is off: software.image wins (put the packages in the image)"
    if borrowed and "sync" not in software:
        return False, (f"software.sync is off by default with your own role (`{borrowed}`), which may not read "
                       "the environments bucket: allow it s3:GetObject on "
                       "arn:aws:s3:::dask-aws-magic-envs-ACCOUNT-REGION/envs/* (and s3:PutObject on .../archives/* "
                       "with the s3:if-none-match condition), then set `software.sync: true`")
    if not software.get("sync", DEFAULT_ON.get(backend, True)):
        return False, "software.sync is off: the nodes get Python, dask and distributed (and software.pip) only"
    return True, None


def plan(software: dict[str, Any], *, backend: str, python: str, arch: str, region: str, owner: str,
         borrowed: str | None = None) -> SyncPlan:
    """The lock of this kernel's environment and where it goes (creates nothing on AWS; builds the local
    projects' wheels on this machine)."""
    from . import environment

    on, why_not = wanted(software, backend, borrowed)
    if not on:
        return SyncPlan(None, notes=[why_not] if why_not else [])
    lock = environment.lock(python=python, arch=arch, exclude=software.get("exclude") or [],
                            pip=software.get("pip") or [], wheel_dir=_wheels())
    bucket = environments.bucket_name(environments.account_of(owner), region)
    settings = {"bucket": bucket, "key": lock.key, "lock": lock.to_json(), "wheels": [w.path for w in lock.wheels],
                "left_out": [left.line() for left in lock.left_out],
                # what the version report at connect need not miss on the nodes
                "excluded": sorted({*environment.ALWAYS_EXCLUDED, *(software.get("exclude") or [])})}
    resources = [PlannedResource(
        "s3-bucket", "environments", 1, f"{bucket}: environment {lock.key} ({lock.summary()}); made if missing, "
        f"kept after `down` as a cache, environments expire after {environments.EXPIRE_DAYS} days unused")]
    notes = [f"software.sync: {lock.summary()} go to the nodes (only what their image lacks is installed)"]
    if lock.left_out:
        notes.append("software.sync cannot reproduce on the nodes: " + "; ".join(settings["left_out"]))
    return SyncPlan(settings, resources, notes)


def publish(record: Any, scope: Any) -> None:
    """Make the bucket if missing and store the lock and local wheels (once per environment)."""
    sync = record.settings["software"].get("sync")
    if not sync:
        return
    s3 = scope.client("s3")
    with aws(f"storing the environment {sync['key']} in the S3 bucket {sync['bucket']}"):
        environments.ensure_bucket(s3, sync["bucket"], record.settings["region"], environments.bucket_tags(
            record.owner or ""))
        environments.publish(s3, sync["bucket"], sync["lock"], sync["wheels"])


def node_statements(record: Any) -> list[dict[str, Any]]:
    """What the nodes' role may do in the environments bucket (nothing without sync)."""
    sync = record.settings["software"].get("sync")
    if not sync:
        return []
    return environments.node_policy(environments.partition_of(record.owner or "arn:aws"), sync["bucket"],
                                    sync["key"])


def node_policy(record: Any) -> dict[str, Any] | None:
    """The policy of a role of the cluster's own that only reads its environment (None without sync)."""
    statements = node_statements(record)
    return {"Version": "2012-10-17", "Statement": statements} if statements else None


SCRIPT = "sync_environment.py"


def node_files(record: Any) -> dict[str, str] | None:
    """The files an EC2 node gets with its secret: the sync script (too large for user-data's 16 KB)."""
    if not record.settings["software"].get("sync"):
        return None
    from .ec2.userdata import _compact

    return {SCRIPT: _compact("aws/sync_environment.py")}


def packed_script() -> str:
    """The node's sync script (standard library only), compacted, compressed and base64-encoded: it travels in
    EC2 user-data (16 KB at most) and in ECS container commands."""
    import base64
    import zlib

    from .ec2.userdata import _compact

    return base64.b64encode(zlib.compress(_compact("aws/sync_environment.py").encode(), 9)).decode()
