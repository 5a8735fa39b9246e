"""What the benchmarks share: a backend context with no operation around it, and timing our `up`."""

from __future__ import annotations

import time
from typing import Any

from dask_aws_magic.core import registry
from dask_aws_magic.core.registry import ClusterRecord


class BenchContext:
    """The backend context with no operation around it: nothing cancels, saves go to the registry."""

    cancelled = False

    def __init__(self, record: ClusterRecord) -> None:
        self.record = record

    def emit(self, stage: str, message: str, done: int | None = None, total: int | None = None) -> None:
        pass

    def check(self) -> None:
        pass

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def save(self, resources: Any) -> None:
        self.record.resources = resources.to_json()
        registry.write(self.record)

    def retire(self, worker_names: list[str]) -> None:
        pass


def time_ours(workers: int, profile: str = "bench") -> float:
    """Seconds from `dask_aws_magic.up` to a ready client with every worker joined (then `down`)."""
    import dask_aws_magic as dam

    start = time.perf_counter()
    handle = dam.up(profile, workers=workers, wait_workers=workers, progress=False)
    elapsed = time.perf_counter() - start
    handle.down()
    return elapsed
