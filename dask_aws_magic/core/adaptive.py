"""Adaptive scaling, run as a small detached process beside the cluster, whatever its backend.

The process asks the scheduler how many workers its load wants (``adaptive_target``), clamps
that to the bounds and calls :func:`lifecycle.scale`. It lives outside the kernel so that the
cluster keeps adapting after the kernel that asked for it is gone; ``scale`` and ``down`` stop it.
It carries its cluster's id in its environment, so it is found even when the record is gone.

Run as ``python -m dask_aws_magic.core.adaptive NAME MINIMUM MAXIMUM``.
"""

from __future__ import annotations

import math
import sys
import time
from typing import TYPE_CHECKING, Any

from .processes import find_companion, spawn_companion, stop_groups

if TYPE_CHECKING:
    from .registry import ClusterRecord

INTERVAL = 1.0
ADAPTOR_CLIENT = "dask-aws-magic-adaptor"
TAG_ADAPTS = "DASK_AWS_MAGIC_ADAPTS_CLUSTER_ID"
MODULE = "dask_aws_magic.core.adaptive"
# Scale down only after the target has stayed lower for this many checks (avoids flapping).
DOWN_AFTER = 3


def spawn(record: ClusterRecord, minimum: int, maximum: int) -> dict[str, Any]:
    """Start the adaptor process of ``record``; return its process info for the record."""
    return spawn_companion(record.cluster_id, record.name, MODULE, [record.name, str(minimum), str(maximum)],
                           TAG_ADAPTS, "adaptor.log")


def find(cluster_id: str) -> dict[str, Any] | None:
    """The adaptor process of the cluster ``cluster_id`` started from this home, if one runs."""
    return find_companion(cluster_id, MODULE, TAG_ADAPTS)


def stop(record: ClusterRecord) -> bool:
    """Stop the adaptor of ``record`` (the recorded one and any found by its tag); True if one ran."""
    found = [info for info in (record.adaptor, find(record.cluster_id)) if info]
    stop_groups(found)
    return bool(found)


def target(current: int, wanted: int, minimum: int, maximum: int, lower_streak: int,
           booting: bool = False) -> tuple[int, int]:
    """The worker count to ask for now, and the updated count of checks that wanted fewer.
    While workers added by the last scale-up may still be booting, nothing is removed: the load
    they were added for has not met them yet (on EC2 that is minutes)."""
    wanted = max(minimum, min(maximum, wanted))
    if wanted >= current:
        return wanted, 0
    if booting:
        return current, 0
    lower_streak += 1
    return (wanted, 0) if lower_streak >= DOWN_AFTER else (current, lower_streak)


def run(name: str, minimum: int, maximum: int) -> None:
    """Adapt ``name`` until the cluster is gone; errors are logged and the next check retries."""
    from ..backends import get_backend
    from . import lifecycle, registry
    from .connection import open_client
    from .errors import DaskAwsMagicError

    record = registry.read(name)
    # Named so that the scheduler's idle check does not count this client as a user.
    client = open_client(record, timeout=30, name=ADAPTOR_CLIENT)
    per_worker = max(1, record.processes_per_worker)  # Dask worker processes per backend worker
    boot_time = get_backend(record.backend).defaults.boot_time
    streak, scaled_up_at = 0, 0.0
    print(f"adapting {name} between {minimum} and {maximum} workers", flush=True)
    while True:
        record = registry.get(name)
        if record is None or not record.live:
            break
        try:
            wanted = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.adaptive_target())
            current = record.workers
            booting = time.monotonic() - scaled_up_at < boot_time
            goal, streak = target(current, math.ceil(wanted / per_worker), minimum, maximum, streak, booting)
            if goal > current:
                scaled_up_at = time.monotonic()
            if goal != current:
                print(f"scaling {name} from {current} to {goal} workers (load wants {wanted})", flush=True)
                lifecycle.scale(name, goal, stop_adaptive=False)
        except (DaskAwsMagicError, OSError, TimeoutError) as exc:
            print(f"adapting {name} failed this time: {exc}", flush=True)
        time.sleep(INTERVAL)
    client.close()


if __name__ == "__main__":
    run(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
