"""The tasks' output, read from CloudWatch Logs (where the awslogs driver sends it)."""

from __future__ import annotations

from typing import Any

from ...aws.errors import error_code
from .model import task_id

TAIL = 200  # lines per task


def stream_name(role: str, arn: str) -> str:
    """The stream the awslogs driver writes for ``arn`` (prefix = role, container = "dask")."""
    return f"{role}/dask/{task_id(arn)}"


def tail(logs: Any, group: str, stream: str, lines: int = TAIL) -> list[str]:
    """The last ``lines`` messages of one stream ([] when it does not exist yet)."""
    try:
        reply = logs.get_log_events(logGroupName=group, logStreamName=stream, limit=lines, startFromHead=False)
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return []
        raise
    return [e["message"].rstrip("\n") for e in reply.get("events", [])]


def streams(logs: Any, group: str) -> list[str]:
    """Every stream of the group, the scheduler's first ([] when the group is gone)."""
    try:
        pages = logs.get_paginator("describe_log_streams").paginate(logGroupName=group)
        names = [s["logStreamName"] for page in pages for s in page.get("logStreams", [])]
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return []
        raise
    return sorted(names, key=lambda n: (not n.startswith("scheduler/"), n))
