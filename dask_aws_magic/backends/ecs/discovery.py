"""Finding ECS and Fargate clusters from their tags alone, in every scope in use: task definitions,
tasks and ECS clusters through the Resource Groups Tagging API (one paged call), each confirmed by
ECS (the tagging API lists what has gone too), and the security groups."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...aws.scopes import LIST_ATTEMPTS, Scope, search, shared
from ...aws.tags import (
    TAG_BACKEND,
    TAG_CLUSTER,
    TAG_CLUSTER_ID,
    TAG_OWNER,
    TAG_PROTOCOL,
    TAG_ROLE,
    describe_all,
    tagged_security_groups,
)
from ..base import Discovered, Discovery
from ..dask_commands import endpoints
from ..ec2.discovery import caller, scope_of, scopes_in_use
from . import tasks
from .model import ECSResources

if TYPE_CHECKING:
    from ...core.registry import ClusterRecord

RESOURCE_TYPES = ["ecs:task", "ecs:cluster", "ecs:task-definition"]
BACKENDS = ("ecs", "fargate")
FAMILY_PREFIX = "dask-aws-magic-"  # every task definition family we register (infra.names)

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


def _tagged(scope: Scope) -> list[dict[str, Any]]:
    """Every ECS cluster, task and task definition of either ECS backend (one paged call for both). The
    tagging API also lists what has gone: stopped tasks, INACTIVE clusters, deleted task definitions
    ("tagged or previously tagged"), so nothing here is taken to exist until ECS confirms it."""
    tagging = scope.client("resourcegroupstaggingapi", attempts=LIST_ATTEMPTS)
    return describe_all(tagging, "get_resources", "ResourceTagMappingList[]",
                        TagFilters=[{"Key": TAG_BACKEND, "Values": list(BACKENDS)}], ResourceTypeFilters=RESOURCE_TYPES)


def _clusters(scope: Scope, names: list[str]) -> dict[str, dict[str, Any]]:
    """The ECS clusters ``names`` as ECS describes them now (status, task counts), 100 per call."""
    ecs = scope.client("ecs", attempts=LIST_ATTEMPTS)
    found: dict[str, dict[str, Any]] = {}
    for batch in tasks.chunks(sorted(names), 100):
        found.update({c["clusterName"]: c for c in ecs.describe_clusters(clusters=batch).get("clusters", [])})
    return found


def _active_definitions(scope: Scope) -> set[str]:
    ecs = scope.client("ecs", attempts=LIST_ATTEMPTS)
    pages = ecs.get_paginator("list_task_definitions").paginate(familyPrefix=FAMILY_PREFIX, status="ACTIVE")
    return {arn for page in pages for arn in page.get("taskDefinitionArns", [])}


def _recorded(backend: str) -> dict[str, ClusterRecord]:
    """This machine's records of ``backend`` that know their scheduler task and its address."""
    from ...core import registry

    records, _ = registry.scan()
    return {r.cluster_id: r for r in records
            if r.backend == backend and r.scheduler_address and r.resources.get("scheduler")}


def clusters_in(scope: Scope, backend: str) -> list[Discovered]:
    """Every cluster of ``backend`` with an ACTIVE ECS cluster, a live task, an ACTIVE task definition or
    a security group. Calls, whatever the number of clusters: the tagging API and the security groups
    (both shared with the other backends' look), DescribeClusters (100 per call); DescribeTasks only for
    an ECS cluster that is not the cluster's own or whose cluster is not recorded here with its scheduler
    (the cluster's own ECS cluster counts its running tasks), ListTaskDefinitions only when the tagging
    API names task definitions."""
    ec2 = scope.client("ec2", attempts=LIST_ATTEMPTS)
    every = shared(scope, "ecs resources", lambda: _tagged(scope))  # both ECS backends'
    tagged = [r for r in every if _tags(r).get(TAG_BACKEND) == backend and TAG_CLUSTER_ID in _tags(r)]
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

    own: dict[str, dict[str, str]] = {}  # ECS cluster name -> the tags of the dask cluster that made it
    definitions: list[tuple[str, dict[str, str]]] = []
    by_cluster: dict[str, list[tuple[str, dict[str, str]]]] = {}  # ECS cluster -> its tagged tasks
    for resource in tagged:
        arn, tags = resource["ResourceARN"], _tags(resource)
        kind = arn.split(":")[5].split("/")[0]
        if kind == "cluster":
            own[arn.rsplit("/", 1)[-1]] = tags
        elif kind == "task-definition":
            definitions.append((arn, tags))
        elif kind == "task":
            by_cluster.setdefault(arn.split("/")[1] if arn.count("/") >= 2 else "default", []).append((arn, tags))
    everyone = sorted({r["ResourceARN"].rsplit("/", 1)[-1] for r in every
                       if r["ResourceARN"].split(":")[5].startswith("cluster/")} | set(by_cluster))
    states = shared(scope, f"ecs clusters {everyone}", lambda: _clusters(scope, everyone)) if everyone else {}
    for name, tags in own.items():
        if states.get(name, {}).get("status") == "ACTIVE":  # INACTIVE: deleted, still described a while
            _, model = entry(tags)
            model.ecs_cluster, model.created_cluster = name, True
    # A task definition alone is a leftover worth finding: confirmed ACTIVE only for a cluster nothing else showed.
    unconfirmed = [tags[TAG_CLUSTER_ID] for _, tags in definitions if tags[TAG_CLUSTER_ID] not in found]
    active = _active_definitions(scope) if unconfirmed else set()
    for arn, tags in definitions:
        if tags[TAG_CLUSTER_ID] in found or arn in active:
            entry(tags)[1].task_definitions[tags.get(TAG_ROLE, "task")] = arn
    recorded = _recorded(backend)
    for cluster, items in by_cluster.items():
        state = states.get(cluster)
        if state is not None and state.get("status") != "ACTIVE":
            continue  # an INACTIVE cluster runs nothing
        ids = {tags[TAG_CLUSTER_ID] for _, tags in items}
        if state is not None and cluster in own and len(ids) == 1 and ids <= recorded.keys():
            counted = state.get("runningTasksCount", 0) + state.get("pendingTasksCount", 0)
            if counted:  # the cluster's own ECS cluster runs its tasks; the record knows the scheduler
                record = recorded[next(iter(ids))]
                item, model = entry(dict(items[0][1]))
                item.running, model.ecs_cluster = True, cluster
                model.scheduler = record.resources.get("scheduler")
                item.scheduler_address, item.dashboard_link = record.scheduler_address, record.dashboard_link
            continue
        _described(scope, ec2, cluster, [arn for arn, _ in items], entry)
    for group in shared(scope, "security groups", lambda: tagged_security_groups(ec2)):
        tags = _tags(group)
        if tags.get(TAG_BACKEND) == backend and TAG_CLUSTER_ID in tags:
            entry(tags)[1].security_group = group["GroupId"]
    for item, model in found.values():
        item.resources = model.to_json()
    return [item for item, _ in found.values()]


def _described(scope: Scope, ec2: Any, cluster: str, arns: list[str], entry: Any) -> None:
    """The live tasks among ``arns`` (DescribeTasks, 100 per call): their clusters, and their schedulers'
    addresses (a public address asked once per task)."""
    ecs = scope.client("ecs", attempts=LIST_ATTEMPTS)
    for task in tasks.describe(ecs, cluster, arns):
        if task.get("lastStatus") not in tasks.LIVE:
            continue  # stopped: listed by the tagging API for a while after
        tags = {t["key"]: t["value"] for t in task.get("tags", [])}
        if TAG_CLUSTER_ID not in tags:
            continue
        item, model = entry(tags)
        model.ecs_cluster = model.ecs_cluster or cluster
        if tags.get(TAG_ROLE) != "scheduler":
            model.workers[task["taskArn"]] = {"spot": task.get("capacityProviderName") == "FARGATE_SPOT"}
            continue
        item.running, model.scheduler = True, task["taskArn"]
        model.scheduler_ip = tasks.private_ip(task)
        if model.scheduler_ip is not None:  # its own interface (Fargate): the public address, if any
            reachable = _public_ip(ec2, task) or model.scheduler_ip
        else:  # host networking: the container instance's address
            model.scheduler_ip, model.scheduler_public_ip = tasks.instance_addresses(ecs, ec2, cluster, task)
            reachable = model.scheduler_public_ip or model.scheduler_ip
        created = task.get("createdAt")
        item.created_at = created.timestamp() if hasattr(created, "timestamp") else None
        if reachable:
            item.scheduler_address, item.dashboard_link = endpoints(reachable, model.protocol)


_public: dict[str, str | None] = {}  # task ARN -> its public address: it keeps it while it runs


def _public_ip(ec2: Any, task: dict[str, Any]) -> str | None:
    if len(_public) > 1000:
        _public.clear()
    if task["taskArn"] not in _public:
        _public[task["taskArn"]] = tasks.public_ip(ec2, task)
    return _public[task["taskArn"]]
