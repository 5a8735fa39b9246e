"""Time from `up` to a ready client on Fargate, against a BARE RunTask, in the AWS sandbox with a
start delay per task (the image pull and Fargate's provisioning).

Measured in the same run, same sandbox, same packages, each until a client is connected and all N
workers joined (TLS on in every column):
  bare          an ECS cluster and task definitions made beforehand (not timed); one RunTask for the
                scheduler, then one for the workers as soon as RunTask gave the scheduler's address;
                each container only asks the task metadata for its address, writes its TLS files and
                execs `python -m distributed.cli.dask_scheduler` / `dask_worker`;
  ours          dask_aws_magic.up (plan, secrets, log group, execution role, ECS cluster, security
                group, task definitions, tags, registry, progress...);
  sched-first   the bare tasks, but the workers started only once the scheduler answers (two start
                delays, as a peer that waits for its scheduler does).
Target: ours within 1.15x of bare.
Run: python benchmarks/bench_ecs_ready.py [START_DELAY] [ROUNDS]
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
from dask_aws_magic.backends.dask_commands import SCHEDULER_PORT
from dask_aws_magic.sandbox import Sandbox

PROFILE = ("backend: fargate\nregion: us-east-1\n"
           "ecs:\n  scheduler: {cpu: 1, memory: 4GiB}\n  worker: {cpu: 1, memory: 2GiB}\n")
BARE = r"""
import json, os, sys, tempfile, urllib.request
e = os.environ
with urllib.request.urlopen(e["ECS_CONTAINER_METADATA_URI_V4"] + "/task") as reply:
    ip = json.load(reply)["Containers"][0]["Networks"][0]["IPv4Addresses"][0]
d = tempfile.mkdtemp()
for name in ("CA", "CERT", "KEY"):
    with open(os.path.join(d, name), "w") as out:
        out.write(e.pop(name))
tls = ["--tls-ca-file", d + "/CA", "--tls-cert", d + "/CERT", "--tls-key", d + "/KEY"]
if e["ROLE"] == "scheduler":
    argv = ["-m", "distributed.cli.dask_scheduler", "--host", ip, "--port", "8786", "--protocol", "tls",
            "--dashboard-address", ip + ":8787", *tls]
else:
    argv = ["-m", "distributed.cli.dask_worker", "tls://" + e["SCHEDULER"] + ":8786", "--host", ip,
            "--nthreads", "1", "--no-dashboard", *tls]
os.execv(sys.executable, [sys.executable, *argv])
"""


class Bare:
    """The hand-made set-up a bare launch runs in: a cluster, a group, two task definitions."""

    def __init__(self, material: ClusterMaterial) -> None:
        self.ecs, ec2 = boto3.client("ecs"), boto3.client("ec2")
        self.material = material
        self.ecs.create_cluster(clusterName="bare", capacityProviders=["FARGATE", "FARGATE_SPOT"])
        self.group = ec2.create_security_group(GroupName="bare", Description="bare")["GroupId"]
        self.subnet = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"][0][
            "SubnetId"]
        self.definitions = {role: self._register(role) for role in ("scheduler", "worker")}

    def _register(self, role: str) -> str:
        node = getattr(self.material, role)
        env = {"ROLE": role, "CA": self.material.ca, "CERT": node.cert, "KEY": node.key}
        return self.ecs.register_task_definition(
            family=f"bare-{role}", networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="1024",
            memory="4096" if role == "scheduler" else "2048",
            containerDefinitions=[{"name": "dask", "image": "ghcr.io/dask/dask:latest", "memory": 2048,
                                   "command": ["python", "-c", BARE],
                                   "environment": [{"name": k, "value": v} for k, v in env.items()]}],
        )["taskDefinition"]["taskDefinitionArn"]

    def run(self, role: str, count: int, scheduler_ip: str | None = None) -> list[dict]:
        extra = {"overrides": {"containerOverrides": [{"name": "dask", "environment": [
            {"name": "SCHEDULER", "value": scheduler_ip}]}]}} if scheduler_ip else {}
        return self.ecs.run_task(
            cluster="bare", taskDefinition=self.definitions[role], count=count, launchType="FARGATE",
            networkConfiguration={"awsvpcConfiguration": {"subnets": [self.subnet], "securityGroups": [self.group]}},
            **extra)["tasks"]

    def stop(self, arns: list[str]) -> None:
        for arn in arns:
            self.ecs.stop_task(cluster="bare", task=arn)

    def remove(self) -> None:
        for arn in self.definitions.values():
            self.ecs.deregister_task_definition(taskDefinition=arn)
        self.ecs.delete_task_definitions(taskDefinitions=list(self.definitions.values()))
        self.ecs.delete_cluster(cluster="bare")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                boto3.client("ec2").delete_security_group(GroupId=self.group)
                return
            except Exception:
                time.sleep(0.5)


def _ip(task: dict) -> str:
    return next(d["value"] for a in task["attachments"] for d in a["details"] if d["name"] == "privateIPv4Address")


def _answers(ip: str) -> bool:
    try:
        with socket.create_connection((ip, SCHEDULER_PORT), timeout=0.25):
            return True
    except OSError:
        return False


def bare(setup: Bare, workers: int, scheduler_first: bool) -> float:
    """Start with bare RunTask calls and wait; seconds to a client with all workers."""
    from distributed import Client

    material = setup.material
    start = time.perf_counter()
    scheduler = setup.run("scheduler", 1)[0]
    ip = _ip(scheduler)
    arns = [scheduler["taskArn"]]
    if not scheduler_first:
        arns += [t["taskArn"] for t in setup.run("worker", workers, ip)]
    while not _answers(ip):
        time.sleep(0.05)
    if scheduler_first:
        arns += [t["taskArn"] for t in setup.run("worker", workers, ip)]
    security = client_security(material.ca, material.client.cert, material.client.key)
    client = Client(f"tls://{ip}:{SCHEDULER_PORT}", security=security, timeout=60)
    client.wait_for_workers(workers, timeout=120)
    elapsed = time.perf_counter() - start
    client.close()
    setup.stop(arns)
    return elapsed


def main() -> None:
    delay = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    home = tempfile.mkdtemp(prefix="dam-bench-")
    os.environ["DASK_AWS_MAGIC_HOME"] = home
    os.makedirs(f"{home}/profiles")
    with open(f"{home}/profiles/bench.yaml", "w") as out:
        out.write(PROFILE)
    with Sandbox(boot_delay=delay) as sb:
        setup = Bare(new_cluster_material("bare"))
        bare(setup, 1, scheduler_first=False)  # warm: moto's models, imports
        time_ours(1)
        print(f"start delay {delay:g} s per task, median of {rounds} rounds (TLS on in every column)")
        for workers in (2, 4):
            low, mine, seq = [], [], []
            for _ in range(rounds):  # interleaved, so a busy moment of the machine hits every column
                low.append(bare(setup, workers, scheduler_first=False))
                mine.append(time_ours(workers))
                seq.append(bare(setup, workers, scheduler_first=True))
            lb, m, s = statistics.median(low), statistics.median(mine), statistics.median(seq)
            print(f"{workers} workers: bare {lb:5.2f} s | ours {m:5.2f} s (ratio {m / lb:4.2f}, target <= 1.15) "
                  f"| scheduler-first {s:5.2f} s (ratio {s / lb:4.2f})", flush=True)
        deadline = time.monotonic() + 15  # the last bare tasks are stopped without waiting
        while sb.resources().get("ecs_tasks") and time.monotonic() < deadline:
            time.sleep(0.1)
        setup.remove()
        assert not sb.resources(), sb.resources()


if __name__ == "__main__":
    main()
