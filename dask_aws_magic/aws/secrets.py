"""A cluster's secrets in AWS Secrets Manager: the nodes' TLS material and environment, and the
client's identity for ``attach`` from another machine.

Secrets Manager rather than SSM Parameter Store: AWS's ReadOnlyAccess policy (and most scanners'
roles) allows ``ssm:GetParameter*``, which decrypts SecureStrings under the account's default key,
but not ``secretsmanager:GetSecretValue``. Names derive from the cluster id, so ``down`` finds them
even when the registry lost its record.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..core.errors import LaunchError
from .errors import error_code

PREFIX = "dask-aws-magic"
HOURLY_COST = 0.40 / 730  # USD per secret: 0.40 a month, prorated by the hour
KINDS = ("nodes", "client")


ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # fullmatch: `$` would take "A\n"


@dataclass(frozen=True)
class ClusterSecrets:
    """What ``create_cluster_secrets`` made: the two secrets' ARNs and the client's identity."""

    node_secret: str
    client_secret: str | None  # None without TLS
    client_identity: dict[str, str] | None  # {"ca", "cert", "key"}, None without TLS


def create_cluster_secrets(sm: Any, name: str, cluster_id: str, env: dict[str, str], tls: bool,
                           tags: list[dict[str, str]]) -> ClusterSecrets:
    """A new CA's certificates for cluster ``name`` (the CA forgotten here) and ``software.env``,
    stored as the nodes' secret and the client's."""
    from .tls import new_cluster_material

    for key in env:
        if not ENV_NAME.fullmatch(key):
            raise LaunchError(f"`software.env` has {key!r}, which is not an environment variable name: use "
                              "letters, digits and underscores, not starting with a digit.")
    material = new_cluster_material(name) if tls else None
    nodes = material.node_secret(env) if material else {"env": json.dumps(env)}
    node_arn = create_secret(sm, node_secret_name(cluster_id), nodes, tags)
    if material is None:
        return ClusterSecrets(node_arn, None, None)
    client_arn = create_secret(sm, client_secret_name(cluster_id), material.client_secret(), tags)
    return ClusterSecrets(node_arn, client_arn, material.client_secret())


def node_secret_name(cluster_id: str) -> str:
    """What the scheduler and workers read at boot (their instance or task role may read only this)."""
    return f"{PREFIX}/{cluster_id}/nodes"


def client_secret_name(cluster_id: str) -> str:
    """The client's identity: readable by whoever may read secrets in the account, never by the nodes."""
    return f"{PREFIX}/{cluster_id}/client"


def create_secret(sm: Any, name: str, payload: dict[str, str], tags: list[dict[str, str]],
                  description: str = "dask-aws-magic cluster material") -> str:
    """Store ``payload`` as a JSON secret; returns its ARN."""
    reply = sm.create_secret(Name=name, Description=description, SecretString=json.dumps(payload), Tags=tags)
    return str(reply["ARN"])


def read_secret(sm: Any, name: str) -> dict[str, str]:
    """The JSON payload of secret ``name`` (name or ARN)."""
    return dict(json.loads(sm.get_secret_value(SecretId=name)["SecretString"]))


def client_identity(sm: Any, cluster: str, cluster_id: str, client_secret: str | None) -> dict[str, str]:
    """The client's identity of a cluster whose record came from elsewhere (tags, another machine): read
    from its client secret with the caller's credentials, never from what the nodes were given."""
    from ..core.errors import AwsError
    from .session import aws

    name = client_secret or client_secret_name(cluster_id)
    try:
        with aws(f"reading the client identity of {cluster} (secret {name})"):
            return read_secret(sm, name)
    except AwsError as exc:
        raise AwsError(f"{exc} Connecting to {cluster} needs `secretsmanager:GetSecretValue` on {name}.") from None


def allow_roles(sm: Any, name: str, role_arns: list[str]) -> None:
    """Let ``role_arns`` (the roles of instance profiles the profile names) read secret ``name``."""
    policy = {"Version": "2012-10-17", "Statement": [{
        "Sid": "ClusterNodesRead", "Effect": "Allow", "Principal": {"AWS": role_arns},
        "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}
    sm.put_resource_policy(SecretId=name, ResourcePolicy=json.dumps(policy))


def delete_cluster_secrets(sm: Any, cluster_id: str) -> list[str]:
    """Delete the cluster's secrets at once (no recovery window: nothing stays billed or readable).
    Returns the names deleted."""
    import botocore.exceptions

    # Listed first (one call, a name prefix): a forced delete of a secret that does not exist succeeds.
    wanted = (node_secret_name(cluster_id), client_secret_name(cluster_id))
    pages = sm.get_paginator("list_secrets").paginate(Filters=[{"Key": "name", "Values": [f"{PREFIX}/{cluster_id}/"]}])
    existing = {entry["Name"] for page in pages for entry in page.get("SecretList", []) if not entry.get("DeletedDate")}
    deleted = []
    for name in (name for name in wanted if name in existing):
        try:
            sm.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
            continue
        deleted.append(name)
    return deleted
