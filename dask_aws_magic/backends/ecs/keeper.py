"""Replaces the Fargate Spot workers AWS reclaims, while the cluster runs, up to the requested count.

A small detached process beside the cluster (as the adaptive scaler is): every few seconds it
describes the cluster's tasks (100 per call) and, for each worker stopped with ``SpotInterruption``,
starts a new one if the cluster has fewer live workers than asked. A worker that failed otherwise is
not replaced (it would fail again). It ends with its scheduler, or when ``down`` removes the record.

Run as ``python -m dask_aws_magic.backends.ecs.keeper NAME CLUSTER_ID``.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ...core.registry import ClusterRecord

INTERVAL = 2.0
GIVE_UP = 30  # checks failing in a row (a minute or more): AWS unreachable, or the sandbox gone
MODULE = "dask_aws_magic.backends.ecs.keeper"
TAG_KEEPS = "DASK_AWS_MAGIC_KEEPS_CLUSTER_ID"


def spawn(record: ClusterRecord) -> dict[str, Any]:
    """Start the keeper of ``record``; its process info for the model."""
    from ...core.processes import spawn_companion

    return spawn_companion(record.cluster_id, record.name, MODULE, [record.name, record.cluster_id], TAG_KEEPS,
                           "spot-keeper.log")


def stop(info: dict[str, Any]) -> None:
    from ...core.processes import stop_groups

    stop_groups([info], grace=2.0)


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


def replace_reclaimed(record: ClusterRecord) -> tuple[bool, list[str], list[str]]:
    """One look: (scheduler alive, reclaimed workers forgotten, new workers started)."""
    from ...backends import get_backend
    from . import tasks
    from .model import ECSResources

    backend: Any = get_backend(record.backend)
    model = ECSResources.from_json(record.resources)
    found = backend._describe(record, model)
    scheduler = next((t for t in found if t["taskArn"] == model.scheduler), None)
    if scheduler is None or scheduler.get("lastStatus") not in tasks.LIVE:
        return False, [], []
    live = [t for t in found if t["taskArn"] in model.workers and t.get("lastStatus") in tasks.LIVE]
    reclaimed = [t["taskArn"] for t in found if t["taskArn"] in model.workers and t.get("lastStatus") == "STOPPED"
                 and t.get("stopCode") == "SpotInterruption"]
    missing = min(len(reclaimed), record.workers - len(live))
    started: list[str] = []
    if missing > 0:
        print(f"{len(reclaimed)} Spot worker(s) reclaimed; starting {missing}", flush=True)
        before = set(model.workers)
        backend._add_workers(_Context(record), record, model, missing)
        started = [arn for arn in model.workers if arn not in before]
    return True, reclaimed, started


def run(name: str, cluster_id: str) -> None:
    from ...core import registry
    from ...core.errors import DaskAwsMagicError
    from .discovery import scope_of

    failures = 0
    while True:
        record = registry.get(name)
        if record is None or record.cluster_id != cluster_id or not record.live:
            break
        try:
            alive, gone, started = replace_reclaimed(record)
            failures = 0
        except (DaskAwsMagicError, OSError) as exc:
            failures += 1
            if failures >= GIVE_UP or scope_of(record).stopped_sandbox:
                print(f"checking {name} failed {failures} time(s) in a row; the keeper ends: {exc}", flush=True)
                break
            print(f"checking {name} failed this time: {exc}", flush=True)
            time.sleep(INTERVAL)
            continue
        if not alive:
            print(f"the scheduler of {name} has stopped; the keeper ends", flush=True)
            break
        if gone or started:
            def change(stored: ClusterRecord, gone: list[str] = gone, started: list[str] = started) -> None:
                workers = dict(stored.resources.get("workers") or {})
                for arn in gone:
                    workers.pop(arn, None)
                workers.update({arn: {"spot": True} for arn in started})
                stored.resources["workers"] = workers

            try:
                registry.update(name, change)
            except DaskAwsMagicError:
                break
        time.sleep(INTERVAL)


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2])
