"""The operations started through this server, by id, so clients can follow and cancel them."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from ..core.operation import Operation

KEEP_FINISHED = 50  # finished operations kept for late pollers


class OperationStore:
    """Operations by id; the oldest finished ones are forgotten past ``KEEP_FINISHED``."""

    def __init__(self) -> None:
        self._ops: OrderedDict[str, Operation] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, operation: Operation) -> Operation:
        with self._lock:
            self._ops[operation.id] = operation
            finished = [key for key, op in self._ops.items() if op.done]
            for key in finished[: max(0, len(finished) - KEEP_FINISHED)]:
                del self._ops[key]
        return operation

    def get(self, op_id: str) -> Operation | None:
        with self._lock:
            return self._ops.get(op_id)

    def all(self) -> list[Operation]:
        with self._lock:
            return list(self._ops.values())

    def running_for(self, cluster: str) -> Operation | None:
        """The running ``up`` of ``cluster`` started here, if any (what the sidebar's Cancel stops)."""
        return next((op for op in reversed(self.all()) if op.cluster == cluster and not op.done), None)


def describe(operation: Operation, since: int = 0) -> dict[str, Any]:
    """The operation's JSON with its events after ``since``."""
    return {**operation.to_json(), "events": [e.to_json() for e in operation.events_since(since)]}


STORE = OperationStore()
