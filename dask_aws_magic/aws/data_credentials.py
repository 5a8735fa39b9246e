"""Short-lived credentials for a cluster's nodes to use the caller's data, derived from the caller's own
session with STS.

- an IAM user: ``sts:GetFederationToken`` with a session policy (the ``data.s3`` scope, or allow-all:
  a federation token without one may do nothing);
- an assumed role (SSO included): with ``data.s3``, ``sts:AssumeRole`` of the same role with the session
  policy (role chaining, an hour at most); without, the session's own temporary credentials;
- a federated user: its own temporary credentials (they cannot be narrowed further);
- the account's root user: refused.

The lifetime is always the ``Expiration`` AWS returned, never the duration asked for.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..core.errors import AwsError
from .errors import error_code

CHAINED_LIMIT = 3600.0  # seconds: AWS's limit for a role assumed with a role session's credentials
POLICY_LIMIT = 2048  # characters of a session policy passed inline
WRITE_ACTIONS = ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
REFUSED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation")
Location = tuple[str, str, bool]  # bucket, prefix ("" for the whole bucket), write


class ForwardingImpossible(AwsError):
    """The caller's credentials cannot be forwarded to the nodes as the profile asks."""


@dataclass(frozen=True)
class Derived:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    expiration: float  # epoch seconds, as AWS returned it
    description: str


def identity_kind(arn: str) -> str:
    """"user", "assumed-role", "federated-user", "root" or "unknown" for an identity's ARN (a role's own
    ARN, which is how a role session's owner is written, is an assumed role's)."""
    resource = arn.split(":", 5)[5] if arn.count(":") >= 5 else ""
    if resource == "root":
        return "root"
    kind = resource.split("/", 1)[0]
    if kind == "role" and ":iam::" in arn:
        return "assumed-role"
    return kind if kind in ("user", "assumed-role", "federated-user") else "unknown"


def partition(arn: str) -> str:
    return arn.split(":")[1] if arn.startswith("arn:") and arn.count(":") >= 2 else "aws"


def session_policy(locations: list[Location] | None, arn_partition: str = "aws") -> dict[str, Any]:
    """The session policy of the nodes' credentials: objects under each prefix (Get; Put, Delete and
    multipart uploads where writable), ListBucket restricted to the prefixes, GetBucketLocation.
    Allow-all when ``locations`` is None (the identity's own permissions then bound them)."""
    if locations is None:
        return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    s3 = f"arn:{arn_partition}:s3:::"
    read: list[str] = []
    write: list[str] = []
    listing: dict[str, list[str] | None] = {}  # bucket -> prefixes it may list (None: all)
    for bucket, prefix, writable in locations:
        objects = [f"{s3}{bucket}/*"] if not prefix else [f"{s3}{bucket}/{prefix}", f"{s3}{bucket}/{prefix}/*"]
        read += objects
        if writable:
            write += objects
        if not prefix:
            listing[bucket] = None
        elif listing.get(bucket, []) is not None:
            listing[bucket] = [*(listing.get(bucket) or []), f"{prefix}/*"]
    statements: list[dict[str, Any]] = [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": _unique(read)}]
    if write:
        statements.append({"Effect": "Allow", "Action": WRITE_ACTIONS, "Resource": _unique(write)})
    for bucket, prefixes in listing.items():
        statement: dict[str, Any] = {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"{s3}{bucket}"}
        if prefixes is not None:
            statement["Condition"] = {"StringLike": {"s3:prefix": _unique(prefixes)}}
        statements.append(statement)
    statements.append({"Effect": "Allow", "Action": "s3:GetBucketLocation",
                       "Resource": [f"{s3}{bucket}" for bucket in listing]})
    return {"Version": "2012-10-17", "Statement": statements}


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def packed(policy: dict[str, Any]) -> str:
    """The policy as sent: compact JSON, refused here when above AWS's limit (naming the field)."""
    text = json.dumps(policy, separators=(",", ":"))
    if len(text) > POLICY_LIMIT:
        raise ForwardingImpossible(
            f"`data.s3` names more locations than a session policy can hold ({len(text)} of {POLICY_LIMIT} "
            "characters). Name fewer, broader prefixes (a common parent folder, or the whole bucket as "
            "s3://bucket).")
    return text


def _epoch(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def _alternatives(*extra: str) -> str:
    options = [*extra, "`data.credentials: role` with `instance.iam_instance_profile` (ec2) or `ecs.task_role` "
               "(ecs, fargate) naming a role that may read your data", "`data.credentials: none`"]
    return "; or ".join(options)


def check_forwardable(caller: str, scoped: bool) -> None:
    """:class:`ForwardingImpossible` when ``caller``'s credentials may not (root) or cannot (a federated
    user, with ``data.s3``) be forwarded; known from the ARN alone, so before anything is created."""
    kind = identity_kind(caller)
    if kind == "root":
        raise ForwardingImpossible(
            f"Your AWS credentials are the account's root user ({caller}): dask-aws-magic will not hand root "
            "credentials, even short-lived ones, to a cluster's machines (whoever controls one could do anything "
            f"in the account). Use an IAM user or role (with `aws_profile`); {_alternatives()}.")
    if kind == "federated-user" and scoped:
        raise ForwardingImpossible(
            f"Your AWS identity is a federated user ({caller}), whose credentials cannot be narrowed "
            f"further: `data.s3` cannot be applied. Remove `data.s3` (the nodes then get your federated "
            f"session's own credentials); {_alternatives()}.")


def derive(*, sts: Any, session: Any, iam: Any, caller: str, cluster_id: str, locations: list[Location] | None,
           lifetime: float) -> Derived:
    """Credentials for the nodes of ``cluster_id`` from the session behind ``caller`` (its ARN). ``sts`` and
    ``iam`` are that session's clients. :class:`ForwardingImpossible` (naming the alternatives) when they
    cannot be made as asked."""
    check_forwardable(caller, scoped=locations is not None)
    kind = identity_kind(caller)
    scope = "" if locations is None else ", cut by a session policy to `data.s3`"
    if kind == "federated-user":
        return _own(session, f"your federated session {caller}'s own credentials")
    if kind == "assumed-role":
        if locations is None:
            return _own(session, f"your role session {caller}'s own credentials")
        return _chain(sts, iam, caller, cluster_id, locations, lifetime)
    # An IAM user (or an identity AWS describes otherwise, which STS then judges).
    try:
        answer = sts.get_federation_token(Name=f"dask-aws-magic-{cluster_id[-12:]}"[:32],
                                          Policy=packed(session_policy(locations, partition(caller))),
                                          DurationSeconds=int(max(900.0, lifetime)))
    except Exception as exc:
        if error_code(exc) in REFUSED:
            raise ForwardingImpossible(
                f"AWS refused sts:GetFederationToken to {caller} ({_message(exc)}): it makes the short-lived "
                f"credentials the cluster's nodes use for your data. Ask for `sts:GetFederationToken` to be "
                f"granted; {_alternatives()}.") from None
        raise
    return _derived(answer["Credentials"], f"a federation token of your identity {caller}{scope}")


def _chain(sts: Any, iam: Any, caller: str, cluster_id: str, locations: list[Location], lifetime: float) -> Derived:
    """The caller's role assumed again, with the session policy (role chaining)."""
    role = role_arn(iam, caller)
    try:
        answer = sts.assume_role(RoleArn=role, RoleSessionName=f"dask-aws-magic-{cluster_id}"[:64],
                                 Policy=packed(session_policy(locations, partition(caller))),
                                 DurationSeconds=int(min(max(900.0, lifetime), CHAINED_LIMIT)))
    except Exception as exc:
        if error_code(exc) in REFUSED:
            raise ForwardingImpossible(
                f"Your AWS identity is a session of the role {role}, and `data.s3` asks for credentials limited "
                f"to those locations: that takes the role assuming itself (sts:AssumeRole with a session policy), "
                f"which AWS refused ({_message(exc)}). Remove `data.s3` (the nodes then get your role session's "
                f"own credentials); or let the role assume itself (add its own ARN to its trust policy); "
                f"{_alternatives()}.") from None
        raise
    return _derived(answer["Credentials"], f"a session of your role {role}, cut by a session policy to `data.s3`")


def role_arn(iam: Any, caller: str) -> str:
    """The ARN of the role behind an assumed-role session ARN, with its path (AssumeRole needs it):
    iam:GetRole when allowed, else AWS's usual paths (SSO roles live under /aws-reserved/...)."""
    account = caller.split(":")[4]
    name = caller.split(":", 5)[5].split("/")[1]
    try:
        return str(iam.get_role(RoleName=name)["Role"]["Arn"])
    except Exception as exc:
        if error_code(exc) not in (*REFUSED, "NoSuchEntity"):
            raise
    path = "aws-reserved/sso.amazonaws.com/" if name.startswith("AWSReservedSSO_") else ""
    return f"arn:{partition(caller)}:iam::{account}:role/{path}{name}"


def _own(session: Any, description: str) -> Derived:
    """The session's own temporary credentials, with the expiry botocore learnt from AWS."""
    credentials = session.get_credentials()
    if credentials is None:
        raise ForwardingImpossible("No AWS credentials were found to forward to the cluster's nodes.")
    frozen = credentials.get_frozen_credentials()
    expiry = getattr(credentials, "_expiry_time", None)
    if not frozen.token:
        raise ForwardingImpossible("Your AWS session has no session token to forward.")
    # Temporary credentials given without their expiry (variables set by another tool): renewed, and so
    # re-read, every 15 minutes.
    expiration = _epoch(expiry) if expiry is not None else time.time() + 900.0
    return Derived(frozen.access_key, frozen.secret_key, frozen.token, expiration, description)


def _derived(credentials: dict[str, Any], description: str) -> Derived:
    return Derived(credentials["AccessKeyId"], credentials["SecretAccessKey"], credentials["SessionToken"],
                   _epoch(credentials["Expiration"]), description)


def _message(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Message") or exc)
