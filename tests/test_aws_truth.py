"""Issue 16 in the AWS sandbox with IAM enforced: what `list`, `status` and `down` say is true.
Item 11: a frozen scheduler is unreachable, never dead; 14: no Fargate ghost after `down`; 15: a
partly failed `down` names what was removed and what is left; 17: a dead cluster costs nothing;
18: a reclaimed EC2 Spot worker hands its data over at the notice and is replaced."""

from __future__ import annotations

import json
import os
import signal
import time

import boto3
import psutil
import pytest

import dask_aws_magic as dam
from dask_aws_magic.core import registry
from dask_aws_magic.core.errors import ClusterNotFound, ClusterUnreachable, DaskAwsMagicError
from dask_aws_magic.faces import render

from .conftest import EC2_PROFILE, FARGATE_PROFILE, aws_sandbox

pytestmark = pytest.mark.sandbox

EC2 = EC2_PROFILE


SPOT = EC2.replace("count: 1}", "count: 2, spot: true}")


@pytest.fixture
def sb(home):
    """The sandbox with IAM enforced, as a user with AdministratorAccess."""
    with aws_sandbox(home, {"t-ec2": EC2, "t-fg": FARGATE_PROFILE, "t-spot": SPOT}) as sandbox:
        yield sandbox


def live_instances(cluster_id: str) -> list[dict]:
    reply = boto3.client("ec2").describe_instances(Filters=[
        {"Name": "tag:dask-aws-magic:cluster-id", "Values": [cluster_id]},
        {"Name": "instance-state-name", "Values": ["pending", "running"]}])
    return [i for r in reply["Reservations"] for i in r["Instances"]]


def deny(user: str, *actions: str) -> None:
    boto3.client("iam").put_user_policy(UserName=f"sandbox-{user}", PolicyName="deny", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": list(actions), "Resource": "*"}]}))


def test_a_frozen_scheduler_instance_is_unreachable_and_scale_still_works_after(sb, home):
    """A scheduler frozen for 6 s while `status` ran was recorded dead, and stayed dead with its
    instances running and `scale` still working."""
    handle = dam.up("t-ec2", wait_workers=1, progress=False)
    handle.close()
    record = handle.record
    scheduler_group = sb.processes()[record.resources["scheduler"]]
    os.killpg(scheduler_group, signal.SIGSTOP)
    try:
        info = dam.status("t-ec2")
        assert info["status"] == "unreachable" and "ec2 shows it still runs" in info["note"]
        [listed] = dam.list_clusters()
        assert listed.status == "unreachable" and render.workers(listed) == "?/1" and listed.hourly_cost > 0
        with pytest.raises(ClusterUnreachable):
            dam.scale("t-ec2", 2)
        assert registry.read("t-ec2").status == "running"
    finally:
        os.killpg(scheduler_group, signal.SIGCONT)
    [listed] = dam.list_clusters()
    assert (listed.status, listed.reported_workers) == ("running", 1)
    assert dam.scale("t-ec2", 2).workers == 2
    assert len(live_instances(record.cluster_id)) == 3
    dam.down("t-ec2")


def test_a_cluster_whose_instances_are_gone_is_dead_and_costs_nothing(sb, home):
    handle = dam.up("t-ec2", progress=False)
    handle.close()
    ids = [i["InstanceId"] for i in live_instances(handle.record.cluster_id)]
    boto3.client("ec2").terminate_instances(InstanceIds=ids)  # AWS took them back, or someone did
    deadline = time.monotonic() + 30
    while (listed := dam.list_clusters())[0].status != "dead":
        assert time.monotonic() < deadline, listed
        time.sleep(0.5)
    assert listed[0].hourly_cost == 0 and render.workers(listed[0]) == "0"
    assert registry.read("t-ec2").status == "dead"  # the backend confirmed it: written
    assert dam.status("t-ec2")["status"] == "dead"
    lines = dam.down("t-ec2")
    assert "terminated" not in lines[0] and "deleted security group" in lines[0]  # only what was there


def test_after_a_fargate_down_nothing_is_listed_and_nothing_reported_deleted_again(sb, home):
    """The tagging API lists stopped tasks and INACTIVE clusters ("tagged or previously tagged"): after
    a successful `down`, `list` showed a dead ghost recovered from the tags, wrote a record each time,
    and `down` reported deleting what no longer existed."""
    handle = dam.up("t-fg", progress=False)
    handle.close()
    cluster_id = handle.record.cluster_id
    assert dam.down("t-fg")[0].startswith("t-fg: stopped 2 task(s)")
    tagged = boto3.client("resourcegroupstaggingapi").get_resources(
        TagFilters=[{"Key": "dask-aws-magic:cluster-id", "Values": [cluster_id]}])["ResourceTagMappingList"]
    assert any(":cluster/" in r["ResourceARN"] for r in tagged)  # what AWS still lists: the INACTIVE cluster
    for _ in range(2):
        assert dam.list_clusters(owner="*") == []
        assert not list((home / "clusters").glob("*.json"))
    assert dam.down(all=True) == []
    with pytest.raises(ClusterNotFound):
        dam.down("t-fg")


def test_a_stopped_worker_task_is_not_a_cluster(sb, home):
    """Tasks the tagging API still lists once they stopped make no cluster; a scheduler task that stopped
    makes its cluster dead, with what is left of it to remove."""
    handle = dam.up("t-fg", wait_workers=1, progress=False)
    handle.close()
    sb.stop_task(handle.record.resources["scheduler"], "Essential container exited", "EssentialContainerExited")
    deadline = time.monotonic() + 60
    while (listed := dam.list_clusters())[0].status != "dead":
        assert time.monotonic() < deadline, listed
        time.sleep(0.5)
    (home / "clusters" / "t-fg.json").unlink()
    [found] = dam.list_clusters()  # its ECS cluster, security group and task definitions are left
    assert (found.name, found.status) == ("t-fg", "dead")
    assert "deleted ECS cluster" in dam.down(all=True)[0]


def test_a_partly_failed_ec2_down_names_what_was_removed_and_what_is_left(sb, home):
    """IAM DeleteRole refused and DeleteSecret throttled: `down` said "Nothing was stopped" after it
    had terminated the instances."""
    handle = dam.up("t-ec2", progress=False)
    handle.close()
    record = handle.record
    deny("admin", "iam:DeleteRole")
    sb.inject_fault("secretsmanager:DeleteSecret", "ThrottlingException", "Rate exceeded", times=None)
    with pytest.raises(DaskAwsMagicError) as failed:
        dam.down("t-ec2")
    message = str(failed.value)
    assert "Nothing was stopped" not in message
    assert (f"t-ec2: removed: terminated 2 instance(s); deleted security group {record.resources['security_group']}; "
            "left: IAM roles and instance profiles ") in message
    roles = f"dask-aws-magic-{record.cluster_id}-scheduler, dask-aws-magic-{record.cluster_id}-worker"
    assert f"IAM roles and instance profiles {roles} (AWS refused while removing" in message, message
    assert "iam:DeleteRole" in message
    # the secrets (the manifest among them) stay while anything else is left: they prove it
    assert (f"secrets of {record.cluster_id} (the manifest among them) (not tried: the IAM roles and instance "
            f"profiles {roles} could not be removed first)") in message, message
    assert not live_instances(record.cluster_id)
    kept = registry.read("t-ec2")  # kept: something is left to remove
    assert "did not finish" in kept.note and "IAM role" in kept.note
    [listed] = dam.list_clusters()
    assert listed.status == "dead" and listed.hourly_cost == 0
    boto3.client("iam").delete_user_policy(UserName="sandbox-admin", PolicyName="deny")
    with pytest.raises(DaskAwsMagicError) as failed:  # the roles go; the secrets are throttled
        dam.down("t-ec2")
    message = str(failed.value)
    profile = f"deleted IAM role and instance profile dask-aws-magic-{record.cluster_id}"
    assert f"t-ec2: removed: {profile}-scheduler; {profile}-worker; left: secrets" in message
    assert "ThrottlingException" in message, message
    sb.clear_faults()
    assert dam.down("t-ec2") == ["t-ec2: deleted 3 secret(s)"]


def test_a_partly_failed_fargate_down_names_what_was_removed_and_what_is_left(sb, home):
    handle = dam.up("t-fg", progress=False)
    handle.close()
    deny("admin", "logs:DeleteLogGroup", "iam:DeleteRolePolicy")
    with pytest.raises(DaskAwsMagicError) as failed:
        dam.down("t-fg")
    message = str(failed.value)
    assert "t-fg: removed: stopped 2 task(s); deregistered 2 task definition(s); deleted ECS cluster" in message
    assert "left: log group /dask-aws-magic/t-fg-" in message
    assert "IAM roles dask-aws-magic-" in message and "Nothing was stopped" not in message
    assert "secrets of dam-" in message and "(not tried: the log group" in message  # the manifest stays
    boto3.client("iam").delete_user_policy(UserName="sandbox-admin", PolicyName="deny")
    lines = dam.down("t-fg")
    assert "deleted log group" in lines[0] and "deleted IAM role" in lines[0] and "deleted 2 secret(s)" in lines[0]
    assert "stopped" not in lines[0]


def _keepers() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline", "environ"])
            if "dask_aws_magic.backends.keeper" in " ".join(p.info["cmdline"] or [])
            and (p.info["environ"] or {}).get("DASK_AWS_MAGIC_TAG_HOME", "").startswith(str(registry.paths.home()))
            and p.status() != psutil.STATUS_ZOMBIE]


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)
    return value


def test_a_reclaimed_ec2_spot_worker_hands_over_its_data_and_is_replaced(sb, home):
    """A reclaimed EC2 worker was not replaced (Fargate Spot's are) and `list` still counted it."""
    handle = dam.up("t-spot", wait_workers=2, progress=False)
    try:
        record = registry.read("t-spot")
        assert all(info["spot"] for info in record.resources["workers"].values()) and len(_keepers()) == 1
        client = handle.client
        client.wait_for_workers(2, timeout=60)
        by_name = {info["name"]: address for address, info in client.scheduler_info(n_workers=-1)["workers"].items()}
        victim = sorted(record.resources["workers"])[0]
        [data] = client.scatter([list(range(1000))], workers=[by_name[victim]])  # only on the worker EC2 takes back
        sb.interrupt_spot(victim, notice=20.0)
        wait_for(lambda: victim not in {i["name"] for i in client.scheduler_info(n_workers=-1)["workers"].values()},
                 15, "the worker to retire at the notice")
        [instance] = boto3.client("ec2").describe_instances(InstanceIds=[victim])["Reservations"][0]["Instances"]
        assert instance["State"]["Name"] == "running"  # retired during the notice, before EC2 took it
        assert by_name[victim] not in client.who_has([data])[data.key]  # its data moved to the other worker
        [listed] = dam.list_clusters()
        assert listed.reported_workers == 1  # what runs, not what was asked for
        replaced = wait_for(lambda: (set(registry.read("t-spot").resources["workers"]) - {victim}) if
                            victim not in registry.read("t-spot").resources["workers"] and
                            len(registry.read("t-spot").resources["workers"]) == 2 else None, 90, "a replacement")
        reason = boto3.client("ec2").describe_instances(InstanceIds=[victim])["Reservations"][0]["Instances"][0]
        assert reason["StateReason"]["Code"] == "Server.SpotInstanceTermination"
        client.wait_for_workers(2, timeout=90)
        assert client.gather(data) == list(range(1000))  # never lost, never recomputed
        assert len(live_instances(record.cluster_id)) == 3 and len(replaced) == 2
        [listed] = dam.list_clusters()
        assert (listed.status, listed.reported_workers) == ("running", 2)
    finally:
        handle.down()
    wait_for(lambda: not _keepers(), 10, "the keeper to end with its cluster")
