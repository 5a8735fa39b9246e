"""A cluster's secrets in AWS Secrets Manager: the nodes' TLS material and environment (on EC2 one
secret per role, so a worker cannot read the scheduler's key), and the client secret: the cluster's
manifest (:mod:`.manifest`) and the client's identity for ``attach`` from another machine.

Secrets Manager rather than SSM Parameter Store: AWS's ReadOnlyAccess policy (and most scanners'
roles) allows ``ssm:GetParameter*``, which decrypts SecureStrings under the account's default key,
but not ``secretsmanager:GetSecretValue``. Names derive from the cluster id, so ``down`` finds them
even when the registry lost its record.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from ..core.errors import LaunchError
from .errors import error_code

if TYPE_CHECKING:
    from .tls import ClusterMaterial

PREFIX = "dask-aws-magic"
HOURLY_COST = 0.40 / 730  # USD per secret: 0.40 a month, prorated by the hour
NODE_ROLES = ("scheduler", "worker")
IDENTITY_KEYS = ("ca", "cert", "key")  # the client's TLS identity, beside the manifest in the client secret


ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # fullmatch: `$` would take "A\n"


def new_material(name: str, env: dict[str, str], tls: bool) -> ClusterMaterial | None:
    """A new CA's certificates for cluster ``name`` (the CA forgotten here), None without TLS; ``env``
    (``software.env``) checked first."""
    from .tls import new_cluster_material

    for key in env:
        if not ENV_NAME.fullmatch(key):
            raise LaunchError(f"`software.env` has {key!r}, which is not an environment variable name: use "
                              "letters, digits and underscores, not starting with a digit.")
    return new_cluster_material(name) if tls else None


def node_secret_names(cluster_id: str, per_role: bool) -> dict[str, str]:
    """Who reads which node secret: one per role (each role reads its own identity only), or one for
    every role ("nodes": ECS hands each container its own role's keys out of it)."""
    if per_role:
        return {role: node_secret_name(cluster_id, role) for role in NODE_ROLES}
    return {"nodes": node_secret_name(cluster_id)}


def create_node_secrets(sm: Any, cluster_id: str, material: ClusterMaterial | None, env: dict[str, str],
                        per_role: bool, tags: list[dict[str, str]], files: dict[str, str] | None = None,
                        ) -> dict[str, str]:
    """The nodes' secrets (their TLS identities and ``software.env``); reader -> ARN. ``files`` (name ->
    text) are what the nodes write next to their TLS files at boot: scripts too large for user-data's 16 KB."""
    made = {}
    for reader, name in node_secret_names(cluster_id, per_role).items():
        roles = NODE_ROLES if reader == "nodes" else (reader,)
        payload = material.node_secret(env, roles) if material else {"env": json.dumps(env)}
        if files:
            payload["files"] = json.dumps(files)
        made[reader] = create_secret(sm, name, payload, tags)
    return made


def node_secret_name(cluster_id: str, role: str | None = None) -> str:
    """What the scheduler and workers read at boot (their instance or task role may read only theirs)."""
    return f"{PREFIX}/{cluster_id}/nodes" + (f"-{role}" if role else "")


def client_secret_name(cluster_id: str) -> str:
    """The cluster's manifest and the client's identity: written by the owner alone, never read by the nodes."""
    return f"{PREFIX}/{cluster_id}/client"


def secret_names(cluster_id: str) -> list[str]:
    """Every secret a cluster may have, the manifest last (deleted last: it proves the rest)."""
    return [node_secret_name(cluster_id, role) for role in NODE_ROLES] + [node_secret_name(cluster_id),
                                                                          client_secret_name(cluster_id)]


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
            stored = read_secret(sm, name)
    except AwsError as exc:
        raise AwsError(f"{exc} Connecting to {cluster} needs `secretsmanager:GetSecretValue` on {name}.") from None
    if not all(isinstance(stored.get(k), str) for k in IDENTITY_KEYS):
        raise AwsError(f"The secret {name} holds no client identity for {cluster}: it was made without TLS.")
    return {k: stored[k] for k in IDENTITY_KEYS}


def allow_roles(sm: Any, name: str, role_arns: list[str]) -> None:
    """Let ``role_arns`` (the roles of instance profiles the profile names) read secret ``name``."""
    policy = {"Version": "2012-10-17", "Statement": [{
        "Sid": "ClusterNodesRead", "Effect": "Allow", "Principal": {"AWS": role_arns},
        "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}
    sm.put_resource_policy(SecretId=name, ResourcePolicy=json.dumps(policy))


def delete_cluster_secrets(sm: Any, cluster_id: str, names: list[str] | None = None) -> list[str]:
    """Delete the cluster's secrets (``names``, by default every name it may have) at once, no recovery
    window: nothing stays billed or readable. The manifest goes last. Returns the names deleted."""
    import botocore.exceptions

    manifest = client_secret_name(cluster_id)
    wanted = [n for n in (names or secret_names(cluster_id)) if n != manifest] + [manifest]
    # Listed first (one call, a name prefix): a forced delete of a secret that does not exist succeeds.
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
