"""Talking to a cluster's scheduler from the core: a probe through the Dask protocol, and
short-lived clients for status, scale and restart.

None of this opens the default client or touches dask's global config: that is the kernel
faces' job (:mod:`dask_aws_magic.faces.handle`), so a server process can run the core safely.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ClusterUnreachable

if TYPE_CHECKING:
    from distributed import Client

    from .registry import ClusterRecord


def security_of(record: ClusterRecord) -> Any | None:
    """The ``distributed.Security`` a client of ``record`` needs (None without TLS)."""
    from ..backends import get_backend

    return get_backend(record.backend).security(record)


@dataclass(frozen=True)
class DashboardIdentity:
    """How a cluster's dashboard proves it is that cluster's before anything is sent to it: an HTTPS
    dashboard by a certificate the cluster's own CA signed (``security`` holds that CA and the client's
    identity), a plain-HTTP one on this machine by being served by the cluster's own scheduler process.
    ``problem`` says why neither holds."""

    security: Any | None = None
    own_process: bool = False
    problem: str = ""


def dashboard_identity(record: ClusterRecord) -> DashboardIdentity:
    """What proves ``record``'s dashboard to a client that connects to it (the Jupyter server's proxy)."""
    from ..backends import get_backend

    link = record.dashboard_link or ""
    if link.startswith("https:"):
        security = security_of(record)
        if security is None or not getattr(security, "tls_ca_file", None):
            return DashboardIdentity(problem="its dashboard speaks HTTPS but no CA of the cluster is known to "
                                             "check its certificate against")
        return DashboardIdentity(security=security)
    check = getattr(get_backend(record.backend), "dashboard_is_its_own", None)
    if check is not None and check(record):
        return DashboardIdentity(own_process=True)
    return DashboardIdentity(problem="its dashboard speaks plain HTTP (the cluster runs with `network.tls: false`), "
                                     "so nothing proves the page comes from the cluster's scheduler")


def identity(address: str, security: Any | None = None, timeout: float = 1.0) -> dict[str, Any] | None:
    """The scheduler's answer to Dask's ``identity`` request (with its worker count), or None if it
    does not answer within ``timeout``. A real handshake, TLS included, so the scheduler's log
    shows no aborted connections."""
    import asyncio

    from ..imports import distributed

    distributed()
    from distributed.comm import connect

    args = security.get_connection_args("client") if security is not None else {}

    async def ask() -> dict[str, Any]:
        comm = await connect(address, timeout=timeout, **args)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            await comm.close()

    try:
        return _run(lambda: asyncio.wait_for(ask(), timeout))
    except (OSError, TimeoutError, asyncio.TimeoutError, ValueError):
        return None
    except Exception as exc:  # CommClosedError and TLS errors while the scheduler starts
        if type(exc).__module__.startswith(("distributed", "ssl", "tornado")):
            return None
        raise


def _run(make: Any) -> Any:
    """Run the coroutine ``make()`` to its end on a loop of its own, leaving the calling thread's
    event-loop state as it was (``asyncio.run`` would unset it); from a thread whose loop is
    running (a kernel's main thread) it gets a thread of its own."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(make())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(_run, make).result()


def open_client(record: ClusterRecord, *, timeout: float = 10.0, set_as_default: bool = False,
                name: str | None = None) -> Client:
    """A client of ``record``'s scheduler with the cluster's own TLS; :class:`ClusterUnreachable` if it
    cannot connect."""
    from ..imports import distributed

    Client = distributed().Client

    try:
        return Client(record.scheduler_address, security=security_of(record), timeout=timeout,
                      set_as_default=set_as_default, name=name)
    except (OSError, TimeoutError) as exc:
        raise ClusterUnreachable(
            f"Could not connect to the scheduler of {record.name!r} at {record.scheduler_address} ({exc}). "
            f"Check it with `%dask_cluster status {record.name}`."
        ) from None


@contextlib.contextmanager
def short_client(record: ClusterRecord, timeout: float = 10.0) -> Iterator[Client]:
    """A client for one task (never the default); connection failures become :class:`ClusterUnreachable`."""
    client = open_client(record, timeout=timeout)
    try:
        yield client
    except (OSError, TimeoutError) as exc:
        raise ClusterUnreachable(f"The connection to {record.name!r} failed: {type(exc).__name__}: {exc}") from None
    finally:
        client.close()
