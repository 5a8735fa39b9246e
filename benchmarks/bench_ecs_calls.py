"""AWS API calls per `up` on Fargate, by number of workers N, counted by the sandbox's server.

Two counts:
  launch   plan + launch + one status poll + down, with a task start delay so long that nothing
           starts: every AWS call the cluster's size could influence, for N = 1, 10, 100
           (RunTask takes 10 tasks per call, DescribeTasks 100; ECS has no batch StopTask, so a
           `down` of tasks that never started stops them one by one);
  full up  a real `up` to a ready client (waiting for every worker) and `down` (Dask closes its own
           tasks, so `down` stops none one by one), N = 1, 10 (each worker is a real process here).
Target: calls growing no faster than N/10.
Run: python benchmarks/bench_ecs_calls.py
"""

from __future__ import annotations

import math
import os
import tempfile
from collections import Counter

from bench_context import BenchContext  # this folder is on sys.path when run as a script

import dask_aws_magic as dam
from dask_aws_magic.backends import get_backend
from dask_aws_magic.core import registry
from dask_aws_magic.core.naming import new_cluster_id
from dask_aws_magic.core.profiles import load
from dask_aws_magic.core.registry import ClusterRecord
from dask_aws_magic.sandbox import Sandbox

PROFILE = ("backend: fargate\nregion: us-east-1\nlimits: {max_workers: 200}\n"
           "ecs:\n  worker: {cpu: 0.25, memory: 512MiB}\n  scheduler: {cpu: 0.5, memory: 1GiB}\n")


def launch_only(sb: Sandbox, workers: int) -> tuple[Counter[str], Counter[str]]:
    sb.reset_calls()
    profile = load("bench", [f"worker.count={workers}"])
    backend = get_backend("fargate")
    plan = backend.plan(profile, "bench")
    record = ClusterRecord(name="bench", cluster_id=new_cluster_id(), backend="fargate", profile="bench",
                           settings=dict(plan.settings))
    ctx = BenchContext(record)
    ctx.save(backend.launch(ctx, plan, record))
    seen = backend.poll(record)
    assert seen.total == workers + 1, seen
    up = sb.calls()
    sb.reset_calls()
    backend.terminate(ctx, record)
    registry.remove("bench")
    return up, sb.calls()


def full_up(sb: Sandbox, workers: int) -> tuple[Counter[str], Counter[str]]:
    sb.reset_calls()
    handle = dam.up("bench", workers=workers, wait_workers=workers, progress=False)
    up = sb.calls()
    sb.reset_calls()
    handle.down()
    return up, sb.calls()


def show(counts: Counter[str]) -> str:
    return ", ".join(f"{k.split(':')[1]} {v}" for k, v in sorted(counts.items()) if k.startswith("ecs:"))


def main() -> None:
    home = tempfile.mkdtemp(prefix="dam-bench-")
    os.environ["DASK_AWS_MAGIC_HOME"] = home
    os.makedirs(f"{home}/profiles")
    with open(f"{home}/profiles/bench.yaml", "w") as out:
        out.write(PROFILE)
    print("launch: plan + launch + one poll (nothing starts), then down")
    with Sandbox(boot_delay=3600) as sb:
        launch = {}
        for n in (1, 10, 100):
            up, down = launch_only(sb, n)
            launch[n] = sum(up.values())
            print(f"  N={n:3d}: up {sum(up.values()):3d} calls (ecs: {show(up)}); down {sum(down.values()):3d} calls")
        assert not sb.resources(), sb.resources()
    growth = (launch[100] - launch[1]) / 99
    print(f"  up calls grow by {growth:.2f} per worker (target <= 0.10; RunTask {math.ceil(100 / 10)} calls for 100)")
    print("full up: to a ready client with every worker joined, then down")
    with Sandbox(boot_delay=0) as sb:
        for n in (1, 10):
            up, down = full_up(sb, n)
            print(f"  N={n:3d}: up {sum(up.values()):3d} calls (ecs: {show(up)}); down {sum(down.values()):3d} calls "
                  f"(ecs: {show(down)})")
        assert not sb.resources(), sb.resources()


if __name__ == "__main__":
    main()
