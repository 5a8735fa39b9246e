"""Finding EC2 clusters from their tags alone (a registry from elsewhere, or none at all), in every
scope a cluster of this machine may live in. Tags only say where to look: a cluster is made of what
its proof (:mod:`..proof`: a record made here, else its manifest) ties to it, and whatever else
carries its tags is reported as unverified.

Where to look: the region of every profile and of every record, each with the credentials profile
it names, plus the default credentials' own region. Not every region the account has enabled:
that sweep is a DescribeRegions and two calls in each of ~17-30 regions, on every ``list`` and
every ``up`` (which looks for a namesake), where every cluster this machine can launch is in a
region one of its profiles or records names. A record stays until ``down`` succeeds, so a
cluster launched here is found even after its profile changed region.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...aws.identity import owner
from ...aws.manifest import Manifest
from ...aws.scopes import LIST_ATTEMPTS, Scope, current_endpoint, search, shared
from ...aws.session import default_region
from ...aws.tags import (
    TAG_BACKEND,
    TAG_CLUSTER,
    TAG_CLUSTER_ID,
    TAG_OWNER,
    tag_value,
    tagged_security_groups,
)
from ...core.errors import DaskAwsMagicError
from ..base import Discovered, Discovery, Unverified
from ..dask_commands import endpoints
from ..proof import Proofs
from . import instances
from .model import EC2Resources

if TYPE_CHECKING:
    from ...core.registry import ClusterRecord


def scope_of(record: ClusterRecord) -> Scope:
    """Where ``record``'s cluster lives: its plan's settings, else what discovery stored in its model."""
    s, r = record.settings, record.resources
    return Scope(region=s.get("region") or r.get("region") or "(no region)",
                 aws_profile=s.get("aws_profile") or r.get("aws_profile"),
                 endpoint_url=s.get("endpoint_url") or r.get("endpoint_url"))


def scopes_in_use(backend: str) -> list[Scope]:
    """Every scope a profile or a record of ``backend`` names, and the default credentials' region;
    the records of a stopped sandbox left out (nothing is left there)."""
    from ...core import profiles, registry

    here = current_endpoint()
    scopes: list[Scope] = []
    records, _ = registry.scan()  # corrupt records are the core's to report
    for record in records:
        if record.backend == backend:
            scope = scope_of(record)
            if scope.region != "(no region)" and not scope.stopped_sandbox:
                scopes.append(scope)
    for name in profiles.available():
        try:
            profile = profiles.load(name)
        except DaskAwsMagicError:
            continue  # a profile that does not load cannot have launched anything
        if profile.backend != backend:
            continue
        aws_profile = profile.data.get("aws_profile")
        try:
            region = profile.data.get("region") or default_region(aws_profile)
        except DaskAwsMagicError:
            continue  # its credentials profile does not exist here: nothing was launched with it here
        if region:
            scopes.append(Scope(region, aws_profile, here))
    with contextlib.suppress(DaskAwsMagicError):
        region = default_region()
        if region:
            scopes.append(Scope(region, None, here))
    return list(dict.fromkeys(scopes))


def discover(backend: str) -> Discovery:
    """Every cluster of ``backend`` in every scope in use, searched in parallel; never raises."""
    try:
        scopes = scopes_in_use(backend)
    except Exception as exc:  # the registry or profiles unreadable: say so, never raise
        return Discovery(failed=[f"Could not work out where {backend} clusters may be: {type(exc).__name__}: {exc}"])
    return gather(scopes, backend, clusters_in)


def gather(scopes: list[Scope], backend: str, list_one: Callable[[Scope, str], list[Discovered | Unverified]],
           ) -> Discovery:
    """Who the caller is, then ``list_one``, in every scope; the proven clusters, the unverified resources
    and where it looked."""
    answered, failed = search(scopes, lambda scope: (caller(scope), list_one(scope, backend)),
                              f"{backend} clusters")
    found: dict[str, Discovered] = {}
    unverified: list[Unverified] = []
    for _, (_, items) in answered:
        for item in items:
            if isinstance(item, Unverified):
                unverified.append(item)
            else:
                found.setdefault(item.cluster_id, item)  # the same account seen with two credentials profiles
    return Discovery(list(found.values()), searched=[str(scope) for scope, _ in answered], failed=failed,
                     me=[me for _, (me, _) in answered],
                     unverified=list({(u.scope, tuple(u.resources)): u for u in unverified}.values()))


def caller(scope: Scope) -> str:
    """The caller's owner identity in ``scope``, asked first: a scope where AWS will not say who the caller
    is cannot be listed (whose clusters would be whose?), and is reported as such."""
    endpoint = None if scope.endpoint_url == current_endpoint() else scope.endpoint_url
    return owner(scope.region, scope.aws_profile, endpoint)


@dataclass
class _Tagged:
    """What carries one cluster id's tags in a scope."""

    instances: list[dict[str, Any]] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)


def clusters_in(scope: Scope, backend: str) -> list[Discovered | Unverified]:
    """Every cluster with a live instance or a security group in ``scope``, built from what its proof
    ties to it; what carries its tags without the proof comes back apart, as unverified."""
    ec2 = scope.client("ec2", attempts=LIST_ATTEMPTS)
    tagged: dict[str, _Tagged] = {}
    for inst in instances.describe(ec2, states=instances.LIVE_STATES):
        if tag_value(inst, TAG_BACKEND) in (None, backend):  # not another backend's (ecs: container instances)
            tagged.setdefault(cluster_of(inst), _Tagged()).instances.append(inst)
    for group in shared(scope, "security groups", lambda: tagged_security_groups(ec2)):
        if tag_value(group, TAG_BACKEND) in (None, backend):
            tagged.setdefault(cluster_of(group), _Tagged()).groups.append(group)
    proofs = Proofs(scope, backend)
    found: list[Discovered | Unverified] = []
    for cluster_id, things in tagged.items():
        found += _verify(scope, backend, cluster_id, things, proofs)
    return found


OUR_TOKEN = re.compile(r"^(dam-[0-9a-f]{12})-[0-9a-f]{8}-(scheduler|worker)-\d+-(spot|on-demand)$")
OUR_GROUP = re.compile(r"^dask-aws-magic-[a-z0-9-]+-(dam-[0-9a-f]{12})$")


def cluster_of(resource: dict[str, Any]) -> str:
    """The cluster id a resource was made for, by what cannot change on it (the ClientToken an instance
    was launched with, a security group's name) when it has our form, else by its tag. So rewriting a
    resource's cluster-id tag does not move it to another cluster (its manifest still proves it)."""
    found = OUR_TOKEN.match(resource.get("ClientToken") or "") or OUR_GROUP.match(resource.get("GroupName") or "")
    return found.group(1) if found else (tag_value(resource, TAG_CLUSTER_ID) or "")


def _verify(scope: Scope, backend: str, cluster_id: str, things: _Tagged,
            proofs: Proofs) -> list[Discovered | Unverified]:
    """The cluster ``cluster_id`` as its proof shows it, and what carries its tags unproven."""
    record = proofs.record(cluster_id)
    known = EC2Resources.from_json(record.resources) if record is not None else None

    def by_record(resource: dict[str, Any]) -> bool:
        return known is not None and (resource.get("InstanceId") in known.instance_ids()
                                      or resource.get("GroupId") == known.security_group)

    manifest, why = None, ""
    doubtful = [r for r in things.instances + things.groups if not by_record(r)]
    if doubtful:
        manifest, why = proofs.covering(cluster_id, backend, lambda m: all(_proves(m, r) for r in doubtful),
                                        "resources it never launched (instances with another ClientToken, groups "
                                        "of another name)")
    proven = [r for r in things.instances + things.groups
              if by_record(r) or (manifest is not None and _proves(manifest, r))]
    unproven = [r for r in things.instances + things.groups if r not in proven]
    out: list[Discovered | Unverified] = []
    if proven:
        out.append(_cluster(scope, backend, cluster_id, proven, record, manifest))
    if unproven:
        first = unproven[0]
        out.append(Unverified(
            backend=backend, cluster_id=cluster_id, name=tag_value(first, TAG_CLUSTER) or "",
            owner=tag_value(first, TAG_OWNER) or "", scope=str(scope),
            resources=[r.get("InstanceId") or r["GroupId"] for r in unproven], reason=why,
            location={"region": scope.region, "aws_profile": scope.aws_profile, "endpoint_url": scope.endpoint_url}))
    return out


def _proves(manifest: Manifest, resource: dict[str, Any]) -> bool:
    if "InstanceId" in resource:
        return instance_role(manifest, resource) is not None
    return manifest.has_id("security-group", resource["GroupId"]) or manifest.has_name(
        "security-group", resource.get("GroupName"))


def instance_role(manifest: Manifest, instance: dict[str, Any]) -> str | None:
    """``scheduler`` or ``worker`` when the manifest proves ``instance`` one of its cluster's, else None:
    by the ClientToken it was launched with, or by its id as recorded after the launch."""
    role = manifest.token_role(instance.get("ClientToken"))
    if role in ("scheduler", "worker"):
        return role
    return next((r for r in ("scheduler", "worker") if manifest.has_id(r, instance["InstanceId"])), None)


def _cluster(scope: Scope, backend: str, cluster_id: str, proven: list[dict[str, Any]],
             record: ClusterRecord | None, manifest: Manifest | None) -> Discovered:
    """A cluster made of ``proven`` resources only; its name, owner and protocol from its proof."""
    known = EC2Resources.from_json(record.resources) if record is not None else None
    model = EC2Resources(region=scope.region, aws_profile=scope.aws_profile, endpoint_url=scope.endpoint_url)
    if manifest is not None:
        name, owner, model.protocol = manifest.cluster, manifest.owner, manifest.protocol
    else:
        assert record is not None and known is not None
        name, owner, model.protocol = record.name, record.owner, known.protocol
    item = Discovered(name=name, cluster_id=cluster_id, backend=backend, resources={}, running=False, owner=owner)
    for resource in proven:
        if "GroupId" in resource:
            model.security_group = resource["GroupId"]
            continue
        inst = resource
        launched = inst.get("LaunchTime")
        if launched is not None and (item.created_at is None or launched.timestamp() < item.created_at):
            item.created_at = launched.timestamp()
        is_scheduler = (known is not None and inst["InstanceId"] == known.scheduler) or (
            manifest is not None and instance_role(manifest, inst) == "scheduler")
        if not is_scheduler:
            model.add_workers([inst])
        elif inst["State"]["Name"] in ("pending", "running"):  # stopping or stopped: the cluster is dead
            model.scheduler, model.scheduler_ip = inst["InstanceId"], inst.get("PrivateIpAddress")
            item.running = True
            ip = inst.get("PublicIpAddress") or inst.get("PrivateIpAddress")
            if ip:
                item.scheduler_address, item.dashboard_link = endpoints(ip, model.protocol)
    item.resources = model.to_json()
    return item
