"""Forwarding the caller's data credentials to a cluster's scheduler and workers.

``up`` makes the first set before it launches anything (forwarding that cannot work fails there, with
nothing created) and hands it to the nodes once the scheduler answers, through a short client (so
clusters started from every face get them). A kernel connected to the cluster renews them before
they expire, for as long as its client is connected (:class:`Refresher`, started by the kernel
faces' handle). The credentials travel over the cluster's own TLS connection, as Dask plugins
(:mod:`.node_credentials`), and are never written anywhere.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from .connection import short_client

if TYPE_CHECKING:
    from ..backends import Backend, NodeCredentials
    from .registry import ClusterRecord

log = logging.getLogger(__name__)
RETRY = 30.0  # seconds between two attempts once a renewal failed (less when expiry is close)
SOONEST = 1.0  # never renew more often than this


def _nodes() -> Any:
    """The module the nodes run, registered to travel by value (the nodes do not have this package)."""
    import cloudpickle

    from . import node_credentials

    cloudpickle.register_pickle_by_value(node_credentials)
    return node_credentials


def make(backend: Backend, record: ClusterRecord) -> NodeCredentials | None:
    """Fresh credentials for ``record``'s nodes, None when its backend or profile forwards none."""
    make_them = getattr(backend, "node_credentials", None)
    return make_them(record) if make_them is not None else None


def send(client: Any, credentials: NodeCredentials) -> None:
    """Give the scheduler and every worker, present and future, these credentials (replacing any held)."""
    nodes = _nodes()
    payload = credentials.for_nodes()
    client.register_plugin(nodes.SchedulerCredentials(payload), name=nodes.NAME)
    client.register_plugin(nodes.WorkerCredentials(payload), name=nodes.NAME)


def deliver(backend: Backend, record: ClusterRecord, credentials: NodeCredentials | None) -> None:
    """The end of ``up``: hand ``credentials`` (made before launch; made again if half their life is
    gone) to the new cluster's nodes."""
    if credentials is None:
        return
    if time.time() >= credentials.renew_at():
        credentials = make(backend, record) or credentials
    with short_client(record) as client:
        send(client, credentials)


def held(client: Any) -> dict[str, Any]:
    """What the cluster's scheduler holds now: issue and expiry times, never the secrets."""
    return dict(client.run_on_scheduler(_nodes().held))


class Refresher:
    """Renews a cluster's data credentials half-way through their life while ``client`` is connected
    (the backend refuses to make them for anyone but the cluster's owner). A failed renewal is said
    once (a warning), then retried quietly until one succeeds."""

    def __init__(self, backend: Backend, record: ClusterRecord, client: Any) -> None:
        self.backend, self.record, self.client = backend, record, client
        self.renewals = 0
        self.expiration: float | None = None
        self.lifetime: float | None = None  # of the last credentials seen: retries come faster when it is short
        self.problem: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"dask-aws-magic-renew-{record.name}", daemon=True)

    def start(self) -> Refresher:
        self._thread.start()
        return self

    def stop(self, wait: float = 0.0) -> None:
        self._stop.set()
        if wait and self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(wait)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _connected(self) -> bool:
        return getattr(self.client, "status", "closed") not in ("closing", "closed")

    def _first_wait(self) -> float:
        """Until the credentials the scheduler holds are half-way through their life (now if it holds none)."""
        import calendar

        try:
            info = held(self.client)
        except Exception:
            return 0.0
        if not info.get("Expiration") or not info.get("IssuedAt"):
            return 0.0
        expiration = calendar.timegm(time.strptime(info["Expiration"], "%Y-%m-%dT%H:%M:%SZ"))
        self.expiration, self.lifetime = float(expiration), expiration - float(info["IssuedAt"])
        return max(0.0, float(info["IssuedAt"]) + (expiration - float(info["IssuedAt"])) / 2 - time.time())

    def _run(self) -> None:
        wait = self._first_wait()
        while not self._stop.wait(wait):
            if not self._connected():
                return
            try:
                wait = self._renew()
            except Exception as exc:
                wait = self._failed(exc)

    def _renew(self) -> float:
        credentials = make(self.backend, self.record)
        if credentials is None:
            self._stop.set()
            return 0.0
        send(self.client, credentials)
        self.renewals += 1
        self.expiration, self.lifetime = credentials.expiration, credentials.expiration - credentials.issued_at
        if self.problem is not None:
            log.warning("The data credentials of the cluster %r were renewed again.", self.record.name)
            self.problem = None
        return max(SOONEST, credentials.renew_at() - time.time())

    def _failed(self, exc: BaseException) -> float:
        reason = f"{type(exc).__name__}: {exc}"
        left = (self.expiration - time.time()) if self.expiration else None
        if self.problem is None:
            until = (f"they expire in {left:.0f} s" if left and left > 0 else "they may have expired")
            log.warning("Could not renew the data credentials of the cluster %r (%s). The nodes keep the ones they "
                        "hold (%s); retrying while this client is connected.", self.record.name, reason, until)
        self.problem = reason
        pause = min(RETRY, self.lifetime / 8) if self.lifetime else RETRY
        return max(SOONEST, min(pause, left / 4) if left and left > 0 else pause)


def start_refresher(record: ClusterRecord, client: Any) -> Refresher | None:
    """A running :class:`Refresher` for ``record`` if its profile forwards credentials, else None."""
    if (record.settings.get("data") or {}).get("credentials") != "forward":
        return None
    from ..backends import get_backend

    backend = get_backend(record.backend)
    if getattr(backend, "node_credentials", None) is None:
        return None
    return Refresher(backend, record, client).start()
