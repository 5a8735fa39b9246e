"""Cluster names and ids.

A name must fit an AWS tag value, a security-group name, a file name and a DNS label, so it
is kept to lowercase letters, digits and dashes.
"""

from __future__ import annotations

import re
import secrets

from .errors import InvalidName

NAME_PATTERN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?")  # always fullmatch: `$` would take "zz\n"
MAX_NAME = 40


def check_name(name: str, what: str = "cluster name") -> str:
    """Return ``name`` if valid, else raise :class:`InvalidName` saying how to fix it."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        suggestion = suggest_name(name if isinstance(name, str) else str(name))
        hint = f" For example `{suggestion}`." if suggestion else ""
        raise InvalidName(
            f"The {what} {name!r} cannot be used: it becomes an AWS tag, a security group name and "
            f"a file name, so it must be 1-{MAX_NAME} characters of lowercase letters, digits and "
            f"dashes, starting and ending with a letter or digit.{hint} "
            f"Pick another name with `-n NAME`."
        )
    return name


def suggest_name(raw: str) -> str:
    """A valid name close to ``raw`` (empty when nothing usable is left)."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")[:MAX_NAME].strip("-")
    return cleaned if NAME_PATTERN.fullmatch(cleaned or "") else ""


CLUSTER_ID_PATTERN = re.compile(r"dam-[0-9a-f]{12}")


def is_cluster_id(value: object) -> bool:
    """True for an id this tool makes (ids read from tags are untrusted until this says so)."""
    return isinstance(value, str) and bool(CLUSTER_ID_PATTERN.fullmatch(value))


def new_cluster_id() -> str:
    """A short random id that tells apart two clusters that had the same name."""
    return "dam-" + secrets.token_hex(6)


MAX_OWNER = 256  # an AWS tag value's limit


def is_owner(value: object) -> bool:
    """True for an owner this tool could have tagged (``local:USER``, an AWS ARN, or none): printable
    text only, so an owner read from a tag can never fake lines in what ``list`` prints."""
    return isinstance(value, str) and len(value) <= MAX_OWNER and value.isprintable()


_ROLE = re.compile(r"arn:(?P<partition>[^:]+):iam::(?P<account>\d+):role/(?:.*/)?(?P<name>[^/]+)")
_ROLE_SESSION = re.compile(r"arn:(?P<partition>[^:]+):sts::(?P<account>\d+):assumed-role/(?P<name>[^/]+)/.+")


def owner_key(owner: str) -> str:
    """What two owners are compared by. A role, however it is written (with its path or without, or as
    one of its sessions, the form older versions tagged), is ``arn:PARTITION:iam::ACCOUNT:role/NAME``:
    role names are unique in an account. Any other owner is itself."""
    found = _ROLE.fullmatch(owner) or _ROLE_SESSION.fullmatch(owner)
    return f"arn:{found['partition']}:iam::{found['account']}:role/{found['name']}" if found else owner


def same_owner(one: str, other: str) -> bool:
    return owner_key(one) == owner_key(other)
