"""What the panel's widgets share: threads that keep the kernel free, a periodic timer, and errors in
plain words.

The panel's work (starting an operation, asking the registry, connecting) runs in threads of the
panel's own, never in the core. ipykernel 7 keeps the parent header (the request that output belongs
to) in a context variable, which a new thread does not inherit: output from such a thread would go to
whichever cell ran last. Each thread here carries the header of the cell that displayed the panel.
"""

from __future__ import annotations

import contextlib
import html
import threading
from collections.abc import Callable
from typing import Any

from ..core.errors import DaskAwsMagicError

ErrorSink = Callable[[str], None]


def explain(action: str, exc: BaseException) -> str:
    """One plain paragraph: what failed and what to do (never a traceback)."""
    if isinstance(exc, DaskAwsMagicError):
        return str(exc)
    detail = str(exc) or type(exc).__name__
    return (f"{action} failed: {detail} ({type(exc).__name__}). Try again; if it fails again, run the same "
            "step with `%dask_cluster` in a cell to see where it stops.")


def error_html(text: str) -> str:
    """``text`` in the panel's error style (empty text gives empty markup)."""
    if not text:
        return ""
    return ("<div class='dam-error' style='color:#8a1f11;background:#fdecea;border-left:3px solid #d9534f;"
            f"padding:4px 8px;white-space:normal'>{html.escape(text)}</div>")


def note_html(text: str) -> str:
    """``text`` as a quiet one-line note."""
    return f"<span class='dam-note' style='color:#555'>{html.escape(text)}</span>" if text else ""


class Background:
    """Runs callables in daemon threads that carry the parent header of the cell that made this object."""

    def __init__(self, shell: Any = None):
        if shell is None:
            try:
                from IPython import get_ipython

                shell = get_ipython()
            except ImportError:  # pragma: no cover (IPython is a dependency)
                shell = None
        self.shell = shell
        get_parent = getattr(shell, "get_parent", None)
        self.parent: dict[str, Any] | None = get_parent() if callable(get_parent) else None

    def run(self, work: Callable[[], Any], on_error: ErrorSink, action: str, name: str = "work") -> threading.Thread:
        """Start ``work()`` in a thread; an exception becomes ``on_error(paragraph)``."""
        thread = threading.Thread(target=self._in_cell, args=(work, on_error, action),
                                  name=f"dask-aws-magic panel {name}", daemon=True)
        thread.start()
        return thread

    def _in_cell(self, work: Callable[[], Any], on_error: ErrorSink, action: str) -> None:
        tokens = None
        set_thread_parent = getattr(self.shell, "set_thread_parent", None)
        if self.parent and callable(set_thread_parent):
            tokens = set_thread_parent(self.parent)
        try:
            work()
        except BaseException as exc:  # shown in the panel; a widget thread has nobody else to tell
            with contextlib.suppress(Exception):  # a closed widget: nothing left to show it in
                on_error(explain(action, exc))
        finally:
            if tokens is not None:
                self.shell.reset_thread_parent(tokens)


class Ticker:
    """Calls ``tick()`` every ``interval`` seconds in one background thread until stopped; ``poke()``
    runs it early. Ticks never overlap, so a slow look (AWS) only delays the next one."""

    def __init__(self, background: Background, interval: float, tick: Callable[[], None], on_error: ErrorSink):
        self.interval = interval
        self._background, self._tick, self._on_error = background, tick, on_error
        self._wake, self._stop = threading.Event(), threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> Ticker:
        self.thread = self._background.run(self._loop, self._on_error, "Refreshing the clusters", name="refresh")
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception as exc:  # shown, then tried again at the next tick
                self._on_error(explain("Refreshing the list of clusters", exc))
            self._wake.wait(self.interval)
            self._wake.clear()

    def poke(self) -> None:
        """Tick as soon as the current tick (if any) ends."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()
