"""The ``fargate`` and ``ecs`` backends end to end in the AWS sandbox: moto's server, plus the task
emulator that runs each ECS task's container command as real Dask processes.

Every scenario ends with ``sb.resources()`` empty: nothing leaked on the emulated AWS.
"""

from __future__ import annotations

import json
import os
import time

import boto3
import psutil
import pytest

import dask_aws_magic as dam
from dask_aws_magic.core import lifecycle, registry
from dask_aws_magic.core.errors import DaskAwsMagicError, Interrupted, LaunchError, ProfileError, WaitTimeout

from .conftest import FARGATE_PROFILE, assert_private, assert_refuses_strangers, aws_sandbox, cancel_at

pytestmark = pytest.mark.sandbox

FARGATE = FARGATE_PROFILE.replace("count: 1", "count: 2")
ECS = """\
backend: ecs
region: us-east-1
worker: {count: 2}
"""


@pytest.fixture
def sb(home):
    with aws_sandbox(home, {"fg": FARGATE, "ecs-test": ECS}) as sandbox:
        yield sandbox
        assert not _keepers(), "a Spot keeper outlived its cluster"
    assert_private(home)


def _keepers() -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if "dask_aws_magic.backends.keeper" in " ".join(proc.info["cmdline"] or []) and \
                proc.status() != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def ecs():
    return boto3.client("ecs")


def cluster_tasks(record, status="RUNNING"):
    cluster = record.resources["ecs_cluster"]
    arns = ecs().list_tasks(cluster=cluster, startedBy=record.cluster_id, desiredStatus=status)["taskArns"]
    return ecs().describe_tasks(cluster=cluster, tasks=arns, include=["TAGS"])["tasks"] if arns else []


def wait_for(condition, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


# -- planning and bad input ------------------------------------------------------------------------
def test_plan_prices_fargate_and_creates_nothing(sb):
    plan = dam.plan("fg", ["worker.count=4", "worker.spot=true"])
    tasks = {r.role: r for r in plan.resources if r.kind == "task"}
    assert tasks["worker"].count == 4 and "FARGATE_SPOT" in tasks["worker"].detail
    assert tasks["worker"].hourly_cost == pytest.approx(4 * (1 * 0.04048 + 2 * 0.004445), rel=1e-3)
    assert tasks["worker"].spot_hourly_cost == pytest.approx(4 * (1 * 0.01334058 + 2 * 0.00146489), rel=1e-3)
    assert tasks["scheduler"].spot_hourly_cost is None  # the scheduler stays on FARGATE
    assert plan.hourly_cost > plan.spot_hourly_cost
    assert "ghcr.io/dask/dask:" in tasks["worker"].detail
    assert not sb.resources()
    assert not [c for c in sb.calls() if any(w in c for w in ("Create", "Run", "Register", "Authorize"))]


@pytest.mark.parametrize(("override", "expected"), [
    ("ecs.worker.cpu=3", "`ecs.worker.cpu` is 3, which Fargate does not offer"),
    ("ecs.worker.memory=16GiB", "`ecs.worker.memory` is 16 GiB, which Fargate does not allow with cpu 1"),
    ("ecs.scheduler.memory=5GiB", "pick one of 1 GiB, 2 GiB, 3 GiB, 4 GiB"),
])
def test_invalid_cpu_and_memory_fail_before_anything_starts(sb, override, expected):
    with pytest.raises(ProfileError) as caught:
        lifecycle.start_up("fg", overrides=[override])
    message = str(caught.value)
    assert expected in message and "Valid pairs: cpu 0.25: memory 0.5 GiB, 1 GiB, 2 GiB" in message
    assert "fg.yaml" in message and "\n" not in message
    assert registry.get("fg") is None and not sb.resources() and sum(sb.calls().values()) == 0


def test_no_image_matches_the_client(sb):
    with pytest.raises(ProfileError, match=r"No public Dask image matches .*Python 3\.9.* `software\.image`"):
        dam.plan("fg", ["software.python=3.9"])


# -- Fargate end to end ------------------------------------------------------------------------------
def test_fargate_up_compute_scale_logs_down(sb):
    sb.reset_calls()
    handle = dam.up("fg", wait_workers=2, progress=False)
    calls = sb.calls()
    assert calls["ecs:RunTask"] == 2  # the scheduler, then every worker in one call
    assert handle.scheduler_address.startswith("tls://127.")
    assert handle.client.submit(sum, [1, 2]).result() == 3
    record = handle.record
    assert record.backend == "fargate"

    # Tags on everything, the backend's own among them; the group open to the caller only.
    running = cluster_tasks(record)
    assert len(running) == 3
    for task in running:
        tags = {t["key"]: t["value"] for t in task["tags"]}
        assert tags["dask-aws-magic:cluster-id"] == record.cluster_id and tags["dask-aws-magic:backend"] == "fargate"
        assert task["capacityProviderName"] == "FARGATE"
    group = boto3.client("ec2").describe_security_groups(
        GroupIds=[record.resources["security_group"]])["SecurityGroups"][0]
    cidrs = [r["CidrIp"] for p in group["IpPermissions"] for r in p.get("IpRanges", [])]
    assert cidrs == ["127.0.0.1/32"] and "0.0.0.0/0" not in json.dumps(group["IpPermissions"])

    # No secret in a task definition: only the secret's ARN; ECS hands the values to the process.
    for arn in record.resources["task_definitions"].values():
        definition = ecs().describe_task_definition(taskDefinition=arn)["taskDefinition"]
        text = json.dumps(definition)
        assert "PRIVATE KEY" not in text and "BEGIN CERTIFICATE" not in text and "AWS_SECRET" not in text
        container = definition["containerDefinitions"][0]
        assert {s["name"] for s in container["secrets"]} >= {"DASK_AWS_MAGIC_KEY", "DASK_AWS_MAGIC_CERT"}
        assert definition["executionRoleArn"].endswith("-execution")
        assert definition["cpu"] in ("512", "1024")
    role = boto3.client("iam").get_role(RoleName=record.resources["execution_role"].rsplit("/", 1)[-1])["Role"]
    assert "ecs-tasks.amazonaws.com" in json.dumps(role["AssumeRolePolicyDocument"])
    dask_processes = 0
    for pgid in sb.task_processes().values():  # no AWS credential anywhere; the key text only in the
        for proc in [psutil.Process(pgid), *psutil.Process(pgid).children(recursive=True)]:  # container's entry
            env = proc.environ()
            # Where AWS is (the sandbox's S3 and the rest), the region and where the task role's credentials
            # are served (ECS's endpoint, or the data credentials' on loopback), never a credential itself.
            assert not [k for k in env if k.startswith("AWS_") and k not in (
                "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "AWS_CONTAINER_AUTHORIZATION_TOKEN")]
            assert not [v for v in env.values() if v.startswith(("ASIA", "AKIA"))]
            if proc.cmdline()[1:3] in (["-m", "distributed.cli.dask_scheduler"], ["-m", "distributed.cli.dask_worker"]):
                dask_processes += 1  # Dask itself gets files, not the secret text
                assert not any("PRIVATE KEY" in v for v in env.values())
                assert not [k for k in env if k.startswith("DASK_AWS_MAGIC_")]
    assert dask_processes >= 3

    # The dashboard speaks HTTPS with the scheduler's certificate, which the cluster's CA signed.
    import ssl
    import urllib.request

    assert handle.dashboard_link.startswith("https://")
    context = ssl.create_default_context(cadata=record.resources["tls"]["ca"])
    context.check_hostname = False
    with urllib.request.urlopen(handle.dashboard_link, context=context, timeout=10) as reply:
        assert reply.status == 200

    # TLS: a client without a certificate of the cluster's CA is refused.
    assert_refuses_strangers(handle.scheduler_address)

    assert [(c.name, c.backend) for c in dam.list_clusters()] == [("fg", "fargate")]
    dam.scale("fg", 13)  # 11 more: RunTask in batches of 10
    handle.client.wait_for_workers(13, timeout=90)
    assert len(cluster_tasks(record)) == 14
    dam.scale("fg", 1)
    wait_for(lambda: len(handle.client.scheduler_info()["workers"]) == 1, 30, "retired workers to leave")
    wait_for(lambda: len(cluster_tasks(record)) == 2, 30, "surplus tasks to stop")

    logs = dam.logs("fg")
    scheduler = [text for label, text in logs.items() if label.startswith("scheduler")]
    assert scheduler and "starting the scheduler" in scheduler[0] and "Scheduler at" in scheduler[0]
    assert any(label.startswith("worker") for label in logs)

    sb.reset_calls()
    lines = handle.down()[0]
    for part in ("stopped 2 task(s)", "deregistered 2 task definition(s)", "deleted ECS cluster",
                 "deleted log group", "deleted security group", "deleted 2 secret(s)", "deleted IAM role"):
        assert part in lines, lines


def test_found_by_tags_without_registry_list_and_down_all(sb, home):
    handle = dam.up("fg", progress=False)
    handle.close()
    (home / "clusters" / "fg.json").unlink()  # another laptop: no registry
    found = dam.list_clusters()
    assert [(c.name, c.backend, c.status) for c in found] == [("fg", "fargate", "running")]  # never as ec2
    attached = dam.attach("fg")  # the client identity comes from the client secret
    assert attached.client.submit(lambda: 41 + 1).result() == 42
    attached.close()
    (home / "clusters" / "fg.json").unlink()
    lines = dam.down(all=True)
    assert "fg:" in lines[0] and "stopped 3 task(s)" in lines[0] and "deleted ECS cluster" in lines[0]


def test_fargate_spot_worker_reclaimed_is_replaced(sb):
    handle = dam.up("fg", overrides={"worker.spot": True}, wait_workers=2, progress=False)
    record = handle.record
    workers = [t for t in cluster_tasks(record) if t["taskArn"] != record.resources["scheduler"]]
    assert {t["capacityProviderName"] for t in workers} == {"FARGATE_SPOT"}
    victim = workers[0]["taskArn"]
    sb.stop_task(victim)  # AWS takes the capacity back
    wait_for(lambda: victim not in {t["taskArn"] for t in cluster_tasks(record)}, 20, "the reclaim")
    wait_for(lambda: len(cluster_tasks(record)) == 3, 30, "a replacement task")
    handle.client.wait_for_workers(2, timeout=60)
    stopped = ecs().describe_tasks(cluster=record.resources["ecs_cluster"], tasks=[victim])["tasks"][0]
    assert stopped["stopCode"] == "SpotInterruption"
    wait_for(lambda: victim not in registry.get("fg").resources["workers"], 20, "the record to forget it")
    assert len(registry.get("fg").resources["workers"]) == 2
    handle.down()


def test_a_keeper_started_before_the_scheduler_has_an_address_waits(monkeypatch):
    # The keeper starts while `up` still waits for the scheduler; it died asking `tcp://None` (TLS refused it).
    from dask_aws_magic.backends import keeper
    from dask_aws_magic.core import connection

    def never(*args, **kwargs):
        raise RuntimeError("encryption required by Dask configuration, refusing communication from/to 'tcp://None'")

    monkeypatch.setattr(connection, "identity", never)
    monkeypatch.setattr(connection, "security_of", lambda record: None)
    record = registry.ClusterRecord(name="fg", cluster_id="dam-0123456789ab", backend="fargate", profile="fg")
    assert keeper._workers(record) is None


def test_without_tls(sb):
    handle = dam.up("fg", overrides={"network.tls": False}, progress=False)
    assert handle.scheduler_address.startswith("tcp://")
    assert handle.client.submit(lambda: 2 * 21).result() == 42
    definition = ecs().describe_task_definition(
        taskDefinition=handle.record.resources["task_definitions"]["scheduler"])["taskDefinition"]
    assert [s["name"] for s in definition["containerDefinitions"][0]["secrets"]] == ["DASK_AWS_MAGIC_ENV"]
    handle.down()


def test_software_env_reaches_the_tasks_through_the_secret(sb):
    handle = dam.up("fg", overrides={"software.env": {"MY_SETTING": "blue"}}, wait_workers=1, progress=False)
    assert set(handle.client.run(lambda: os.environ.get("MY_SETTING")).values()) == {"blue"}
    for arn in handle.record.resources["task_definitions"].values():
        assert "blue" not in json.dumps(ecs().describe_task_definition(taskDefinition=arn))
    handle.down()


# -- failures ----------------------------------------------------------------------------------------
def test_image_that_cannot_be_pulled_fails_at_once(sb):
    started = time.monotonic()
    with pytest.raises(LaunchError, match=r"scheduler task .* stopped \(TaskFailedToStart; CannotPullContainerError"):
        dam.up("fg", overrides={"software.image": "example.com/nobody/nothing:1"}, progress=False)
    assert time.monotonic() - started < 30
    assert registry.get("fg") is None


def test_task_that_exits_at_start_fails_with_its_last_log_lines(sb):
    with pytest.raises(LaunchError) as caught:  # the sandbox's package index has no such package
        dam.up("fg", overrides={"software.pip": ["somepackage"]}, progress=False)
    message = str(caught.value)
    assert "EssentialContainerExited" in message and "exit code 1" in message
    assert "somepackage was not found" in message and "torn down" in message


def test_throttling_is_retried_by_botocore(sb):
    sb.inject_fault("ecs:RunTask", "ThrottlingException", message="Rate exceeded", status=400, times=2)
    sb.inject_fault("ecs:DescribeTasks", "ThrottlingException", message="Rate exceeded", status=400, times=2)
    handle = dam.up("fg", progress=False)
    assert sb.calls()["ecs:RunTask"] == 4  # two refused, then the scheduler and the workers
    handle.down()
    # A new execution role that ECS cannot assume yet (IAM is eventually consistent) is waited for.
    sb.inject_fault("ecs:RunTask", "ClientException", message="ECS was unable to assume the role "
                    "'arn:aws:iam::123456789012:role/x' that was provided for this task.", times=1)
    handle = dam.up("fg", progress=False)
    assert handle.client.submit(lambda: 1).result() == 1
    handle.down()


def test_refused_permission_is_explained_and_cleaned(sb):
    sb.inject_fault("iam:CreateRole", "AccessDenied", message="not authorized to perform: iam:CreateRole", times=None)
    # software.sync (on by default) makes a task role first; the error names both roles a profile can bring.
    with pytest.raises(LaunchError, match=r"lacks the `iam:CreateRole` permission.*`ecs\.task_role`.*"
                                          r"`software\.sync: false`.*`ecs\.execution_role`"):
        dam.up("fg", progress=False)
    with pytest.raises(LaunchError, match=r"lacks the `iam:CreateRole` permission.*`ecs\.execution_role`"):
        dam.up("fg", overrides={"software.sync": False}, progress=False)


def test_failure_after_launch_tears_everything_down(sb):
    sb.inject_fault("ecs:RegisterTaskDefinition", "ClientException", message="Too many revisions", times=None)
    with pytest.raises(DaskAwsMagicError, match="torn down"):
        dam.up("fg", progress=False)


def test_cancel_while_starting_and_timeout(sb):
    for stage in ("launch", "boot"):
        _, stages = cancel_at(lambda hear: lifecycle.start_up("fg", subscriber=hear), stage)
        assert "teardown" in stages
        assert not sb.resources(), f"left after a cancel at {stage}: {sb.resources()}"
    sb.boot_delay = 30.0  # tasks stay PENDING
    with pytest.raises(WaitTimeout, match="within 2 s"):
        dam.up("fg", timeout=2, progress=False)

    def interrupt(event):
        if event.stage == "boot":
            raise KeyboardInterrupt

    with pytest.raises(Interrupted, match="torn down"):
        lifecycle.up("fg", on_event=interrupt)


def test_idle_cluster_stops_itself(sb):
    handle = dam.up("fg", overrides={"lifecycle.idle_timeout": "3s"}, wait_workers=2, progress=False)
    record = handle.record
    handle.close()
    wait_for(lambda: not cluster_tasks(record), 60, "the tasks to stop themselves")
    assert [c.status for c in dam.list_clusters()] == ["dead"]
    dam.down("fg")


# -- ECS on EC2 --------------------------------------------------------------------------------------
def test_ecs_on_its_own_auto_scaling_group(sb):
    plan = dam.plan("ecs-test")
    instances = next(r for r in plan.resources if r.kind == "instance")
    assert instances.count == 2 and "m6i.large" in instances.detail and instances.hourly_cost > 0
    handle = dam.up("ecs-test", wait_workers=2, progress=False)
    assert handle.client.submit(sum, [2, 3]).result() == 5
    record = handle.record
    assert {t["launchType"] for t in cluster_tasks(record)} == {"EC2"}
    assert all(t.get("containerInstanceArn") for t in cluster_tasks(record))
    assert [(c.name, c.backend) for c in dam.list_clusters()] == [("ecs-test", "ecs")]  # not the ec2 backend's
    lines = handle.down()[0]
    assert "deleted auto scaling group" in lines and "terminated 2 container instance(s)" in lines
    assert "deleted launch template" in lines and "dam-" in lines


def test_ecs_on_an_existing_cluster_leaves_it_alone(sb, home):
    client = ecs()
    client.create_cluster(clusterName="team")
    ec2 = boto3.client("ec2")
    ami = boto3.client("ssm").get_parameter(
        Name="/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id")["Parameter"]["Value"]
    ids = [i["InstanceId"] for i in ec2.run_instances(
        ImageId=ami, InstanceType="m6i.xlarge", MinCount=1, MaxCount=1,
        UserData="#!/bin/bash\necho ECS_CLUSTER=team > /dev/null\n")["Instances"]]
    wait_for(lambda: client.list_container_instances(cluster="team")["containerInstanceArns"], 30, "registration")
    handle = dam.up("ecs-test", overrides={"ecs.cluster": "team"}, wait_workers=2, progress=False)
    assert handle.client.submit(sum, [1, 1]).result() == 2
    assert "security_groups" not in sb.resources()  # the instances' own groups apply
    handle.close()
    (home / "clusters" / "ecs-test.json").unlink()  # found again from its tags alone
    lines = dam.down(all=True)[0]
    assert "ecs-test: stopped 3 task(s)" in lines
    assert "deleted ECS cluster" not in lines and "auto scaling" not in lines
    assert client.describe_clusters(clusters=["team"])["clusters"][0]["status"] == "ACTIVE"
    ec2.terminate_instances(InstanceIds=ids)
    client.delete_cluster(cluster="team")
    wait_for(lambda: "instances" not in sb.resources(), 20, "the instance to end")


def test_max_lifetime_is_enforced_in_the_tasks(sb):
    handle = dam.up("fg", overrides={"lifecycle.max_lifetime": "4s"}, progress=False)
    record = handle.record
    handle.close()
    wait_for(lambda: not cluster_tasks(record), 60, "the tasks to end at max_lifetime")
    handle.down()


def test_efs_volume_at_data_created_and_removed(sb):
    handle = dam.up("fg", overrides={"ecs.efs": True}, progress=False)
    fs = handle.record.resources["efs"]
    efs = boto3.client("efs")
    assert efs.describe_mount_targets(FileSystemId=fs)["MountTargets"]
    definition = ecs().describe_task_definition(
        taskDefinition=handle.record.resources["task_definitions"]["worker"])["taskDefinition"]
    assert definition["volumes"][0]["efsVolumeConfiguration"]["fileSystemId"] == fs
    assert definition["containerDefinitions"][0]["mountPoints"] == [{"sourceVolume": "data", "containerPath": "/data"}]
    assert f"deleted EFS file system {fs}" in handle.down()[0]


def test_keep_logs_keeps_the_log_group_only(sb):
    handle = dam.up("fg", overrides={"ecs.keep_logs": True}, progress=False)
    group = handle.record.resources["log_group"]
    lines = handle.down()[0]
    assert "deleted log group" not in lines
    logs = boto3.client("logs")
    assert [g["logGroupName"] for g in logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]] == [group]
    assert list(sb.resources()) == ["log_groups"]
    logs.delete_log_group(logGroupName=group)


def test_ctrl_c_while_container_instances_boot_removes_them(sb):
    sb.boot_delay = 30.0  # the instances stay pending: they never join

    def interrupt(event):
        if "container instances" in event.message:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted, match="deleted auto scaling group"):
        lifecycle.up("ecs-test", on_event=interrupt)
