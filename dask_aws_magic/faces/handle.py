"""``ClusterHandle``: a running cluster and this process's connection to it.

Connecting is a kernel-side step: the handle's client becomes the default client and dask's
``scheduler-address`` points at the cluster, so ``Client()`` and ``.compute()`` use it. The core
never does this (a Jupyter server process that starts clusters must not).
"""

from __future__ import annotations

import contextlib
import html
import weakref
from typing import TYPE_CHECKING, Any

from ..core.errors import ClusterUnreachable

if TYPE_CHECKING:
    from distributed import Client

    from ..core.registry import ClusterRecord

_open: weakref.WeakSet[ClusterHandle] = weakref.WeakSet()


class ClusterHandle:
    """A running cluster and this process's connection to it."""

    def __init__(self, record: ClusterRecord):
        self.record = record
        self._client: Client | None = None
        self._cluster: Any = None
        self._refresher: Any = None  # renews the nodes' data credentials while the client is connected
        self.mismatches: list[Any] = []  # versions that differ from the workers' at the last connect
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
        """Open a client, make it the default, and point dask's ``scheduler-address`` at the cluster.
        The client's ``cluster`` is a ``distributed`` Cluster for this cluster (scale, adapt, widget)."""
        import warnings

        import dask

        from ..imports import distributed

        Client = distributed().Client  # a panel's refresh may be importing it in its thread
        from distributed.versions import VersionMismatchWarning
        if self._client is None or self._client.status in ("closed", "closing"):
            from ..core import versions
            from .cluster import MagicCluster

            versions.prepare()
            try:
                self._cluster = MagicCluster(self.record)
                with warnings.catch_warnings():  # distributed's table of versions: our one line says it
                    warnings.simplefilter("ignore", VersionMismatchWarning)
                    self._client = Client(self._cluster, timeout=timeout, set_as_default=True)
            except (OSError, TimeoutError) as exc:
                self._disconnect_cluster()
                raise ClusterUnreachable(
                    f"Could not connect to the scheduler of {self.name!r} at {self.scheduler_address} ({exc}). "
                    f"Check it with `%dask_cluster status {self.name}`."
                ) from None
            self._report_versions()
        dask.config.set(self._config())
        if self._refresher is None or not self._refresher.running:
            from ..core.forwarding import start_refresher

            self._refresher = start_refresher(self.record, self._client)
        return self._client

    def _report_versions(self) -> None:
        """One line naming the packages whose versions differ between this kernel and the workers."""
        from ..core import versions

        try:
            sync = (self.record.settings.get("software") or {}).get("sync") or {}
            found = versions.mismatches(self._client, sync.get("excluded") or ())
        except Exception as exc:  # a report that cannot be made must not fail the connection
            print(f"dask-aws-magic: could not compare versions with {self.name}'s workers ({exc})")
            return
        self.mismatches = found
        if found:
            print(versions.one_line(found, self.name))

    def _config(self) -> dict[str, Any]:
        """What dask's config needs so that ``Client()`` with no arguments reaches this cluster: its
        address and, with TLS, its client identity (files or PEM text; never written elsewhere)."""
        config: dict[str, Any] = {"scheduler-address": self.scheduler_address}
        security = getattr(self._cluster, "security", None)
        if security is not None and security.tls_ca_file:
            config.update({"distributed.comm.tls.ca-file": security.tls_ca_file,
                           "distributed.comm.tls.client.cert": security.tls_client_cert,
                           "distributed.comm.tls.client.key": security.tls_client_key})
        return config

    @property
    def cluster(self) -> Any:
        """The ``distributed`` Cluster object of this cluster (also ``client.cluster``)."""
        self.client  # noqa: B018 (connects on first use)
        return self._cluster

    def _disconnect_cluster(self) -> None:
        if self._cluster is not None:
            self._cluster.disconnect()
            self._cluster = None

    @property
    def client(self) -> Client:
        """The connected ``distributed.Client`` (connecting on first use)."""
        return self._client if self._client is not None else self.connect()

    def close(self) -> None:
        """Close this process's client; the cluster keeps running."""
        import dask

        if self._refresher is not None:
            self._refresher.stop()
            self._refresher = None
        if self._client is not None:
            from distributed.client import _get_global_client

            # distributed re-raises a dead scheduler's last reconnect error ("IOStream is not idle"): the
            # client is discarded all the same, and nothing may stop a `down` that follows.
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None
            # distributed restores the config of when a client opened: closing two in the order they opened
            # leaves `scheduler: dask.distributed` with no client, and every .compute() fails.
            if _get_global_client() is None and dask.config.get("scheduler", None) == "dask.distributed":
                dask.config.set(scheduler=None)
        if dask.config.get("scheduler-address", None) == self.scheduler_address:
            dask.config.set({key: None for key in self._config()})
        self._disconnect_cluster()

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

        close_handles(self.name)
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

    def _ipython_display_(self, **kwargs: Any) -> None:
        """In a kernel with ipywidgets, distributed's live Cluster widget (status, workers, dashboard link,
        manual and adaptive scaling); front ends without widgets fall back on the HTML table."""
        from IPython.display import display

        bundle: dict[str, Any] = {"text/plain": repr(self), "text/html": self._repr_html_()}
        widget = self._live_widget()
        if widget is not None:
            view = widget._repr_mimebundle_(**kwargs) or {}
            bundle.update({kind: data for kind, data in view.items() if kind != "text/plain"})
        display(bundle, raw=True)

    def _live_widget(self) -> Any:
        """The connected cluster's widget, or None (not connected, not a kernel, or no ipywidgets)."""
        from .progress import in_notebook

        if self._cluster is None or self._client is None or self._client.status != "running" or not in_notebook():
            return None
        try:
            return self._cluster._widget()
        except Exception:  # a widget that cannot be built must not hide the cluster: the HTML still shows
            return None


def connected_handle(cluster_id: str) -> ClusterHandle | None:
    """This process's connected handle of the cluster ``cluster_id``, if it has one."""
    for handle in list(_open):
        if handle.record.cluster_id == cluster_id and handle._client is not None and handle._client.status == "running":
            return handle
    return None


def close_handles(name: str | None = None) -> None:
    """Close every client this process holds to the cluster ``name`` (to every cluster if None),
    before it goes down."""
    for handle in list(_open):
        if name is None or handle.name == name:
            handle.close()


def attach(name: str, *, timeout: float = 10.0) -> ClusterHandle:
    """Connect to the running cluster ``name`` (started by any kernel, the terminal or a server).
    A cluster this process is already connected to keeps its one client."""
    from ..core import inventory

    record = inventory.answering(name)
    handle = connected_handle(record.cluster_id) or ClusterHandle(record)
    handle.connect(timeout=timeout)
    return handle
