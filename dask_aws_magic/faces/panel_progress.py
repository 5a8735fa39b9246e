"""One ``up`` followed in the panel: a progress bar, the live stage lines and a Cancel button."""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable

import ipywidgets as w

from ..core.operation import FINAL_STAGES, Event, Operation
from .panel_runtime import error_html

STAGES = ("plan", "launch", "boot", "connect", "workers", "ready")  # the steps of an ``up``, in order


def fraction(event: Event) -> float | None:
    """How far along an ``up`` is after ``event`` (0 to 1), or None for a stage outside the steps."""
    if event.stage not in STAGES:
        return None
    part = min(event.done / event.total, 1.0) if event.total and event.done is not None else 0.0
    return min(1.0, (STAGES.index(event.stage) + part) / (len(STAGES) - 1))


class OperationView(w.VBox):
    """Follows the ``up`` of one cluster. ``phase`` is starting, then running while the operation
    works, then succeeded, failed or cancelled."""

    def __init__(self, label: str, on_end: Callable[[OperationView], None] | None = None):
        super().__init__()
        self.label = label
        self.phase = "starting"
        self.operation: Operation | None = None
        self.started = time.time()
        self._on_end = on_end
        self._seq = 0
        self._lines: dict[str, str] = {}  # the latest line of each stage, in the order the stages came
        self._cancel_asked = False
        self._lock = threading.RLock()
        self.title = w.HTML(f"<b>Starting {html.escape(label)}</b>")
        self.bar = w.FloatProgress(value=0.0, min=0.0, max=1.0, bar_style="info", layout=w.Layout(width="320px"))
        self.cancel_button = w.Button(description="Cancel", icon="stop", button_style="warning",
                                      tooltip="Stop starting this cluster and remove what was started")
        self.lines = w.HTML()
        self.error = w.HTML()
        self.cancel_button.on_click(lambda _button: self.cancel())
        self.add_class("dam-operation")
        self.children = [self.title, w.HBox([self.bar, self.cancel_button]), self.lines, self.error]

    @property
    def finished(self) -> bool:
        return self.phase in FINAL_STAGES.values()

    @property
    def text(self) -> str:
        """The stage lines as plain text."""
        with self._lock:
            return "\n".join(self._lines.values())

    # -- fed by the panel --------------------------------------------------------------------
    def attach(self, operation: Operation) -> None:
        """Follow ``operation`` (a Cancel clicked before it existed takes effect now)."""
        with self._lock:
            self.operation = operation
            if not self.finished:
                self.phase = "running"
            cancel = self._cancel_asked
        if cancel:
            operation.cancel()
        for event in operation.events_since(self._seq):  # what came before this view heard of it
            self.on_event(event)

    def on_event(self, event: Event) -> None:
        """Show one event (called from the operation's thread)."""
        with self._lock:
            if event.seq <= self._seq:
                return
            self._seq = event.seq
            if event.stage in FINAL_STAGES.values():
                self._end(event.stage, event.message)
                return
            elapsed = max(event.time - self.started, 0.0)
            self._lines[event.stage] = f"{elapsed:5.1f} s  {event.stage}: {event.message}"
            reached = fraction(event)
            with self.bar.hold_sync():
                if reached is not None:
                    self.bar.value = max(self.bar.value, reached)
                if event.stage == "teardown":
                    self.bar.bar_style = "warning"
            self._show_lines()

    def fail(self, paragraph: str) -> None:
        """The operation could not even start (bad input): say why."""
        with self._lock:
            self._end("failed", paragraph)

    def cancel(self) -> None:
        """Ask the operation to stop; it tears down what it started."""
        with self._lock:
            if self.finished or self._cancel_asked:
                return
            self._cancel_asked = True
            operation = self.operation
            self.cancel_button.disabled = True
            self.cancel_button.description = "Cancelling"
            self._lines["cancel"] = "cancelling: whatever was started is being torn down"
            self._show_lines()
        if operation is not None:
            operation.cancel()

    # -- drawing -----------------------------------------------------------------------------
    def _show_lines(self) -> None:
        body = html.escape("\n".join(self._lines.values()))
        self.lines.value = f"<pre class='dam-lines' style='margin:2px 0;font-size:12px'>{body}</pre>"

    def _end(self, phase: str, message: str) -> None:
        if self.finished:
            return
        self.phase = phase
        label = html.escape(self.label)
        with self.hold_sync():
            self.cancel_button.layout.display = "none"
            if phase == "succeeded":
                self.bar.value, self.bar.bar_style = 1.0, "success"
                self.title.value = (f"<b>{label} is running.</b> Connect in the table below puts a client "
                                    "into this kernel.")
            else:
                self.bar.bar_style = "danger" if phase == "failed" else "warning"
                verb = "could not start" if phase == "failed" else "was cancelled"
                self.title.value = f"<b>{label} {verb}.</b>"
                self.error.value = error_html(message)
        if self._on_end is not None:
            self._on_end(self)
