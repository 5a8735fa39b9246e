"""Long operations (``up``, ``down``, ``scale``, ``restart``) as objects that run in the background.

An :class:`Operation` has a state, an event log with sequence numbers (``events_since`` for
pollers, ``subscribe`` for widgets), ``cancel()`` from any thread and ``result(timeout)``. The
blocking calls of every face are the same operation followed with :func:`follow`, which turns
Ctrl-C into ``cancel()``: one code path for the terminal, the kernel, a widget and a server.
"""

from __future__ import annotations

import atexit
import contextlib
import secrets
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import DaskAwsMagicError, Interrupted

RUNNING, SUCCEEDED, FAILED, CANCELLED = "running", "succeeded", "failed", "cancelled"
FINAL_STAGES = {SUCCEEDED: "succeeded", FAILED: "failed", CANCELLED: "cancelled"}
EXIT_GRACE = 120.0  # at interpreter exit, how long running operations get to tear down


class Cancelled(BaseException):
    """Raised inside an operation's thread at its next wait once it is cancelled.

    A BaseException, so that no ``except Exception`` on the way swallows it.
    """


@dataclass
class Event:
    """One step of an operation: what it is doing now, and how far along it is."""

    seq: int
    stage: str  # plan, launch, boot, connect, workers, ready, teardown, ... and a final one:
    message: str  # succeeded, failed or cancelled
    done: int | None = None
    total: int | None = None
    time: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


Subscriber = Callable[[Event], None]
_running: weakref.WeakSet[Operation] = weakref.WeakSet()


class Operation:
    """One long operation on one cluster, run in a thread of its own."""

    def __init__(self, kind: str, cluster: str, work: Callable[[Operation], Any]):
        self.id = f"op-{secrets.token_hex(6)}"
        self.kind = kind
        self.cluster = cluster
        self.state = RUNNING
        self.started_at = time.time()
        self.ended_at: float | None = None
        self._work = work
        self._events: list[Event] = []
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._result: Any = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    # -- running -------------------------------------------------------------------------
    def start(self) -> Operation:
        """Run the work in a background thread; return at once."""
        _running.add(self)
        self._thread = threading.Thread(target=self._run, name=f"dask-aws-magic {self.kind} {self.cluster}",
                                        daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._result = self._work(self)
            state, message = SUCCEEDED, f"{self.kind} {self.cluster} succeeded"
        except Cancelled:
            state, message = CANCELLED, f"{self.kind} {self.cluster} cancelled"
            self._error = Interrupted(f"The {self.kind} of {self.cluster!r} was cancelled.")
        except Interrupted as exc:
            state, message, self._error = CANCELLED, str(exc), exc
        except BaseException as exc:  # reported to whoever waits; never lost in the thread
            state, message, self._error = FAILED, str(exc) or type(exc).__name__, exc
        self.ended_at = time.time()
        self.state = state
        self._emit_event(FINAL_STAGES[state], message)
        self._done.set()
        _running.discard(self)

    # -- what the work calls (through a backend Context, or directly) ------------------
    def emit(self, stage: str, message: str, done: int | None = None, total: int | None = None) -> Event | None:
        """Record a step; repeated identical steps are recorded once."""
        with self._lock:
            last = self._events[-1] if self._events else None
            if last and (last.stage, last.message, last.done, last.total) == (stage, message, done, total):
                return None
        return self._emit_event(stage, message, done, total)

    def _emit_event(self, stage: str, message: str, done: int | None = None, total: int | None = None) -> Event:
        with self._lock:
            event = Event(len(self._events) + 1, stage, message, done, total)
            self._events.append(event)
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            with contextlib.suppress(Exception):  # a broken widget must not break the operation
                subscriber(event)
        return event

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if the operation has been cancelled."""
        if self._cancel.is_set():
            raise Cancelled

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or raise :class:`Cancelled` as soon as the operation is cancelled."""
        if self._cancel.wait(max(0.0, seconds)):
            raise Cancelled

    # -- what callers use ----------------------------------------------------------------
    def cancel(self) -> bool:
        """Ask the operation to stop (from any thread); it tears down what it started. False if
        it had already ended."""
        if self._done.is_set():
            return False
        self._cancel.set()
        return True

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the operation ends; True if it has."""
        return self._done.wait(timeout)

    def result(self, timeout: float | None = None) -> Any:
        """The operation's result; raises its error, or TimeoutError if it is still running."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"the {self.kind} of {self.cluster!r} is still running")
        if self._error is not None:
            raise self._error
        return self._result

    @property
    def error(self) -> BaseException | None:
        return self._error

    def events_since(self, seq: int = 0) -> list[Event]:
        """Every event with a sequence number above ``seq`` (0 for all), oldest first."""
        with self._lock:
            return self._events[max(0, seq):]

    @property
    def last_event(self) -> Event | None:
        with self._lock:
            return self._events[-1] if self._events else None

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber(event)`` for each new event, from the operation's thread; returns the
        function that unsubscribes."""
        with self._lock:
            self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._subscribers.remove(subscriber)

        return unsubscribe

    def to_json(self) -> dict[str, Any]:
        last = self.last_event
        return {
            "id": self.id, "kind": self.kind, "cluster": self.cluster, "state": self.state,
            "started_at": self.started_at, "ended_at": self.ended_at,
            "last_event": last.to_json() if last else None,
            "error": None if self._error is None else str(self._error),
        }

    def __repr__(self) -> str:
        last = self.last_event
        return f"<Operation {self.kind} {self.cluster!r} {self.state}{f': {last.message}' if last else ''}>"


def follow(operation: Operation, on_event: Subscriber | None = None, poll: float = 0.05) -> Any:
    """Wait for ``operation`` in the calling thread, handing each event to ``on_event`` there
    (so output lands where the caller prints), and return its result.

    Ctrl-C (or ``on_event`` raising KeyboardInterrupt) cancels the operation, which then tears down
    what it started: this waits for that too. A second Ctrl-C stops waiting and says what is left.
    """
    seen, interrupts = 0, 0
    while True:
        try:
            finished = operation.wait(poll)
            for event in operation.events_since(seen):
                seen = event.seq
                if on_event is not None and event.stage not in FINAL_STAGES.values():
                    on_event(event)
            if finished:
                return operation.result()
        except KeyboardInterrupt:
            interrupts += 1
            operation.cancel()
            if interrupts > 1:
                raise Interrupted(
                    f"Stopped waiting for the {operation.kind} of {operation.cluster!r}; it is still being "
                    "torn down in the background. If this process exits first, run "
                    f"`%dask_cluster down {operation.cluster}` to remove what is left."
                ) from None


def _cancel_at_exit() -> None:
    """At interpreter exit, cancel what still runs and give it time to tear down (daemon threads
    are still alive while atexit handlers run)."""
    pending = list(_running)
    for operation in pending:
        operation.cancel()
    deadline = time.monotonic() + EXIT_GRACE
    for operation in pending:
        operation.wait(max(0.0, deadline - time.monotonic()))


atexit.register(_cancel_at_exit)

__all__ = ["Cancelled", "DaskAwsMagicError", "Event", "Operation", "follow"]
