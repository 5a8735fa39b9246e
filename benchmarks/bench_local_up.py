"""`up` on the local backend against distributed.LocalCluster with the same workers, in one run.

Both measure: start a scheduler and N single-threaded worker processes, connect a client, wait
until all N workers joined; then tear down (not timed). Target: ours within 1.3x of LocalCluster.
Run: python benchmarks/bench_local_up.py [WORKERS] [ROUNDS]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time


def local_cluster(workers: int) -> float:
    from distributed import Client, LocalCluster

    start = time.perf_counter()
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0")
    client = Client(cluster)
    client.wait_for_workers(workers)
    elapsed = time.perf_counter() - start
    client.close()
    cluster.close()
    return elapsed


def ours(workers: int) -> float:
    import dask_aws_magic as dam

    start = time.perf_counter()
    handle = dam.up(workers=workers, overrides={"worker.nthreads": 1}, progress=False)
    elapsed = time.perf_counter() - start
    handle.down()
    return elapsed


def main() -> None:
    workers = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    os.environ["DASK_AWS_MAGIC_HOME"] = tempfile.mkdtemp(prefix="dam-bench-")
    local_cluster(workers), ours(workers)  # warm imports and caches for both
    base, mine = [], []
    for _ in range(rounds):
        base.append(local_cluster(workers))
        mine.append(ours(workers))
    b, m = statistics.median(base), statistics.median(mine)
    print(f"{workers} workers, median of {rounds} rounds")
    print(f"distributed.LocalCluster  {b:6.2f} s")
    print(f"dask_aws_magic.up(local)  {m:6.2f} s")
    print(f"ratio ours/LocalCluster   {m / b:6.2f}   (target <= 1.3)")


if __name__ == "__main__":
    main()
