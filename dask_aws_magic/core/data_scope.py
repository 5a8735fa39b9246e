"""The profile's ``data`` section: which identity a cluster's nodes act with on the user's data, and
where it may reach.

``data.credentials``: ``forward`` (default on AWS: short-lived credentials derived from the caller's
own session, handed to the nodes in memory), ``role`` (the instance profile or task role the
profile names) or ``none``. ``data.s3``: S3 locations, ``s3://bucket/prefix`` (read) or
``{url: s3://bucket/prefix, write: true}``, to which forwarded credentials are limited.
``data.lifetime``: how long each set of forwarded credentials lives.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import ProfileError
from .units import parse_duration

MODES = ("forward", "role", "none")
DEFAULT_LIFETIME = 3600.0  # seconds each set of forwarded credentials lives (renewed at half)
LIFETIME_RANGE = (900.0, 43200.0)  # STS's shortest session; half a day at most
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# IAM reads `*`, `?` and `${...}` in a resource ARN as wildcards and variables: a prefix holding them
# would reach further than written.
UNSAFE_PREFIX = re.compile(r"[*?$\x00-\x1f]")


@dataclass(frozen=True)
class S3Location:
    """One ``data.s3`` entry: a bucket, a key prefix ("" for the whole bucket), and whether the nodes
    may write there."""

    bucket: str
    prefix: str
    write: bool = False

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def describe(self) -> str:
        return f"{self.url} ({'read-write' if self.write else 'read'})"


def parse_location(entry: Any, field: str, source: str) -> S3Location:
    """The location an entry of ``data.s3`` names; :class:`ProfileError` naming ``field`` if it is not one."""
    url, write = (entry.get("url"), bool(entry.get("write"))) if isinstance(entry, dict) else (entry, False)
    example = "s3://my-bucket/some/prefix, or {url: s3://my-bucket/out, write: true}"
    if not isinstance(url, str) or not url.startswith("s3://"):
        raise ProfileError(f"In {source}, `{field}` is {url!r}, which is not an S3 URL. Write an S3 location the "
                           f"nodes may use, e.g. {example}.")
    bucket, _, prefix = url[len("s3://"):].partition("/")
    prefix = prefix.strip("/")
    if not BUCKET.match(bucket) or ".." in bucket:
        raise ProfileError(f"In {source}, `{field}` is {url!r}: {bucket!r} is not an S3 bucket name (3-63 lowercase "
                           f"letters, digits, dots and dashes). Write it as s3://BUCKET/PREFIX, e.g. {example}.")
    if UNSAFE_PREFIX.search(prefix) or "//" in prefix:
        raise ProfileError(f"In {source}, `{field}` is {url!r}: the prefix may not hold `*`, `?`, `$`, `//` or "
                           "control characters (IAM would read them as wildcards and reach further than written). "
                           "Name the folder itself, e.g. s3://my-bucket/raw/2024.")
    return S3Location(bucket, prefix, write)


def locations(data: dict[str, Any], source: str = "the profile") -> list[S3Location] | None:
    """The ``data.s3`` locations of a profile's data, None when unscoped (no ``data.s3``)."""
    entries = (data.get("data") or {}).get("s3")
    if entries is None:
        return None
    return [parse_location(entry, f"data.s3[{i}]", source) for i, entry in enumerate(entries)]


def mode(data: dict[str, Any]) -> str:
    """``data.credentials``: by default ``forward``, or ``none`` without TLS (credentials travel only over
    the cluster's TLS connection)."""
    default = "none" if (data.get("network") or {}).get("tls") is False else "forward"
    return str((data.get("data") or {}).get("credentials", default))


def check(data: dict[str, Any], source: str) -> None:
    """What the schema cannot say about ``data``: the S3 URLs, and the role that ``role`` needs."""
    section = data.get("data") or {}
    found = locations(data, source)
    if found is not None and not found:
        raise ProfileError(f"In {source}, `data.s3` is an empty list, which would let the nodes read nothing. Name "
                           "the locations (e.g. [s3://my-bucket/input]) or leave the field out to forward your "
                           "whole identity.")
    chosen = mode(data)
    backend = data.get("backend", "local")
    if chosen == "forward" and backend != "local" and (data.get("network") or {}).get("tls") is False:
        raise ProfileError(f"In {source}, `data.credentials: forward` hands your AWS credentials to the nodes over "
                           "the cluster's TLS connection, but `network.tls` is false: they would cross the network "
                           "in clear. Turn TLS back on, or use `data.credentials: role` or `none`.")
    if chosen == "role" and backend == "ec2":
        missing = [role for role in ("scheduler", "worker")
                   if not (data.get(role) or {}).get("iam_instance_profile")
                   and not (data.get("instance") or {}).get("iam_instance_profile")]
        if missing:
            raise ProfileError(f"In {source}, `data.credentials: role` makes the nodes act as their instance "
                               f"profile's role, but the {' and '.join(missing)} instances have none. Set "
                               "`instance.iam_instance_profile` to an instance profile whose role may read your "
                               "data, or use `data.credentials: forward` (your own identity, short-lived).")
    if chosen == "role" and backend in ("ecs", "fargate") and not (data.get("ecs") or {}).get("task_role"):
        raise ProfileError(f"In {source}, `data.credentials: role` makes the tasks act as their task role, but "
                           "`ecs.task_role` is not set. Name a role that ECS tasks may assume and that may read your "
                           "data, or use `data.credentials: forward` (your own identity, short-lived).")
    lifetime = section.get("lifetime")
    if lifetime is not None:

        seconds = parse_duration(lifetime)
        if not LIFETIME_RANGE[0] <= seconds <= LIFETIME_RANGE[1]:
            raise ProfileError(f"In {source}, `data.lifetime` is {lifetime!r}: forwarded credentials live between "
                               "15m and 12h (AWS's shortest session is 15 minutes). Pick a value in that range, "
                               "e.g. 1h.")


def lifetime(data: dict[str, Any]) -> float:
    """Seconds each set of forwarded credentials is asked to live (AWS may give less)."""

    value = (data.get("data") or {}).get("lifetime")
    return parse_duration(value) if value is not None else DEFAULT_LIFETIME


def describe(found: list[S3Location] | None) -> str:
    """The scope in words: "limited to s3://a/b (read) and s3://a/out (read-write)"."""
    if found is None:
        return "with all of your permissions (no `data.s3` limits them)"
    items = [loc.describe() for loc in found]
    return "limited to " + (", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else items[0])
