"""The adaptor process of one cluster: asks the scheduler how many workers its load wants
(``adaptive_target``), clamps that to the bounds (:func:`.adaptive.target`) and calls
:func:`.lifecycle.scale`. Started by :func:`.adaptive.spawn`.

Run as ``python -m dask_aws_magic.core.adaptor NAME MINIMUM MAXIMUM``.
"""

from __future__ import annotations

import math
import sys
import time

from ..backends import get_backend
from . import lifecycle, registry
from .adaptive import target
from .connection import open_client
from .errors import DaskAwsMagicError

INTERVAL = 1.0  # seconds between looks at the load
ADAPTOR_CLIENT = "dask-aws-magic-adaptor"  # its client's name: the idle check does not count it as a user


def run(name: str, minimum: int, maximum: int) -> None:
    """Adapt ``name`` until the cluster is gone; errors are logged and the next check retries."""
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
