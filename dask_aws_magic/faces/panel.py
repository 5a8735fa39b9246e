"""The ipywidgets panel: ``%dask_cluster panel`` and ``dask_aws_magic.panel()``.

A launcher (profile, plan, name, workers, Up), the ``up`` operations it started (progress, stage
lines, Cancel) and the table of every cluster, refreshed every few seconds by a thread of the panel
that only reads the process's shared inventory (paused while no view of the panel is shown). Clicks return
at once: the work runs in the core's operations or in the panel's own threads, so the kernel stays
free. Closing the panel stops its refresh; the clusters keep running.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ..core import inventory, lifecycle
from ..core.errors import DaskAwsMagicError
from ..core.operation import Operation
from .handle import attach, close_handles
from .panel_launcher import Launcher
from .panel_progress import OperationView
from .panel_runtime import Background, Ticker, explain, note_html
from .panel_table import ClusterTable, RowActions, close_tree

if TYPE_CHECKING:
    from .handle import ClusterHandle

REFRESH = 3.0  # seconds between two looks at the clusters


class Panel(w.VBox):
    """Start, follow, use and stop Dask clusters from widgets.

    ``shell``: the IPython shell whose namespace Connect fills (default: the running one). Without
    one, Connect fills ``namespace``.
    """

    def __init__(self, *, refresh: float = REFRESH, shell: Any = None, namespace: dict[str, Any] | None = None):
        super().__init__()
        self.background = Background(shell)
        self.shell = self.background.shell
        self.namespace: dict[str, Any] = {} if namespace is None else namespace
        self.handles: dict[str, ClusterHandle] = {}
        self.ups: dict[str, OperationView] = {}  # the ``up`` operations this panel started, by cluster name
        self._lock = threading.RLock()
        self.launcher = Launcher(self.background, self.up)
        self.operations = w.VBox()
        self.table = ClusterTable(RowActions(self.background, self.connect, self.stop, self.refresh_soon, self.say))
        self.message = w.HTML()
        heading = w.HTML("<b style='font-size:14px'>Dask clusters</b> "
                         + note_html("(they keep running when this panel is closed)"))
        self.add_class("dam-panel")
        self.children = [heading, self.launcher, self.operations, self.table, self.message]
        self._seen = False
        self._view_count = 0  # turns on the front end's counting of this panel's views
        self.observe(self._views_changed, "_view_count")
        self.ticker = Ticker(self.background, refresh, self._tick, self.table.fail).start()

    # -- starting ------------------------------------------------------------------------------
    def up(self, profile: str, name: str | None = None, workers: int | None = None) -> OperationView:
        """Start a cluster from ``profile`` in the background (what Up does); returns its progress view
        at once."""
        label = name or profile
        view = OperationView(label, on_end=lambda _view: self.refresh_soon())
        with self._lock:
            finished = [v for v in self.operations.children if v.finished]
            self.operations.children = (*(v for v in self.operations.children if not v.finished), view)
        for old in finished:
            close_tree(old)

        def start() -> None:
            try:
                operation = lifecycle.start_up(profile, name=name, workers=workers, subscriber=view.on_event)
            except Exception as exc:
                view.fail(explain(f"Starting {label}", exc))
                return
            self.ups[operation.cluster] = view
            view.attach(operation)
            self.refresh_soon()  # its record exists: show it in the table as starting

        self.background.run(start, view.fail, f"Starting {label}", name="up")
        return view

    # -- what the rows ask for -----------------------------------------------------------------
    def connect(self, name: str) -> str:
        """Connect this kernel to ``name``; the client goes into the namespace under the magics' ``client_var``."""
        handle = attach(name)
        self.handles[name] = handle
        var = self.client_var()
        magics = self._magics()
        if magics is not None:
            magics.handles[name] = handle  # so `%dask_cluster status` with no name means this one
        if self.shell is not None:
            self.shell.push({var: handle.client})
        else:
            self.namespace[var] = handle.client
        return f"Connected: `{var}` in this kernel is now a client of {name}."

    def stop(self, name: str) -> Operation:
        """Stop ``name``: cancel this panel's ``up`` of it if that still runs, else start its ``down``."""
        view = self.ups.get(name)
        if view is not None and not view.finished and view.operation is not None:
            view.cancel()
            return view.operation
        if view is not None and not view.finished:
            raise DaskAwsMagicError(f"{name!r} is still being set up; click Cancel above to stop it.")
        close_handles(name)
        self.handles.pop(name, None)
        magics = self._magics()
        if magics is not None:
            magics.handles.pop(name, None)
        return lifecycle.start_down([name])

    def client_var(self) -> str:
        """The variable Connect fills: the magics' ``client_var`` when they are loaded, else ``client``."""
        magics = self._magics()
        return str(magics.client_var) if magics is not None else "client"

    def _magics(self) -> Any:
        manager = getattr(self.shell, "magics_manager", None)
        return manager.registry.get("DaskClusterMagics") if manager is not None else None

    # -- refreshing ----------------------------------------------------------------------------
    @property
    def watched(self) -> bool:
        """False once every view of the panel is gone (output cleared, cell run again, notebook
        closed): the refresh pauses until a view shows it again."""
        return not self._seen or bool(self._view_count)

    def _views_changed(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self._seen = True
            self.refresh_soon()

    def _tick(self) -> None:
        if self.watched:
            self.refresh()

    def refresh(self) -> None:
        """Look at every cluster now and show what was found (the timer calls this every few seconds)."""
        self.table.update(inventory.shared().survey())  # AWS asked at most every 30 s, the schedulers each time

    def refresh_soon(self) -> None:
        """Refresh as soon as the timer's thread is free."""
        self.ticker.poke()

    def say(self, text: str) -> None:
        self.message.value = note_html(text)

    def close(self) -> None:
        """Stop refreshing and close the widgets; clusters and running operations go on."""
        ticker = getattr(self, "ticker", None)  # None when __init__ failed half-way (ipywidgets closes on __del__)
        if ticker is not None:
            ticker.stop()
        for child in self.children:
            close_tree(child)
        super().close()


def panel(refresh: float = REFRESH, *, shell: Any = None) -> Panel:
    """The panel as a widget: display it, or make it the last expression of a cell."""
    return Panel(refresh=refresh, shell=shell)
