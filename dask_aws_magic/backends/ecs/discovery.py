"""Finding ECS and Fargate clusters from their tags alone, in every scope in use: task definitions
(ACTIVE until ``down``), tasks and ECS clusters through the Resource Groups Tagging API (one paged
call), the scheduler tasks through DescribeTasks (100 per call), and the security groups."""

from __future__ import annotations

from typing import Any

from ...aws.scopes import LIST_ATTEMPTS, Scope, search
from ...aws.tags import TAG_BACKEND, TAG_CLUSTER, TAG_CLUSTER_ID, TAG_OWNER, TAG_PROTOCOL, TAG_ROLE, describe_all
from ..base import Discovered, Discovery
from ..dask_commands import endpoints
from ..ec2.discovery import caller, scope_of, scopes_in_use
from . import tasks
from .model import ECSResources

RESOURCE_TYPES = ["ecs:task", "ecs:cluster", "ecs:task-definition"]

__all__ = ["discover", "scope_of", "clusters_in"]


def discover(backend: str) -> Discovery:
    """Every cluster of ``backend`` in every scope in use, searched in parallel; never raises."""
    try:
        scopes = scopes_in_use(backend)
    except Exception as exc:
        return Discovery(failed=[f"Could not work out where {backend} clusters may be: {type(exc).__name__}: {exc}"])
    answered, failed = search(scopes, lambda scope: (caller(scope), clusters_in(scope, backend)),
                              f"{backend} clusters")
    found: dict[str, Discovered] = {}
    for _, (_, clusters) in answered:
        for item in clusters:
            found.setdefault(item.cluster_id, item)
    return Discovery(list(found.values()), searched=[str(scope) for scope, _ in answered], failed=failed,
                     me=[me for _, (me, _) in answered])


def _tags(mapping: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in mapping.get("Tags", [])}


def clusters_in(scope: Scope, backend: str) -> list[Discovered]:
    """Every cluster of ``backend`` with a task definition, a task, an ECS cluster or a security group."""
    tagging = scope.client("resourcegroupstaggingapi", attempts=LIST_ATTEMPTS)
    ec2 = scope.client("ec2", attempts=LIST_ATTEMPTS)
    mine = [{"Key": TAG_BACKEND, "Values": [backend]}]
    tagged = describe_all(tagging, "get_resources", "ResourceTagMappingList[]", TagFilters=mine,
                          ResourceTypeFilters=RESOURCE_TYPES)
    found: dict[str, tuple[Discovered, ECSResources]] = {}

    def entry(tags: dict[str, str]) -> tuple[Discovered, ECSResources]:
        cluster_id = tags.get(TAG_CLUSTER_ID, "")
        if cluster_id not in found:
            item = Discovered(name=tags.get(TAG_CLUSTER) or cluster_id, cluster_id=cluster_id, backend=backend,
                              resources={}, running=False, owner=tags.get(TAG_OWNER, ""))
            model = ECSResources(region=scope.region, aws_profile=scope.aws_profile, endpoint_url=scope.endpoint_url,
                                 protocol="tcp" if tags.get(TAG_PROTOCOL) == "tcp" else "tls")
            found[cluster_id] = (item, model)
        return found[cluster_id]

    schedulers: dict[str, list[str]] = {}  # ECS cluster -> scheduler task ARNs
    for resource in tagged:
        arn, tags = resource["ResourceARN"], _tags(resource)
        if TAG_CLUSTER_ID not in tags:
            continue
        item, model = entry(tags)
        kind = arn.split(":")[5].split("/")[0]
        if kind == "cluster":
            model.ecs_cluster, model.created_cluster = arn.rsplit("/", 1)[-1], True
        elif kind == "task-definition":
            model.task_definitions[tags.get(TAG_ROLE, "task")] = arn
        elif kind == "task":
            cluster = arn.split("/")[1] if arn.count("/") >= 2 else (model.ecs_cluster or "default")
            model.ecs_cluster = model.ecs_cluster or cluster
            if tags.get(TAG_ROLE) == "scheduler":
                schedulers.setdefault(cluster, []).append(arn)
    for cluster, arns in schedulers.items():
        for task in tasks.describe(scope.client("ecs", attempts=LIST_ATTEMPTS), cluster, arns):
            if task.get("lastStatus") not in tasks.LIVE:
                continue
            item, model = entry({t["key"]: t["value"] for t in task.get("tags", [])})
            item.running, model.scheduler = True, task["taskArn"]
            model.scheduler_ip = tasks.private_ip(task)
            reachable = model.scheduler_ip
            if model.scheduler_ip is not None:  # its own interface (Fargate): the public address, if any
                reachable = tasks.public_ip(ec2, task) or model.scheduler_ip
            else:  # host networking: the container instance's address
                model.scheduler_ip, model.scheduler_public_ip = tasks.instance_addresses(
                    scope.client("ecs", attempts=LIST_ATTEMPTS), ec2, cluster, task)
                reachable = model.scheduler_public_ip or model.scheduler_ip
            created = task.get("createdAt")
            item.created_at = created.timestamp() if hasattr(created, "timestamp") else None
            if reachable:
                item.scheduler_address, item.dashboard_link = endpoints(reachable, model.protocol)
    groups = describe_all(ec2, "describe_security_groups", "SecurityGroups[]",
                          Filters=[{"Name": f"tag:{TAG_BACKEND}", "Values": [backend]}])
    for group in groups:
        tags = _tags(group)
        if TAG_CLUSTER_ID in tags:
            entry(tags)[1].security_group = group["GroupId"]
    for item, model in found.values():
        item.resources = model.to_json()
    return [item for item, _ in found.values()]
