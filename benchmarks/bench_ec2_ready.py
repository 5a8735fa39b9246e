"""Time from `up` to a ready client on EC2, in the AWS sandbox with a boot delay per instance.

Three ways, same sandbox, same run, each until a client is connected and all N workers joined:
  lower bound   raw boto3: scheduler and workers launched at once (2 calls), then wait;
  ours          dask_aws_magic.up (security group, TLS, tags, progress, registry...);
  sequential    raw boto3, the workers launched only once the scheduler answers (two boot times,
                as a peer that waits for its scheduler does).
Target: ours within 1.15x of the lower bound.
Run: python benchmarks/bench_ec2_ready.py [BOOT_DELAY] [ROUNDS]
"""

from __future__ import annotations

import os
import socket
import statistics
import sys
import tempfile
import time

import boto3

import dask_aws_magic as dam
from dask_aws_magic.aws.tls import new_cluster_tls
from dask_aws_magic.backends.ec2 import userdata
from dask_aws_magic.sandbox import Sandbox

AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"


def _software() -> userdata.Software:
    import dask
    import distributed

    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return userdata.Software(python=version, dask=dask.__version__, distributed=distributed.__version__)


def _answers(ip: str) -> bool:
    try:
        with socket.create_connection((ip, userdata.SCHEDULER_PORT), timeout=0.25):
            return True
    except OSError:
        return False


def raw(workers: int, sequential: bool) -> float:
    """Launch with bare RunInstances calls and wait; returns seconds to a client with all workers."""
    from distributed import Client

    ec2 = boto3.client("ec2")
    ami = boto3.client("ssm").get_parameter(Name=AMI_PARAMETER)["Parameter"]["Value"]
    tls = new_cluster_tls("raw")
    start = time.perf_counter()

    def launch(role: str, count: int, scheduler_ip: str | None) -> list[dict]:
        spec = userdata.NodeSpec(role=role, cluster="raw", cluster_id="raw", software=_software(), tls=tls,
                                  scheduler_ip=scheduler_ip, nthreads=2)
        return ec2.run_instances(ImageId=ami, InstanceType="m6i.large", MinCount=count, MaxCount=count,
                                 UserData=userdata.user_data(spec))["Instances"]

    scheduler = launch("scheduler", 1, None)[0]
    ip = scheduler["PrivateIpAddress"]
    ids = [scheduler["InstanceId"]]
    if not sequential:
        ids += [i["InstanceId"] for i in launch("worker", workers, ip)]
    while not _answers(ip):
        time.sleep(0.05)
    if sequential:
        ids += [i["InstanceId"] for i in launch("worker", workers, ip)]
    client = Client(f"tls://{ip}:{userdata.SCHEDULER_PORT}", security=tls.security(), timeout=60)
    client.wait_for_workers(workers, timeout=120)
    elapsed = time.perf_counter() - start
    client.close()
    ec2.terminate_instances(InstanceIds=ids)
    return elapsed


def ours(workers: int) -> float:
    start = time.perf_counter()
    handle = dam.up("bench", workers=workers, wait_workers=workers, progress=False)
    elapsed = time.perf_counter() - start
    handle.down()
    return elapsed


def main() -> None:
    delay = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    home = tempfile.mkdtemp(prefix="dam-bench-")
    os.environ["DASK_AWS_MAGIC_HOME"] = home
    os.makedirs(f"{home}/profiles")
    with open(f"{home}/profiles/bench.yaml", "w") as out:
        out.write("backend: ec2\nregion: us-east-1\nscheduler: {type: t3.medium}\nworker: {type: m6i.large}\n")
    with Sandbox(boot_delay=delay) as sb:
        ours(1)  # warm: moto's models, imports
        print(f"boot delay {delay:g} s per instance, median of {rounds} rounds")
        for workers in (2, 4):
            low, mine, seq = [], [], []
            for _ in range(rounds):
                low.append(raw(workers, sequential=False))
                mine.append(ours(workers))
                seq.append(raw(workers, sequential=True))
            lb, m, s = statistics.median(low), statistics.median(mine), statistics.median(seq)
            print(f"{workers} workers: lower bound {lb:5.2f} s | ours {m:5.2f} s (ratio {m / lb:4.2f}, "
                  f"target <= 1.15) | scheduler-first {s:5.2f} s (ratio {s / lb:4.2f})")
        assert not sb.resources(), sb.resources()


if __name__ == "__main__":
    main()
