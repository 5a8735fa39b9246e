"""The tags every AWS resource of a cluster carries, and finding resources by them.

Tags say where to look, so ``list`` and ``down`` work from AWS alone (the registry is a cache); they
prove nothing: anyone allowed to tag can write them. What a cluster is made of is what its manifest
proves (:mod:`.manifest`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TAG_CLUSTER = "dask-aws-magic:cluster"
TAG_CLUSTER_ID = "dask-aws-magic:cluster-id"
TAG_ROLE = "dask-aws-magic:role"
TAG_PROTOCOL = "dask-aws-magic:protocol"  # tls or tcp, so a cluster found by its tags can be reached
TAG_OWNER = "dask-aws-magic:owner"  # the ARN of the identity that started the cluster
TAG_BACKEND = "dask-aws-magic:backend"  # set by backends that share resource kinds (ecs, fargate: security groups)


def tag_list(cluster: str, cluster_id: str, role: str | None = None, protocol: str | None = None,
             extra: Mapping[str, str] | None = None, owner: str | None = None) -> list[dict[str, str]]:
    """The cluster's tags in AWS's ``[{"Key", "Value"}]`` form; the profile's ``extra`` tags
    cannot override ours. A ``role`` also names the resource ``dask-<cluster>-<role>``."""
    tags = {**(extra or {}), TAG_CLUSTER: cluster, TAG_CLUSTER_ID: cluster_id}
    if role:
        tags[TAG_ROLE] = role
        tags["Name"] = f"dask-{cluster}-{role}"
    if protocol:
        tags[TAG_PROTOCOL] = protocol
    if owner:
        tags[TAG_OWNER] = owner
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def tag_value(resource: Mapping[str, Any], key: str) -> str | None:
    """The value of tag ``key`` on an AWS resource description, or None."""
    return next((t["Value"] for t in resource.get("Tags") or [] if t["Key"] == key), None)


def cluster_filters(cluster_id: str | None = None) -> list[dict[str, Any]]:
    """EC2 ``Filters`` for the resources of one cluster, or of every cluster when ``cluster_id`` is None."""
    if cluster_id is None:
        return [{"Name": "tag-key", "Values": [TAG_CLUSTER_ID]}]
    return [{"Name": f"tag:{TAG_CLUSTER_ID}", "Values": [cluster_id]}]


def describe_all(client: Any, operation: str, expression: str, **kwargs: Any) -> list[dict[str, Any]]:
    """Every item of a paginated describe call, selected with a JMESPath ``expression``
    (e.g. ``"Reservations[].Instances[]"``)."""
    pages = client.get_paginator(operation).paginate(**kwargs)
    return [item for item in pages.search(expression) if item is not None]


def tagged_security_groups(ec2: Any, cluster_id: str | None = None) -> list[dict[str, Any]]:
    """The security groups of one cluster (or of every cluster)."""
    return describe_all(ec2, "describe_security_groups", "SecurityGroups[]", Filters=cluster_filters(cluster_id))
