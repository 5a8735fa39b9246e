"""`up` on the local backend against distributed.LocalCluster with the same workers, in one run.

Both measure: start a scheduler and N single-threaded worker processes, connect a client, wait
until all N workers joined; then tear down (not timed). Target: ours within 1.3x of LocalCluster.

  warm   in this process, after a first round: LocalCluster's scheduler lives in this process and
         has nothing left to import, ours is a fresh `dask scheduler` process every time;
  cold   each in a fresh interpreter, from its start to the ready client: a new kernel's first cell.

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


COLD = {
    "LocalCluster": "from distributed import Client, LocalCluster\n"
                    "cluster = LocalCluster(n_workers={n}, threads_per_worker=1, dashboard_address=':0')\n"
                    "client = Client(cluster); client.wait_for_workers({n}); print('ready', flush=True)\n"
                    "client.close(); cluster.close()\n",
    "ours": "import dask_aws_magic as dam\n"
            "handle = dam.up(workers={n}, overrides={{'worker.nthreads': 1}}, progress=False)\n"
            "print('ready', flush=True); handle.down()\n",
}


def cold(kind: str, workers: int) -> float:
    """Seconds from starting a fresh interpreter to its 'ready' line."""
    import subprocess

    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", COLD[kind].format(n=workers)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        if line.startswith("ready"):
            elapsed = time.perf_counter() - start
            break
    else:
        raise RuntimeError(f"{kind} did not get ready")
    proc.wait(timeout=60)
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
    print(f"warm  LocalCluster {b:5.2f} s | dask_aws_magic.up {m:5.2f} s | ratio {m / b:4.2f} (target <= 1.3)")
    base = statistics.median(cold("LocalCluster", workers) for _ in range(rounds))
    mine = statistics.median(cold("ours", workers) for _ in range(rounds))
    print(f"cold  LocalCluster {base:5.2f} s | dask_aws_magic.up {mine:5.2f} s | ratio {mine / base:4.2f} "
          "(target <= 1.3)")


if __name__ == "__main__":
    main()
