"""``client.cluster`` for our clusters: a ``distributed.deploy.Cluster`` whose processes live elsewhere.

Tools and habits expect the connected client's ``cluster`` to be a Cluster (``client.cluster.scale(10)``
in dask's own examples, the Cluster widget, dask-labextension). Its scheduler runs on the backend, as
with dask-gateway's clusters: this object only talks to it, and its ``scale``, ``adapt`` and
``close`` are the core's operations on the cluster.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from distributed.core import rpc
from distributed.deploy.cluster import Cluster

from ..core import lifecycle
from ..core.connection import security_of

if TYPE_CHECKING:
    from ..core.registry import ClusterRecord


class _Bounds:
    """What the Cluster widget reads of an adaptive policy (ours runs in a process of its own)."""

    periodic_callback = True

    def __init__(self, minimum: int, maximum: int):
        self.minimum, self.maximum = minimum, maximum

    def stop(self) -> None:
        """Our adaptor outlives this object; stopping it is ``scale``'s or ``down``'s job."""


class MagicCluster(Cluster):
    """A running dask-aws-magic cluster as a ``distributed`` Cluster (scale, adapt, logs, close, widget)."""

    def __init__(self, record: ClusterRecord, *, asynchronous: bool = False, loop: Any = None):
        self.record = record
        self._security = security_of(record)
        super().__init__(asynchronous=asynchronous, loop=loop, name=record.name, quiet=True)
        adaptive = record.settings.get("adaptive")
        if adaptive:
            self._adaptive = _Bounds(adaptive["minimum"], adaptive["maximum"])
        if not asynchronous:
            self._loop_runner.start()
            self.sync(self._start)

    async def _start(self) -> None:
        if self.status.name == "running":
            return
        args = self._security.get_connection_args("client") if self._security is not None else {}
        self.scheduler_comm = rpc(self.scheduler_address, connection_args=args)
        await super()._start()

    @property
    def scheduler_address(self) -> str:
        return str(self.record.scheduler_address)

    @property
    def security(self) -> Any:
        return self._security

    @property
    def dashboard_link(self) -> str:
        return self.record.dashboard_link or ""

    def scale(self, n: int) -> None:
        """Set the number of workers (machines on AWS, processes locally); stops adaptive scaling."""
        self.record = lifecycle.scale(self.record.name, int(n))
        self._adaptive = None

    def adapt(self, minimum: int = 0, maximum: int | None = None, **kwargs: Any) -> _Bounds:  # type: ignore[override]
        """Scale between ``minimum`` and ``maximum`` workers with the load, kept up by a process beside
        the cluster (so it goes on when this kernel ends)."""
        maximum = maximum if maximum is not None else max(minimum, 1)
        self.record = lifecycle.adapt(self.record.name, int(minimum), int(maximum))
        self._adaptive = _Bounds(int(minimum), int(maximum))
        return self._adaptive

    def get_logs(self, cluster: bool = True, scheduler: bool = True, workers: bool = True) -> Any:
        """The scheduler's and workers' logs (from Dask), and with ``cluster`` each process's or
        instance's own output (from the backend)."""
        logs = super().get_logs(cluster=False, scheduler=scheduler, workers=workers)
        if cluster:
            logs.update({f"backend {label}": text for label, text in lifecycle.logs(self.record.name).items()})
        return logs

    def close(self, timeout: float | None = None) -> Any:
        """Stop the cluster and remove everything it created (as ``client.shutdown()`` expects).
        Called from a running event loop (the client's), it returns an awaitable."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return self._stop()
        return loop.run_in_executor(None, self._stop)

    def _stop(self) -> None:
        self.disconnect()
        if self.record.live:
            lifecycle.down([self.record.name])
            self.record.status = "stopped"

    def disconnect(self) -> None:
        """Close this object's connection to the scheduler; the cluster keeps running."""
        super().close()
        self._loop_runner.stop()
