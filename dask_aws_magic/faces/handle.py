"""``ClusterHandle``: what ``up`` and ``attach`` return, shared by the API and the magics."""

from __future__ import annotations

import html
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distributed import Client

    from ..core.registry import ClusterRecord

_open: weakref.WeakSet[ClusterHandle] = weakref.WeakSet()


class ClusterHandle:
    """A running cluster and this process's connection to it."""

    def __init__(self, record: ClusterRecord):
        self.record = record
        self._client: Client | None = None
        _open.add(self)

    # -- identity ------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.record.name

    @property
    def scheduler_address(self) -> str | None:
        return self.record.scheduler_address

    @property
    def dashboard_link(self) -> str | None:
        return self.record.dashboard_link

    # -- connection ----------------------------------------------------------------------
    def connect(self, timeout: float = 30.0) -> Client:
        """Open a client, make it the default, and point dask's ``scheduler-address`` at the cluster."""
        import dask

        if self._client is None or self._client.status in ("closed", "closing"):
            self._client = open_client(self.record, timeout=timeout, set_as_default=True)
        dask.config.set({"scheduler-address": self.scheduler_address})
        return self._client

    @property
    def client(self) -> Client:
        """The connected ``distributed.Client`` (connecting on first use)."""
        return self._client if self._client is not None else self.connect()

    def close(self) -> None:
        """Close this process's client; the cluster keeps running."""
        import dask

        if self._client is not None:
            self._client.close()
            self._client = None
        if dask.config.get("scheduler-address", None) == self.scheduler_address:
            dask.config.set({"scheduler-address": None})

    # -- operations ----------------------------------------------------------------------
    def scale(self, n: int) -> None:
        """Set the number of workers."""
        from ..core import lifecycle

        self.record = lifecycle.scale(self.name, n)

    def adapt(self, minimum: int = 0, maximum: int | None = None) -> None:
        """Scale between ``minimum`` and ``maximum`` workers with the load."""
        from ..core import lifecycle

        self.record = lifecycle.adapt(self.name, minimum, maximum)

    def status(self) -> dict[str, Any]:
        from ..core import lifecycle

        return lifecycle.status(self.name)

    def down(self) -> list[str]:
        """Stop the cluster and remove everything it created."""
        from ..core import lifecycle

        return lifecycle.down([self.name])

    def __enter__(self) -> ClusterHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    # -- display -------------------------------------------------------------------------
    def __repr__(self) -> str:
        return (f"<ClusterHandle {self.name!r} backend={self.record.backend} "
                f"scheduler={self.scheduler_address} workers={self.record.workers}>")

    def _repr_html_(self) -> str:
        link = self.dashboard_link
        dashboard = (f'<a href="{html.escape(link)}" target="_blank">{html.escape(link)}</a>'
                     if link else "none")
        rows = [
            ("Backend", html.escape(self.record.backend)),
            ("Profile", html.escape(self.record.profile)),
            ("Scheduler", html.escape(str(self.scheduler_address))),
            ("Dashboard", dashboard),
            ("Workers", str(self.record.workers)),
            ("Status", html.escape(self.record.status)),
        ]
        body = "".join(f"<tr><th style='text-align:left'>{k}</th><td style='text-align:left'>{v}</td></tr>"
                       for k, v in rows)
        return f"<div><strong>Dask cluster {html.escape(self.name)}</strong><table>{body}</table></div>"


def open_client(record: ClusterRecord, *, timeout: float = 10.0, set_as_default: bool = False,
                name: str | None = None) -> Client:
    """A client of ``record``'s scheduler, with the cluster's own TLS; :class:`ClusterDead` if it
    cannot connect."""
    from distributed import Client

    from ..backends import get_backend
    from ..core.errors import ClusterDead

    try:
        return Client(record.scheduler_address, security=get_backend(record.backend).security(record),
                      timeout=timeout, set_as_default=set_as_default, name=name)
    except (OSError, TimeoutError) as exc:
        raise ClusterDead(
            f"Could not connect to the scheduler of {record.name!r} at {record.scheduler_address} ({exc}). "
            f"Check it with `%dask_cluster status {record.name}`."
        ) from None


def close_handles(name: str) -> None:
    """Close every client this process holds to the cluster ``name`` (before it goes down)."""
    for handle in list(_open):
        if handle.name == name:
            handle.close()
