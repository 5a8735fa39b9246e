"""Adaptive scaling, run as a small detached process beside the cluster.

The process asks the scheduler how many workers its load wants (``adaptive_target``), clamps
that to the bounds and calls :func:`lifecycle.scale`. It lives outside the kernel so that the
cluster keeps adapting after the kernel that asked for it is gone; ``scale`` and ``down`` stop it.

Run as ``python -m dask_aws_magic.core.adaptive NAME MINIMUM MAXIMUM``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .registry import ClusterRecord

INTERVAL = 1.0
ADAPTOR_CLIENT = "dask-aws-magic-adaptor"
# Scale down only after the target has stayed lower for this many checks (avoids flapping).
DOWN_AFTER = 3


def spawn_adaptor(record: ClusterRecord, minimum: int, maximum: int) -> dict[str, Any]:
    """Start the adaptor process for ``record``; return its process info for the record."""
    from ..backends.local import TAG_CLUSTER, TAG_CLUSTER_ID, TAG_HOME, TAG_ROLE, run_dir
    from . import paths
    from .processes import create_time

    env = dict(os.environ)
    env.update({TAG_CLUSTER: record.name, TAG_CLUSTER_ID: record.cluster_id, TAG_ROLE: "adaptor",
                TAG_HOME: str(paths.home().resolve())})
    folder = run_dir(record.name)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "adaptor.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dask_aws_magic.core.adaptive", record.name, str(minimum), str(maximum)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True, close_fds=True,
        )
    return {"pid": proc.pid, "started": create_time(proc.pid)}


def target(current: int, wanted: int, minimum: int, maximum: int, lower_streak: int) -> tuple[int, int]:
    """The worker count to ask for now, and the updated count of checks that wanted fewer."""
    wanted = max(minimum, min(maximum, wanted))
    if wanted >= current:
        return wanted, 0
    lower_streak += 1
    return (wanted, 0) if lower_streak >= DOWN_AFTER else (current, lower_streak)


def run(name: str, minimum: int, maximum: int) -> None:
    """Adapt ``name`` until the cluster is gone; errors are logged and the next check retries."""
    import math

    from ..faces.handle import open_client
    from . import lifecycle, registry
    from .errors import DaskAwsMagicError

    record = registry.read(name)
    # Named so that the scheduler's idle check does not count this client as a user.
    client = open_client(record, timeout=30, name=ADAPTOR_CLIENT)
    per_worker = max(1, int(record.settings.get("nprocs", 1)))  # worker processes per instance
    streak = 0
    print(f"adapting {name} between {minimum} and {maximum} workers", flush=True)
    while True:
        record = registry.get(name)
        if record is None or not record.live:
            break
        try:
            wanted = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.adaptive_target())
            current = len(record.resources.get("workers", {}))
            goal, streak = target(current, math.ceil(wanted / per_worker), minimum, maximum, streak)
            if goal != current:
                print(f"scaling {name} from {current} to {goal} workers (load wants {wanted})", flush=True)
                lifecycle.scale(name, goal, stop_adaptive=False)
        except (DaskAwsMagicError, OSError, TimeoutError) as exc:
            print(f"adapting {name} failed this time: {exc}", flush=True)
        time.sleep(INTERVAL)
    client.close()


if __name__ == "__main__":
    run(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
