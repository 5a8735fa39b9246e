"""Progress shown while ``up`` waits: one updating line in a notebook, a terminal or a script."""

from __future__ import annotations

import html
import sys
import time
from typing import Any

from ..core.operation import Event

BAR_WIDTH = 20


def in_notebook() -> bool:
    """True inside a Jupyter kernel (rich display works), False in terminal IPython or a script."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _bar(done: int | None, total: int | None) -> str:
    if not total or done is None:
        return ""
    filled = round(BAR_WIDTH * min(done, total) / total)
    return "[" + "#" * filled + "." * (BAR_WIDTH - filled) + f"] {done}/{total} "


class ProgressReporter:
    """Callable ``on_event`` sink that renders events in place."""

    def __init__(self, title: str, *, notebook: bool | None = None, stream: Any = None):
        self.title = title
        self.notebook = in_notebook() if notebook is None else notebook
        self.stream = stream or sys.stdout
        self.started = time.monotonic()
        self._handle: Any = None
        self._last = ""
        self.events: list[Event] = []

    def _text(self, event: Event) -> str:
        elapsed = time.monotonic() - self.started
        return f"{self.title}: {_bar(event.done, event.total)}{event.message} ({elapsed:.1f} s)"

    def __call__(self, event: Event) -> None:
        if self.events and self.events[-1] == event:
            return
        self.events.append(event)
        text = self._text(event)
        if self.notebook:
            from IPython.display import display

            bundle = {"text/plain": text, "text/html": f"<pre style='margin:0'>{html.escape(text)}</pre>"}
            if self._handle is None:
                self._handle = display(bundle, raw=True, display_id=True)
            else:
                self._handle.update(bundle, raw=True)
            return
        pad = " " * max(0, len(self._last) - len(text))
        self.stream.write("\r" + text + pad)
        self.stream.flush()
        self._last = text
        if event.stage in ("ready", "teardown"):
            self.stream.write("\n")
            self._last = ""

    def finish(self) -> None:
        """End the terminal line (after a failure, which sends no 'ready' event)."""
        if not self.notebook and self._last:
            self.stream.write("\n")
            self.stream.flush()
            self._last = ""
