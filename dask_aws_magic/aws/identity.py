"""Who the caller is on AWS: the owner tagged on what it creates, and the clusters it may call its own.

The owner is an identity that survives a new session. ``sts:GetCallerIdentity`` names the session
of an assumed role (``arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION``), and the session's name
changes with each one (boto3's ``botocore-session-<epoch>``, SSO's, an instance's id), so the owner
of an assumed role is its role, ``arn:aws:iam::ACCOUNT:role/PATH/NAME`` (``iam:GetRole`` gives the
path; without that permission the role's ARN without its path, which names the same role: role
names are unique in an account). An IAM user's owner is its user ARN; any other identity its ARN.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

from ..core.errors import AwsError
from .session import aws, client

ATTEMPTS = 2  # STS or IAM throttled or failing: one retry, then `list` says so (it waited minutes before)
FAILURE_MEMO = 5.0  # seconds a failure is given again without asking (every backend asks, in one survey)
ASSUMED_ROLE = re.compile(r"arn:(?P<partition>[^:]+):sts::(?P<account>\d+):assumed-role/(?P<role>[^/]+)/.+")

_known: dict[tuple[Any, ...], str] = {}
_failed: dict[tuple[Any, ...], tuple[float, AwsError]] = {}
_locks: dict[tuple[Any, ...], threading.Lock] = {}
_lock = threading.Lock()


def owner(region: str, aws_profile: str | None = None, endpoint_url: str | None = None) -> str:
    """The owner of what the credentials of ``aws_profile`` create: asked once, then remembered for the
    process. An :class:`AwsError` naming ``sts:GetCallerIdentity`` and AWS's reason when AWS will not
    say (after one retry). Not a secret: AWS shows it to anyone who may describe the tagged resources."""
    sts = client("sts", region, aws_profile, endpoint_url=endpoint_url, attempts=ATTEMPTS)
    key = (id(sts), aws_profile, endpoint_url)
    with _lock:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:  # threads asking at once wait for one answer
        if key in _known:
            return _known[key]
        at, error = _failed.get(key, (0.0, None))
        if error is not None and time.monotonic() - at < FAILURE_MEMO:
            raise error
        try:
            with aws("asking AWS who you are (sts:GetCallerIdentity), which decides whose clusters are yours"):
                arn = str(sts.get_caller_identity()["Arn"])
            found = _stable(arn, region, aws_profile, endpoint_url)
        except AwsError as exc:
            _failed[key] = (time.monotonic(), exc)
            raise
        _known[key] = found
        _failed.pop(key, None)
        return found


def _stable(arn: str, region: str, aws_profile: str | None, endpoint_url: str | None) -> str:
    """The identity of ``arn`` that outlives its session: an assumed role's role ARN."""
    session = ASSUMED_ROLE.fullmatch(arn)
    if session is None:
        return arn
    partition, account, role = session["partition"], session["account"], session["role"]
    import botocore.exceptions

    try:  # only for the path: a role's name alone is unique in its account
        iam = client("iam", region, aws_profile, endpoint_url=endpoint_url, attempts=ATTEMPTS)
        found = str(iam.get_role(RoleName=role)["Role"]["Arn"])
        if found.startswith(f"arn:{partition}:iam::{account}:role/") and found.endswith(f"/{role}"):
            return found
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
        pass  # not allowed iam:GetRole (or throttled): the ARN without the path names the same role
    return f"arn:{partition}:iam::{account}:role/{role}"
