"""Where AWS resources may be: a region, seen with one set of credentials through one endpoint; and
searching many scopes at once, each that cannot be listed reported in one paragraph.

A scope's ``endpoint_url`` is the endpoint its resources were made through when it was not AWS
itself (``AWS_ENDPOINT_URL``: the sandbox, a proxy); None is AWS.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlparse

from ..core.errors import AwsError
from .errors import explain
from .session import client

LIST_ATTEMPTS = 3  # a listing reports a failing scope rather than retrying as long as a launch would
LOOK_EVERY = 30.0  # seconds a shared inventory (an open sidebar) may reuse what AWS answered
SHARED_FOR = 2.0  # seconds the backends' discoveries of one look share an answer (security groups, ECS tags)
MAX_THREADS = 8
T = TypeVar("T")


def current_endpoint() -> str | None:
    """The endpoint this process's AWS calls go to (None: AWS itself)."""
    return os.environ.get("AWS_ENDPOINT_URL") or None


@dataclass(frozen=True)
class Scope:
    """One region, seen with one credentials profile (None: the default credentials), through one endpoint."""

    region: str
    aws_profile: str | None = None
    endpoint_url: str | None = None

    def __str__(self) -> str:
        extra = [f"profile {self.aws_profile}"] if self.aws_profile else []
        if self.endpoint_url != current_endpoint():
            extra.append(f"endpoint {self.endpoint_url}" if self.endpoint_url else "AWS, not this endpoint")
        return f"{self.region} ({', '.join(extra)})" if extra else self.region

    def describe(self) -> str:
        """The scope in words, for messages."""
        who = f"the AWS credentials profile {self.aws_profile!r}" if self.aws_profile else "the default AWS credentials"
        where = f" through {self.endpoint_url}" if self.endpoint_url else ""
        return f"{self.region} with {who}{where}"

    @property
    def stopped_sandbox(self) -> bool:
        """True when the endpoint was an emulated AWS on this machine that has stopped: whatever was
        made in it is gone with it (no AWS endpoint is ever on a loopback address)."""
        if not self.endpoint_url or self.endpoint_url == current_endpoint():
            return False
        return sandbox_gone(self.endpoint_url)

    def client(self, service: str, attempts: int | None = None) -> Any:
        """A client for this scope; :class:`AwsError` when this process cannot reach it."""
        if self.endpoint_url is None and current_endpoint() is not None:
            raise AwsError(
                f"This process sends its AWS calls to {current_endpoint()} (the sandbox?), so resources in "
                f"{self.describe()} on AWS itself cannot be seen from here. Stop the sandbox "
                "(`%dask_cluster sandbox stop`) or use another terminal or kernel."
            )
        endpoint = None if self.endpoint_url == current_endpoint() else self.endpoint_url
        options = {"attempts": attempts} if attempts else {}
        return client(service, self.region, self.aws_profile, endpoint_url=endpoint, **options)


def sandbox_gone(endpoint_url: str | None) -> bool:
    """True when ``endpoint_url`` is an emulated AWS on this machine (a loopback address: no AWS endpoint
    is ever one) that no longer answers."""
    if not endpoint_url:
        return False
    url = urlparse(endpoint_url)
    try:
        if not ipaddress.ip_address(socket.gethostbyname(url.hostname or "")).is_loopback:
            return False
        with socket.create_connection((url.hostname, url.port or 80), timeout=1.0):
            return False
    except OSError:
        return True


def search(scopes: Iterable[Scope], list_one: Callable[[Scope], list[T]], what: str,
           ) -> tuple[list[tuple[Scope, list[T]]], list[str]]:
    """Run ``list_one`` on every scope in parallel threads. Returns what each scope that answered
    gave, and one paragraph per scope that could not be listed (never raises for a scope)."""
    import botocore.exceptions

    def attempt(scope: Scope) -> tuple[Scope, list[T] | None, str | None]:
        doing = f"listing {what} in {scope.describe()}"
        try:
            return scope, list_one(scope), None
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            return scope, None, str(explain(exc, doing))
        except AwsError as exc:
            return scope, None, f"Could not list {what} in {scope.describe()}: {exc}"
        except Exception as exc:  # a listing must report, never raise: clusters there may be billing
            return scope, None, f"Could not list {what} in {scope.describe()}: {type(exc).__name__}: {exc}"

    ordered = list(dict.fromkeys(scopes))
    if not ordered:
        return [], []
    with ThreadPoolExecutor(max_workers=min(MAX_THREADS, len(ordered))) as pool:
        outcomes = list(pool.map(attempt, ordered))
    answered = [(scope, found) for scope, found, _ in outcomes if found is not None]
    return answered, [problem for _, _, problem in outcomes if problem is not None]


_shared: dict[tuple[Scope, str], tuple[float, Any]] = {}
_shared_locks: dict[tuple[Scope, str], threading.Lock] = {}
_shared_lock = threading.Lock()


def shared(scope: Scope, what: str, fetch: Callable[[], T]) -> T:
    """``fetch()`` for ``scope``, asked once for every backend's discovery of one look: the ec2, ecs and
    fargate backends each need the scope's tagged security groups, ecs and fargate its ECS resources.
    An answer is reused for ``SHARED_FOR`` seconds only, so no later look sees an old one."""
    key = (scope, what)
    with _shared_lock:
        lock = _shared_locks.setdefault(key, threading.Lock())
    with lock:
        at, answer = _shared.get(key, (0.0, None))
        if time.monotonic() - at < SHARED_FOR:
            return answer  # type: ignore[no-any-return]
        answer = fetch()
        _shared[key] = (time.monotonic(), answer)
        return answer
