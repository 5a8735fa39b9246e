"""Who the caller is on AWS: the owner tag of what it creates, and the clusters it may call its own."""

from __future__ import annotations

import threading
from typing import Any

from .session import aws, client

_known: dict[tuple[Any, ...], str] = {}
_lock = threading.Lock()


def caller_arn(region: str, aws_profile: str | None = None, endpoint_url: str | None = None) -> str:
    """The ARN of the identity behind ``aws_profile`` (one STS call, then remembered for the process).
    Not a secret: AWS shows it to anyone the account lets describe the tagged resources."""
    sts = client("sts", region, aws_profile, endpoint_url=endpoint_url)
    key = (id(sts), aws_profile, endpoint_url)
    with _lock:
        if key in _known:
            return _known[key]
    with aws("asking AWS who you are (sts:GetCallerIdentity)"):
        arn = sts.get_caller_identity()["Arn"]
    with _lock:
        _known[key] = arn
    return arn
