"""AWS API calls per `up` on EC2, by number of workers N, counted by the sandbox's server.

Two counts:
  launch   plan + launch + one status poll + down, with a boot delay so long that nothing boots:
           every AWS call the cluster's size could influence, for N = 1, 10, 100;
  full up  a real `up` to a ready client (waiting for the scheduler only) and `down`, N = 1, 10;
           the instances' own calls (each reads its role's secret once at boot) are shown
           apart: they are not calls `up` makes.
Target: the same counts whatever N.
Run: python benchmarks/bench_ec2_calls.py
"""

from __future__ import annotations

import os
import tempfile

from bench_context import BenchContext  # this folder is on sys.path when run as a script

import dask_aws_magic as dam
from dask_aws_magic.backends import get_backend
from dask_aws_magic.backends.ec2 import lookups
from dask_aws_magic.core import registry
from dask_aws_magic.core.naming import new_cluster_id
from dask_aws_magic.core.profiles import load
from dask_aws_magic.core.registry import ClusterRecord
from dask_aws_magic.sandbox import Sandbox


def launch_only(sb: Sandbox, workers: int) -> int:
    lookups.forget()  # each counted as the first `up` of a process: nothing kept from the one before
    sb.reset_calls()
    profile = load("bench", [f"worker.count={workers}"])
    backend = get_backend("ec2")
    plan = backend.plan(profile, "bench")
    record = ClusterRecord(name="bench", cluster_id=new_cluster_id(), backend="ec2", profile="bench",
                           settings=dict(plan.settings))  # as the core does before launch
    ctx = BenchContext(record)
    ctx.save(backend.launch(ctx, plan, record))
    seen = backend.poll(record)
    assert seen.total == workers + 1, seen
    backend.terminate(ctx, record)
    registry.remove("bench")
    return sum(sb.calls().values())


READ = "secretsmanager:GetSecretValue"  # the booting instances read their node secret, with their role


def full_up(sb: Sandbox, workers: int) -> tuple[int, dict[str, int], int]:
    lookups.forget()
    sb.reset_calls()
    handle = dam.up("bench", workers=workers, wait_workers=0, progress=False)
    handle.down()
    calls = sb.calls()
    # `down` reads the cluster's manifest (its client secret); every other read is an instance's.
    by_instances = sum("/nodes" in r.get("SecretId", "") for r in sb.requests(READ))
    calls[READ] -= by_instances
    calls = +calls  # drop counts that fell to zero
    return sum(calls.values()), dict(sorted(calls.items())), by_instances


def main() -> None:
    home = tempfile.mkdtemp(prefix="dam-bench-")
    os.environ["DASK_AWS_MAGIC_HOME"] = home
    os.makedirs(f"{home}/profiles")
    with open(f"{home}/profiles/bench.yaml", "w") as out:
        out.write("backend: ec2\nregion: us-east-1\nscheduler: {type: t3.medium}\nworker: {type: m6i.large}\n")
    with Sandbox(boot_delay=3600) as sb:
        counts = {n: launch_only(sb, n) for n in (1, 10, 100)}
        assert not sb.resources()
    print("launch (plan + launch + poll + down), calls by N:",
          ", ".join(f"N={n}: {c}" for n, c in counts.items()))
    with Sandbox(boot_delay=0) as sb:
        for n in (1, 10):
            total, calls, by_instances = full_up(sb, n)
            print(f"full up + down, N={n}: {total} calls {calls}; the instances made {by_instances}")
        assert not sb.resources()
    base = counts[1]
    print("ratio N=100 / N=1:", f"{counts[100] / base:.2f}", "(target 1.00)")


if __name__ == "__main__":
    main()
