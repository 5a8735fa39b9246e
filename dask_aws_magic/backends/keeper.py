"""Replaces the Spot workers AWS reclaims, while the cluster runs, up to the requested count: for every
backend whose clusters may run Spot workers (``fargate``: FARGATE_SPOT tasks; ``ec2``: Spot instances).

A small detached process beside the cluster (as the adaptive scaler is). Every few seconds it asks the
scheduler how many workers it has (no AWS call); it asks AWS (the backend's ``replace_reclaimed``)
at once when that count drops, every few seconds for a while after a drop (EC2 takes an instance two
minutes after its notice), every ten seconds while the scheduler has fewer workers than asked (or
does not answer), and otherwise every five minutes: with every worker there, nothing needs replacing.
A quiet cluster's keeper costs an AWS call every five minutes, not thirty a minute. A worker that
ended otherwise is not replaced (it would fail again). The keeper ends with its scheduler, or when
``down`` removes the record.

Run as ``python -m dask_aws_magic.backends.keeper NAME CLUSTER_ID``.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..core.registry import ClusterRecord

INTERVAL = 2.0  # seconds between two questions to the scheduler
LOOK_EVERY = 300.0  # seconds between two looks at AWS while every worker asked for is there: a safety net
WATCH_EVERY = 5.0  # ... and while watching, after the count dropped
WATCH_FOR = 180.0  # how long a drop is watched (EC2's notice is two minutes)
SHORT_EVERY = 10.0  # ... and while the scheduler has fewer workers than asked, or does not answer
GIVE_UP = 30  # looks failing in a row: AWS unreachable, or the sandbox gone
MODULE = "dask_aws_magic.backends.keeper"
TAG_KEEPS = "DASK_AWS_MAGIC_KEEPS_CLUSTER_ID"


def spawn(record: ClusterRecord) -> dict[str, Any]:
    """Start the keeper of ``record``; its process info for the backend's model."""
    from ..core.processes import spawn_companion

    return spawn_companion(record.cluster_id, record.name, MODULE, [record.name, record.cluster_id], TAG_KEEPS,
                           "spot-keeper.log")


def stop(record: ClusterRecord, info: dict[str, Any] | None) -> None:
    """Stop the keeper of ``record``: the one its model names and any found by its tag (a record
    rebuilt from the cluster's tags does not know it)."""
    from ..core.processes import find_companion, stop_groups

    stop_groups([i for i in (info, find_companion(record.cluster_id, MODULE, TAG_KEEPS)) if i], grace=2.0)


class _Context:
    """The backend context of a process nobody waits for: nothing cancels it, saves go to the registry."""

    cancelled = False

    def __init__(self, record: ClusterRecord) -> None:
        self.record = record

    def emit(self, stage: str, message: str, done: int | None = None, total: int | None = None) -> None:
        print(message, flush=True)

    def check(self) -> None:
        pass

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def save(self, resources: Any) -> None:
        pass  # the keeper writes its own change, merged under the registry's lock

    def retire(self, worker_names: list[str]) -> None:
        pass


def _workers(record: ClusterRecord) -> int | None:
    """How many workers the scheduler has (None when it does not answer, or has no address yet: the keeper
    starts while `up` still waits for the scheduler)."""
    from ..core.connection import identity, security_of
    from ..core.errors import DaskAwsMagicError

    if not record.scheduler_address:
        return None
    try:
        answer = identity(str(record.scheduler_address), security_of(record), timeout=3.0)
    except DaskAwsMagicError:
        return None
    return answer.get("n_workers") if answer else None


def _remember(name: str, gone: list[str], started: dict[str, dict[str, Any]]) -> bool:
    """Forget the reclaimed workers and record the new ones; False when the record has gone."""
    from ..core import registry
    from ..core.errors import DaskAwsMagicError

    def change(stored: ClusterRecord) -> None:
        workers = dict(stored.resources.get("workers") or {})
        for key in gone:
            workers.pop(key, None)
        workers.update(started)
        stored.resources["workers"] = workers

    try:
        registry.update(name, change)
    except DaskAwsMagicError:
        return False
    return True


def run(name: str, cluster_id: str) -> None:
    from ..aws.scopes import current_endpoint, sandbox_gone
    from ..backends import get_backend
    from ..core import registry
    from ..core.errors import DaskAwsMagicError
    from .ec2.discovery import scope_of  # where an AWS backend's cluster lives

    failures, next_look, watch_until, count = 0, 0.0, 0.0, None
    while True:
        record = registry.get(name)
        if record is None or record.cluster_id != cluster_id or not record.live:
            break
        now, seen = time.monotonic(), _workers(record)
        short = seen is None or seen < record.workers * record.processes_per_worker
        if seen is not None and count is not None and seen < count:
            watch_until, next_look = now + WATCH_FOR, now  # a worker left: look now, and closely for a while
        elif short:  # fewer than asked (booting, or one left unseen), or no answer: look more often
            next_look = min(next_look, now + SHORT_EVERY)
        count = seen if seen is not None else count
        if now >= next_look:
            backend: Any = get_backend(record.backend)
            try:
                alive, gone, started = backend.replace_reclaimed(_Context(record), record)
                failures = 0
            except (DaskAwsMagicError, OSError) as exc:
                failures += 1
                if failures >= GIVE_UP or sandbox_gone(scope_of(record).endpoint_url or current_endpoint()):
                    print(f"checking {name} failed {failures} time(s) in a row; the keeper ends: {exc}", flush=True)
                    break
                print(f"checking {name} failed this time: {exc}", flush=True)
                next_look = now + WATCH_EVERY
                time.sleep(INTERVAL)
                continue
            if not alive:
                print(f"the scheduler of {name} has stopped; the keeper ends", flush=True)
                break
            if (gone or started) and not _remember(name, gone, started):
                break
            next_look = now + (WATCH_EVERY if now < watch_until or gone or started else
                               SHORT_EVERY if short else LOOK_EVERY)
        time.sleep(INTERVAL)


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2])
