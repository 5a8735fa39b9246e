"""Time from `up` to a ready client on EC2, against a BARE launch, in the AWS sandbox with a boot
delay per instance.

Measured in the same run, same sandbox, same packages, each until a client is connected and all N
workers joined:
  bare          one RunInstances per role, launched together, whose user-data only asks the metadata
                service for its address, writes its TLS certificate, key and CA (in user-data:
                what a hand-made launch does; ours fetches them from Secrets Manager) and starts
                `python -m distributed.cli.dask_scheduler` / `dask_worker` (TLS on, as ours: both
                pay the same handshakes);
  ours          dask_aws_magic.up (plan, secrets, instance role, security group, TLS, tags, progress,
                registry, versions check...);
  sched-first   the bare user-data, but the workers launched only once the scheduler answers
                (two boot times, as a peer that waits for its scheduler does).
Target: ours within 1.05x of bare.
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
from bench_context import time_ours  # this folder is on sys.path when run as a script

from dask_aws_magic.aws.tls import ClusterMaterial, client_security, new_cluster_material
from dask_aws_magic.backends.dask_commands import DASHBOARD_PORT, SCHEDULER_PORT
from dask_aws_magic.sandbox import Sandbox

AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
PROFILE = "backend: ec2\nregion: us-east-1\nscheduler: {type: t3.medium}\nworker: {type: m6i.large}\n"
BARE = """#!/bin/bash
IMDS="${{AWS_EC2_METADATA_SERVICE_ENDPOINT:-http://169.254.169.254/}}"
TOKEN=$(curl -sf -X PUT "${{IMDS}}latest/api/token" -H "X-aws-ec2-metadata-token-ttl-seconds: 60")
IP=$(curl -sf -H "X-aws-ec2-metadata-token: $TOKEN" "${{IMDS}}latest/meta-data/local-ipv4")
D="${{SANDBOX_INSTANCE_ROOT:-}}/opt/bare"
mkdir -p "$D" && cd "$D"
cat > ca.pem <<'PEM'
{ca}
PEM
cat > c.pem <<'PEM'
{cert}
PEM
cat > c.key <<'KEY'
{key}
KEY
TLS="--tls-ca-file ca.pem --tls-cert c.pem --tls-key c.key"
exec python3 -m distributed.cli.{command}
"""


def bare_user_data(tls: ClusterMaterial, scheduler_ip: str | None, nthreads: int) -> str:
    identity = tls.scheduler if scheduler_ip is None else tls.worker
    if scheduler_ip is None:
        command = (f'dask_scheduler --host "$IP" --port {SCHEDULER_PORT} --protocol tls '
                   f'--dashboard-address "$IP:{DASHBOARD_PORT}" $TLS')
    else:
        command = (f'dask_worker tls://{scheduler_ip}:{SCHEDULER_PORT} --host "$IP" --nthreads {nthreads} '
                   "--no-dashboard $TLS")
    return BARE.format(ca=tls.ca.strip(), cert=identity.cert.strip(), key=identity.key.strip(), command=command)


def _answers(ip: str) -> bool:
    try:
        with socket.create_connection((ip, SCHEDULER_PORT), timeout=0.25):
            return True
    except OSError:
        return False


def bare(ami: str, workers: int, scheduler_first: bool) -> float:
    """Launch with bare RunInstances calls and wait; returns seconds to a client with all workers."""
    from distributed import Client

    ec2 = boto3.client("ec2")
    tls = new_cluster_material("bare")
    start = time.perf_counter()

    def launch(itype: str, count: int, scheduler_ip: str | None) -> list[dict]:
        return ec2.run_instances(ImageId=ami, InstanceType=itype, MinCount=count, MaxCount=count,
                                 UserData=bare_user_data(tls, scheduler_ip, 2))["Instances"]

    scheduler = launch("t3.medium", 1, None)[0]
    ip = scheduler["PrivateIpAddress"]
    ids = [scheduler["InstanceId"]]
    if not scheduler_first:
        ids += [i["InstanceId"] for i in launch("m6i.large", workers, ip)]
    while not _answers(ip):
        time.sleep(0.05)
    if scheduler_first:
        ids += [i["InstanceId"] for i in launch("m6i.large", workers, ip)]
    client = Client(f"tls://{ip}:{SCHEDULER_PORT}", security=client_security(tls.ca, tls.client.cert, tls.client.key),
                    timeout=60)
    client.wait_for_workers(workers, timeout=120)
    elapsed = time.perf_counter() - start
    client.close()
    ec2.terminate_instances(InstanceIds=ids)
    return elapsed


def main() -> None:
    delay = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    home = tempfile.mkdtemp(prefix="dam-bench-")
    os.environ["DASK_AWS_MAGIC_HOME"] = home
    os.makedirs(f"{home}/profiles")
    with open(f"{home}/profiles/bench.yaml", "w") as out:
        out.write(PROFILE)
    with Sandbox(boot_delay=delay) as sb:
        ami = boto3.client("ssm").get_parameter(Name=AMI_PARAMETER)["Parameter"]["Value"]
        bare(ami, 1, scheduler_first=False)  # warm: moto's models, imports
        time_ours(1)
        print(f"boot delay {delay:g} s per instance, median of {rounds} rounds (TLS on in every column)")
        for workers in (2, 4):
            low, mine, seq = [], [], []
            for _ in range(rounds):  # interleaved, so a busy moment of the machine hits every column
                low.append(bare(ami, workers, scheduler_first=False))
                mine.append(time_ours(workers))
                seq.append(bare(ami, workers, scheduler_first=True))
            lb, m, s = statistics.median(low), statistics.median(mine), statistics.median(seq)
            print(f"{workers} workers: bare {lb:5.2f} s | ours {m:5.2f} s (ratio {m / lb:4.2f}, target <= 1.05) "
                  f"| scheduler-first {s:5.2f} s (ratio {s / lb:4.2f})")
        deadline = time.monotonic() + 10  # the last bare instances are terminated without waiting
        while sb.resources() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not sb.resources(), sb.resources()


if __name__ == "__main__":
    main()
