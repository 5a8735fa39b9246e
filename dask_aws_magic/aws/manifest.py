"""A cluster's manifest: the proof that AWS resources belong to a cluster the caller made.

Tags are claims: anyone in the account allowed ``ec2:CreateTags`` can write ours on anything. The
manifest is kept where only the cluster's owner can write: the cluster's client secret in Secrets
Manager (made for every cluster, TLS or not), whose resource policy denies every write to any other
identity. ``up`` writes it **before** it creates anything, naming the immutable identifiers each
resource will carry: the deterministic names of the security group, secrets, roles, log group, ECS
cluster and task-definition families, the auto scaling group and launch template, the EFS creation
token, and the base of every RunInstances ``ClientToken`` (RunTask's ``startedBy`` is the cluster id).
A tag can be put on anything; none of these can be changed on an existing resource. A killed ``up``
therefore never leaves a resource its own owner cannot prove.

Discovery checks every tagged resource against it (:func:`check`); what fails is *unverified*: shown
apart, with the reason, never acted on unless the user names it. Ownership is the manifest's owner,
never the owner tag.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from ..core.errors import AwsError
from .errors import error_code
from .secrets import IDENTITY_KEYS, client_secret_name

VERSION = 1
TOKEN_SUFFIX = re.compile(r"^-\d+-(spot|on-demand)$")  # what instances.run adds to a token base per attempt
MISSING = ("ResourceNotFoundException",)
REFUSED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation")
# Everything that changes the secret's value, its metadata or who may do so: the owner's alone.
# DeleteSecret stays open: an admin can still clean up (the cluster then proves nothing: it is left alone).
OWNER_ONLY = ["secretsmanager:PutSecretValue", "secretsmanager:UpdateSecret", "secretsmanager:UpdateSecretVersionStage",
              "secretsmanager:PutResourcePolicy", "secretsmanager:DeleteResourcePolicy",
              "secretsmanager:RestoreSecret", "secretsmanager:RotateSecret", "secretsmanager:CancelRotateSecret",
              "secretsmanager:ReplicateSecretToRegions", "secretsmanager:TagResource",
              "secretsmanager:UntagResource"]


@dataclass
class Manifest:
    """What one cluster is made of, by identifiers nobody can change on an existing resource."""

    cluster: str
    cluster_id: str
    backend: str
    owner: str
    protocol: str = "tls"  # or "tcp": how its scheduler is reached (the protocol tag is only a claim)
    names: dict[str, list[str]] = field(default_factory=dict)  # kind -> deterministic names
    tokens: list[str] = field(default_factory=list)  # RunInstances ClientToken bases, "<id>-<nonce>-<role>"
    ids: dict[str, list[str]] = field(default_factory=dict)  # kind -> ids AWS returned ("scheduler": [...])

    def expect(self, kind: str, *names: str) -> None:
        """Record names that resources of ``kind`` will be created with."""
        known = self.names.setdefault(kind, [])
        known += [n for n in names if n not in known]

    def add_ids(self, kind: str, ids: list[str]) -> None:
        known = self.ids.setdefault(kind, [])
        known += [i for i in ids if i not in known]

    def has_name(self, kind: str, name: str | None) -> bool:
        return bool(name) and name in self.names.get(kind, [])

    def has_id(self, kind: str, resource_id: str | None) -> bool:
        return bool(resource_id) and resource_id in self.ids.get(kind, [])

    def token_role(self, token: str | None) -> str | None:
        """The role a RunInstances ``ClientToken`` was made for, if it is one of this cluster's; else None."""
        for base in self.tokens:
            if token and token.startswith(base) and TOKEN_SUFFIX.match(token[len(base):]):
                return base.rsplit("-", 1)[-1]
        return None

    def to_json(self) -> dict[str, Any]:
        return {"version": VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        """The manifest in ``data``; ValueError when it is not one."""
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise ValueError("not a manifest of this version")
        values = {name: data.get(name) for name in ("cluster", "cluster_id", "backend", "owner", "protocol")}
        if not all(isinstance(v, str) for v in values.values()) or values["protocol"] not in ("tls", "tcp"):
            raise ValueError("a field is missing")
        names, tokens, ids = data.get("names") or {}, data.get("tokens") or [], data.get("ids") or {}
        if not (_str_lists(names) and _str_lists(ids) and isinstance(tokens, list)
                and all(isinstance(t, str) for t in tokens)):
            raise ValueError("malformed lists")
        return cls(**values, names={k: list(v) for k, v in names.items()}, tokens=list(tokens),
                   ids={k: list(v) for k, v in ids.items()})


def _str_lists(mapping: Any) -> bool:
    return isinstance(mapping, dict) and all(
        isinstance(v, list) and all(isinstance(x, str) for x in v) for v in mapping.values())


def secret_name(cluster_id: str) -> str:
    """The manifest lives in the cluster's client secret."""
    return client_secret_name(cluster_id)


def payload(manifest: Manifest, identity: dict[str, str] | None) -> str:
    return json.dumps({**(identity or {}), "manifest": manifest.to_json()})


def owner_principals(owner: str) -> list[str]:
    """The ``aws:PrincipalArn`` values the owner's requests carry (an assumed role's is its role's,
    under any path); empty when ``owner`` is no ARN an IAM policy can name."""
    found = re.match(r"^arn:([\w-]+):(iam|sts)::(\d{12}):(user|role|assumed-role|root)(/.+)?$", owner or "")
    if not found:
        return []
    partition, _, account, kind, rest = found.groups()
    if kind == "assumed-role":
        role = (rest or "/").split("/")[1]
        return [f"arn:{partition}:iam::{account}:role/{role}", f"arn:{partition}:iam::{account}:role/*/{role}"]
    if kind == "root":
        return [f"arn:{partition}:iam::{account}:root"]
    return [owner]


def policy(owner: str) -> dict[str, Any] | None:
    """The secret's resource policy: every write denied to anyone but the owner (None if ``owner``
    cannot be named in a policy)."""
    principals = owner_principals(owner)
    if not principals:
        return None
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "OnlyItsOwnerWritesTheManifest", "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": OWNER_ONLY,
        "Resource": "*", "Condition": {"ArnNotLike": {"aws:PrincipalArn": principals}}}]}


def create(sm: Any, manifest: Manifest, identity: dict[str, str] | None, tags: list[dict[str, str]]) -> str:
    """Store ``manifest`` (and the client's identity) as the cluster's client secret, writable by its
    owner alone; its ARN."""
    arn = str(sm.create_secret(Name=secret_name(manifest.cluster_id), SecretString=payload(manifest, identity),
                               Description="dask-aws-magic cluster manifest and client identity",
                               Tags=tags)["ARN"])
    rules = policy(manifest.owner)
    if rules is not None:
        sm.put_resource_policy(SecretId=arn, ResourcePolicy=json.dumps(rules), BlockPublicPolicy=True)
    return arn


@dataclass
class Stored:
    """What a cluster's client secret holds: its manifest (None: made by an older version) and the
    client's TLS identity (None without TLS)."""

    manifest: Manifest | None
    identity: dict[str, str] | None


class Unproven(AwsError):
    """The manifest could not be read: nothing of the cluster can be proven."""


def read(sm: Any, cluster_id: str) -> Stored:
    """The manifest of ``cluster_id``; :class:`Unproven` saying why when there is none to read."""
    import botocore.exceptions

    name = secret_name(cluster_id)
    try:
        text = sm.get_secret_value(SecretId=name)["SecretString"]
    except botocore.exceptions.ClientError as exc:
        code = error_code(exc) or "Unknown"
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in MISSING:
            raise Unproven(f"it has no manifest (the secret {name} does not exist)") from None
        if code in REFUSED or status == 403:
            raise Unproven(f"its manifest {name} cannot be read with your credentials ({code})") from None
        raise
    try:
        data = json.loads(text)
    except ValueError:
        raise Unproven(f"its manifest {name} is not JSON") from None
    if not isinstance(data, dict):
        raise Unproven(f"its manifest {name} is not a JSON object")
    identity = {k: data[k] for k in IDENTITY_KEYS if isinstance(data.get(k), str)} or None
    if "manifest" not in data:
        return Stored(None, identity)
    try:
        found = Manifest.from_json(data["manifest"])
    except ValueError as exc:
        raise Unproven(f"its manifest {name} is malformed ({exc})") from None
    if found.cluster_id != cluster_id:
        raise Unproven(f"its manifest {name} names another cluster ({found.cluster_id})")
    return Stored(found, identity)


def save(sm: Any, manifest: Manifest, identity: dict[str, str] | None) -> None:
    """Write ``manifest`` back (the owner's credentials: the resource policy refuses anyone else)."""
    sm.put_secret_value(SecretId=secret_name(manifest.cluster_id), SecretString=payload(manifest, identity))
