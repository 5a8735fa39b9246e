"""Finding EC2 clusters from their tags alone (a registry from elsewhere, or none at all), in every
scope a cluster of this machine may live in.

Where to look: the region of every profile and of every record, each with the credentials profile
it names, plus the default credentials' own region. Not every region the account has enabled:
that sweep is a DescribeRegions and two calls in each of ~17-30 regions, on every ``list`` and
every ``up`` (which looks for a namesake), where every cluster this machine can launch is in a
region one of its profiles or records names. A record stays until ``down`` succeeds, so a
cluster launched here is found even after its profile changed region.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from ...aws.identity import owner
from ...aws.scopes import LIST_ATTEMPTS, Scope, current_endpoint, search, shared
from ...aws.session import default_region
from ...aws.tags import (
    TAG_BACKEND,
    TAG_CLUSTER,
    TAG_CLUSTER_ID,
    TAG_OWNER,
    TAG_PROTOCOL,
    TAG_ROLE,
    tag_value,
    tagged_security_groups,
)
from ...core.errors import DaskAwsMagicError
from ..base import Discovered, Discovery
from ..dask_commands import endpoints
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
    answered, failed = search(scopes, lambda scope: (caller(scope), clusters_in(scope, backend)),
                              f"{backend} clusters")
    found: dict[str, Discovered] = {}
    for _, (_, clusters) in answered:
        for item in clusters:
            found.setdefault(item.cluster_id, item)  # the same account seen with two credentials profiles
    return Discovery(list(found.values()), searched=[str(scope) for scope, _ in answered], failed=failed,
                     me=[me for _, (me, _) in answered])


def caller(scope: Scope) -> str:
    """The caller's owner identity in ``scope``, asked first: a scope where AWS will not say who the caller
    is cannot be listed (whose clusters would be whose?), and is reported as such."""
    endpoint = None if scope.endpoint_url == current_endpoint() else scope.endpoint_url
    return owner(scope.region, scope.aws_profile, endpoint)


def clusters_in(scope: Scope, backend: str) -> list[Discovered]:
    """Every cluster with a live instance or a security group in ``scope``."""
    ec2 = scope.client("ec2", attempts=LIST_ATTEMPTS)
    found: dict[str, tuple[Discovered, EC2Resources]] = {}

    def entry(resource: dict[str, Any], launched: Any = None) -> tuple[Discovered, EC2Resources]:
        cluster_id = tag_value(resource, TAG_CLUSTER_ID) or ""
        if cluster_id not in found:
            item = Discovered(name=tag_value(resource, TAG_CLUSTER) or cluster_id, cluster_id=cluster_id,
                              backend=backend, resources={}, running=False,
                              owner=tag_value(resource, TAG_OWNER) or "",
                              created_at=launched.timestamp() if launched else None)
            found[cluster_id] = (item, EC2Resources(region=scope.region, aws_profile=scope.aws_profile,
                                                    endpoint_url=scope.endpoint_url))
        return found[cluster_id]

    for inst in instances.describe(ec2, states=instances.LIVE_STATES):
        if tag_value(inst, TAG_BACKEND) not in (None, backend):
            continue  # another backend's (ecs: its container instances)
        item, model = entry(inst, inst.get("LaunchTime"))
        if tag_value(inst, TAG_ROLE) != "scheduler":
            model.add_workers([inst])
        elif inst["State"]["Name"] in ("pending", "running"):  # stopping or stopped: the cluster is dead
            model.scheduler, model.scheduler_ip = inst["InstanceId"], inst.get("PrivateIpAddress")
            item.running = True
            ip = inst.get("PublicIpAddress") or inst.get("PrivateIpAddress")
            model.protocol = "tcp" if tag_value(inst, TAG_PROTOCOL) == "tcp" else "tls"
            if ip:
                item.scheduler_address, item.dashboard_link = endpoints(ip, model.protocol)
    for group in shared(scope, "security groups", lambda: tagged_security_groups(ec2)):
        if tag_value(group, TAG_BACKEND) in (None, backend):
            entry(group)[1].security_group = group["GroupId"]
    for item, model in found.values():
        item.resources = model.to_json()
    return [item for item, _ in found.values()]
