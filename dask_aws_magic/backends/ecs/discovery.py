"""Finding ECS and Fargate clusters from their tags alone, in every scope in use: ECS clusters, tasks and
task definitions through the Resource Groups Tagging API (one paged call for both ECS backends), each
confirmed by ECS (the tagging API lists what has gone too), and the security groups. Tags only say where
to look: a cluster is made of what its proof (a record made here, else its manifest: its ECS cluster's
and task-definition families' names, its tasks' ``startedBy``) ties to it; the rest of what carries its
tags is reported as unverified."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...aws.manifest import Manifest
from ...aws.scopes import LIST_ATTEMPTS, Scope, shared
from ...aws.tags import (
    TAG_BACKEND,
    TAG_CLUSTER,
    TAG_CLUSTER_ID,
    TAG_OWNER,
    TAG_ROLE,
    describe_all,
    tagged_security_groups,
)
from ..base import Discovered, Discovery, Unverified
from ..dask_commands import endpoints
from ..ec2.discovery import gather, scope_of, scopes_in_use
from ..proof import Proofs
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
    return gather(scopes, backend, clusters_in)


def _tags(mapping: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in mapping.get("Tags", [])}


def _kind(arn: str) -> str:
    return arn.split(":")[5].split("/")[0]


def _family(task_definition_arn: str) -> str:
    return task_definition_arn.rsplit("/", 1)[-1].rsplit(":", 1)[0]


def _task_cluster(arn: str) -> str | None:
    """The ECS cluster in a task's ARN (new-style ARNs name it)."""
    return arn.split("/")[1] if arn.count("/") >= 2 else None


@dataclass
class _Tagged:
    """What carries one cluster id's tags in a scope: ECS resources (ARN -> tags), the scheduler tasks
    described, security groups."""

    arns: dict[str, dict[str, str]] = field(default_factory=dict)
    schedulers: list[dict[str, Any]] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)
    by_record: bool = False  # its tasks run in its own ECS cluster, which this machine's record knows: not described


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
    """This machine's records of ``backend``, made by its `up` (proof of what they list), that know their
    scheduler task and its address."""
    from ...core import registry

    records, _ = registry.scan()
    return {r.cluster_id: r for r in records if r.backend == backend and r.profile != registry.RECOVERED
            and r.scheduler_address and r.resources.get("scheduler")}


def clusters_in(scope: Scope, backend: str) -> list[Discovered | Unverified]:
    """Every cluster of ``backend`` with an ACTIVE ECS cluster, a live task, an ACTIVE task definition or a
    security group, built from what its proof ties to it; the rest of what carries its tags comes back as
    unverified. Calls, whatever the number of clusters: the tagging API and the security groups (both
    shared with the other backends' look), DescribeClusters (100 per call); DescribeTasks only for an ECS
    cluster that is not a cluster's own or whose cluster is not recorded here with its scheduler (the
    cluster's own ECS cluster counts its running tasks), ListTaskDefinitions only when the tagging API
    names task definitions of a cluster nothing else showed."""
    ec2 = scope.client("ec2", attempts=LIST_ATTEMPTS)
    every = shared(scope, "ecs resources", lambda: _tagged(scope))  # both ECS backends'
    mine = [r for r in every if _tags(r).get(TAG_BACKEND) == backend and TAG_CLUSTER_ID in _tags(r)]
    everyone = sorted({r["ResourceARN"].rsplit("/", 1)[-1] for r in every if _kind(r["ResourceARN"]) == "cluster"}
                      | {_task_cluster(r["ResourceARN"]) or "default" for r in every
                         if _kind(r["ResourceARN"]) == "task"})
    states = shared(scope, f"ecs clusters {everyone}", lambda: _clusters(scope, everyone)) if everyone else {}
    tagged: dict[str, _Tagged] = {}
    own: set[str] = set()  # ECS clusters a cluster of this backend made
    definitions: list[tuple[str, dict[str, str]]] = []
    by_cluster: dict[str, list[tuple[str, dict[str, str]]]] = {}  # ECS cluster -> its tagged tasks
    for resource in mine:
        arn, tags = resource["ResourceARN"], _tags(resource)
        kind = _kind(arn)
        if kind == "cluster":
            own.add(arn.rsplit("/", 1)[-1])
            if states.get(arn.rsplit("/", 1)[-1], {}).get("status") == "ACTIVE":  # INACTIVE: deleted
                tagged.setdefault(tags[TAG_CLUSTER_ID], _Tagged()).arns[arn] = tags
        elif kind == "task-definition":
            definitions.append((arn, tags))
        elif kind == "task":
            by_cluster.setdefault(_task_cluster(arn) or "default", []).append((arn, tags))
    recorded = _recorded(backend)
    for cluster, items in by_cluster.items():
        state = states.get(cluster)
        if state is not None and state.get("status") != "ACTIVE":
            continue  # an INACTIVE cluster runs nothing
        ids = {tags[TAG_CLUSTER_ID] for _, tags in items}
        if state is not None and cluster in own and len(ids) == 1 and ids <= recorded.keys():
            if state.get("runningTasksCount", 0) + state.get("pendingTasksCount", 0):
                # the cluster's own ECS cluster runs its tasks, and this machine's record knows them
                tagged.setdefault(next(iter(ids)), _Tagged()).by_record = True
            continue
        for task in tasks.describe(scope.client("ecs", attempts=LIST_ATTEMPTS), cluster, [arn for arn, _ in items]):
            tags = {t["key"]: t["value"] for t in task.get("tags", [])}
            if task.get("lastStatus") not in tasks.LIVE or TAG_CLUSTER_ID not in tags:
                continue  # stopped: listed by the tagging API for a while after
            things = tagged.setdefault(tags[TAG_CLUSTER_ID], _Tagged())
            things.arns[task["taskArn"]] = tags
            if tags.get(TAG_ROLE) == "scheduler":
                things.schedulers.append(task)
    # A task definition alone is a leftover worth finding: confirmed ACTIVE only for a cluster nothing else showed.
    unconfirmed = [tags[TAG_CLUSTER_ID] for _, tags in definitions if tags[TAG_CLUSTER_ID] not in tagged]
    active = _active_definitions(scope) if unconfirmed else set()
    for arn, tags in definitions:
        if tags[TAG_CLUSTER_ID] in tagged or arn in active:
            tagged.setdefault(tags[TAG_CLUSTER_ID], _Tagged()).arns[arn] = tags
    for group in shared(scope, "security groups", lambda: tagged_security_groups(ec2)):
        tags = _tags(group)
        if tags.get(TAG_BACKEND) == backend and TAG_CLUSTER_ID in tags:
            tagged.setdefault(tags[TAG_CLUSTER_ID], _Tagged()).groups.append(group)
    proofs = Proofs(scope, backend)
    found: list[Discovered | Unverified] = []
    for cluster_id, things in tagged.items():
        found += _verify(scope, backend, cluster_id, things, proofs, ec2)
    return found


def _proves(manifest: Manifest, kind: str, arn_or_id: str, group_name: str | None = None) -> bool:
    """Whether the manifest ties one tagged resource to its cluster, by what nobody can change on it."""
    clusters = manifest.names.get("ecs-cluster", [])
    if kind == "cluster":
        return arn_or_id.rsplit("/", 1)[-1] in clusters
    if kind == "task-definition":
        return manifest.has_name("family", _family(arn_or_id))
    if kind == "task":
        return (_task_cluster(arn_or_id) or "default") in clusters
    return manifest.has_id("security-group", arn_or_id) or manifest.has_name("security-group", group_name)


def _scheduler_proven(manifest: Manifest, task: dict[str, Any]) -> bool:
    """A scheduler task: started by the cluster (``startedBy``), in its ECS cluster, of its scheduler family."""
    family = _family(task.get("taskDefinitionArn", ""))
    return (task.get("startedBy") == manifest.cluster_id and family.endswith("-scheduler")
            and manifest.has_name("family", family)
            and task.get("clusterArn", "").rsplit("/", 1)[-1] in manifest.names.get("ecs-cluster", []))


def _verify(scope: Scope, backend: str, cluster_id: str, things: _Tagged, proofs: Proofs,
            ec2: Any) -> list[Discovered | Unverified]:
    record = proofs.record(cluster_id)
    known = ECSResources.from_json(record.resources) if record is not None else None
    recorded = set()
    if known is not None:
        recorded = {*known.task_arns(), *known.task_definitions.values(), known.security_group or ""}
    items = [(_kind(arn), arn, None) for arn in things.arns] + [("group", g["GroupId"], g) for g in things.groups]
    schedulers = {t["taskArn"]: t for t in things.schedulers}
    manifest, why = None, ""

    def proven_by(proof: Manifest, kind: str, key: str, group: dict[str, Any] | None) -> bool:
        if kind == "task" and key in schedulers:
            return _scheduler_proven(proof, schedulers[key])
        return _proves(proof, kind, key, group.get("GroupName") if group else None)

    def by_record(kind: str, key: str) -> bool:
        if known is None:
            return False
        if kind == "cluster":
            return known.created_cluster and key.rsplit("/", 1)[-1] == known.ecs_cluster
        return key in recorded

    doubtful = [(k, key, g) for k, key, g in items if not by_record(k, key)]
    if doubtful:
        manifest, why = proofs.covering(cluster_id, backend, lambda m: all(proven_by(m, *d) for d in doubtful),
                                        "resources it never made")
    proven = [(k, key, g) for k, key, g in items
              if by_record(k, key) or (manifest is not None and proven_by(manifest, k, key, g))]
    unproven = [item for item in items if item not in proven]
    out: list[Discovered | Unverified] = []
    if proven:
        out.append(_cluster(scope, backend, cluster_id, proven, schedulers, record, manifest, ec2))
        if things.by_record and record is not None:  # running, as its record says (its ECS cluster counts tasks)
            out[-1].running = True
            out[-1].scheduler_address, out[-1].dashboard_link = record.scheduler_address, record.dashboard_link
            out[-1].resources.update(scheduler=record.resources.get("scheduler"),
                                     workers=record.resources.get("workers") or {})
    if unproven:
        first_key = unproven[0][1]
        tags = things.arns.get(first_key) or _tags(next(g for g in things.groups if g["GroupId"] == first_key))
        out.append(Unverified(
            backend=backend, cluster_id=cluster_id, name=tags.get(TAG_CLUSTER, ""), owner=tags.get(TAG_OWNER, ""),
            scope=str(scope), resources=[key for _, key, _ in unproven], reason=why,
            location={"region": scope.region, "aws_profile": scope.aws_profile, "endpoint_url": scope.endpoint_url}))
    return out


def _cluster(scope: Scope, backend: str, cluster_id: str, proven: list[tuple[str, str, Any]],
             schedulers: dict[str, dict[str, Any]], record: ClusterRecord | None, manifest: Manifest | None,
             ec2: Any) -> Discovered:
    """A cluster made of its proven resources only; name, owner, protocol and ECS cluster from its proof."""
    known = ECSResources.from_json(record.resources) if record is not None else None
    if manifest is not None:
        name, owner, protocol = manifest.cluster, manifest.owner, manifest.protocol
        ecs_cluster = (manifest.names.get("ecs-cluster") or [None])[0]
    else:
        assert record is not None and known is not None
        name, owner, protocol, ecs_cluster = record.name, record.owner, known.protocol, known.ecs_cluster
    item = Discovered(name=name, cluster_id=cluster_id, backend=backend, resources={}, running=False, owner=owner)
    model = ECSResources(region=scope.region, aws_profile=scope.aws_profile, endpoint_url=scope.endpoint_url,
                         protocol=protocol, ecs_cluster=ecs_cluster)
    for kind, key, _ in proven:
        if kind == "cluster":
            model.created_cluster = True
        elif kind == "task-definition":
            model.task_definitions[_family(key).rsplit("-", 1)[-1]] = key
        elif kind == "group":
            model.security_group = key
        elif key in schedulers:
            _scheduler(scope, item, model, schedulers[key], ec2)
    item.resources = model.to_json()
    return item


def _scheduler(scope: Scope, item: Discovered, model: ECSResources, task: dict[str, Any], ec2: Any) -> None:
    """Where the cluster's live scheduler task is reached."""
    item.running, model.scheduler = True, task["taskArn"]
    model.scheduler_ip = tasks.private_ip(task)
    if model.scheduler_ip is not None:  # its own interface (Fargate): the public address, if any
        reachable = tasks.public_ip(ec2, task) or model.scheduler_ip
    else:  # host networking: the container instance's address
        model.scheduler_ip, model.scheduler_public_ip = tasks.instance_addresses(
            scope.client("ecs", attempts=LIST_ATTEMPTS), ec2, str(model.ecs_cluster), task)
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
