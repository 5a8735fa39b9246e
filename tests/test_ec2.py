"""The EC2 backend end to end in the AWS sandbox (moto's server plus the instance emulator).

Every scenario ends with ``sb.resources()`` empty: nothing leaked on the emulated AWS.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time

import boto3
import pytest

import dask_aws_magic as dam
from dask_aws_magic.aws import secrets
from dask_aws_magic.backends.ec2 import userdata
from dask_aws_magic.core import lifecycle, registry
from dask_aws_magic.core.errors import (
    AwsError,
    DaskAwsMagicError,
    Interrupted,
    LaunchError,
    ProfileError,
    WaitTimeout,
)

from .conftest import assert_refuses_strangers, aws_sandbox, cancel_at, iam_user

pytestmark = pytest.mark.sandbox

PROFILE = """\
backend: ec2
region: us-east-1
scheduler: {type: t3.medium}
worker: {type: m6i.large, count: 2}
"""


@pytest.fixture
def sb(home):
    with aws_sandbox(home, {"ec2-test": PROFILE}) as sandbox:
        yield sandbox


def ec2():
    return boto3.client("ec2")


def instances(cluster_id):
    reply = ec2().describe_instances(Filters=[{"Name": "tag:dask-aws-magic:cluster-id", "Values": [cluster_id]}])
    return [i for r in reply["Reservations"] for i in r["Instances"] if i["State"]["Name"] != "terminated"]


def test_plan_creates_nothing_and_prices(sb):
    plan = dam.plan("ec2-test", ["worker.count=3", "worker.spot=true"])
    assert plan.workers == 3 and plan.threads_per_worker == 2  # m6i.large: 1 core, 2 threads per core
    kinds = {(r.kind, r.role): r for r in plan.resources}
    assert kinds[("instance", "worker")].count == 3
    assert kinds[("instance", "worker")].hourly_cost == pytest.approx(3 * 0.096)
    assert kinds[("instance", "worker")].spot_hourly_cost is not None
    assert "127.0.0.1/32" in kinds[("security-group", "network")].detail
    assert plan.hourly_cost > plan.spot_hourly_cost
    assert not sb.resources()
    assert not [c for c in sb.calls() if any(w in c for w in ("Create", "Run", "Authorize"))]


def test_up_compute_list_scale_logs_down(sb):
    events = []

    def watch(event):
        events.append((event.stage, registry.get("ec2-test")))

    sb.reset_calls()
    handle = dam.ClusterHandle(lifecycle.up("ec2-test", wait_workers=2, on_event=watch))
    handle.connect()
    calls = sb.calls()
    assert calls["ec2:RunInstances"] == 2  # one per role, whatever the number of workers
    # The record exists, with the instances, while up is still waiting.
    waiting = [rec for stage, rec in events if stage == "boot"]
    assert waiting and waiting[0] is not None and waiting[0].status == "starting"
    assert handle.scheduler_address.startswith("tls://127.")
    assert handle.client.submit(sum, [1, 2]).result() == 3

    cluster_id = handle.record.cluster_id
    found = instances(cluster_id)
    assert len(found) == 3
    for inst in found:
        tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
        assert tags["dask-aws-magic:cluster"] == "ec2-test" and tags["dask-aws-magic:cluster-id"] == cluster_id
    group = ec2().describe_security_groups(GroupIds=[handle.record.resources["security_group"]])["SecurityGroups"][0]
    cidrs = [r["CidrIp"] for p in group["IpPermissions"] for r in p.get("IpRanges", [])]
    assert cidrs == ["127.0.0.1/32"] and "0.0.0.0/0" not in json.dumps(group["IpPermissions"])
    assert {(p.get("FromPort"), p.get("ToPort")) for p in group["IpPermissions"] if p.get("IpRanges")} == {(8786, 8787)}

    # TLS: a client without a certificate of the cluster's CA is refused.
    assert_refuses_strangers(handle.scheduler_address)

    assert [c.name for c in dam.list_clusters()] == ["ec2-test"]
    status = dam.status("ec2-test")
    assert status["workers"] == 2 and status["cost"] == pytest.approx(0.0416 + 2 * 0.096 + 3 * secrets.HOURLY_COST)
    dam.scale("ec2-test", 3)
    handle.client.wait_for_workers(3, timeout=60)
    assert len(instances(cluster_id)) == 4
    dam.scale("ec2-test", 1)
    deadline = time.monotonic() + 30
    while len(handle.client.scheduler_info()["workers"]) > 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(handle.client.scheduler_info()["workers"]) == 1
    assert len(instances(cluster_id)) == 2

    logs = dam.logs("ec2-test")
    assert any(label.startswith("scheduler") and "starting the scheduler" in text for label, text in logs.items())

    sb.reset_calls()
    lines = handle.down()
    assert "terminated 2 instance(s)" in lines[0] and "deleted security group" in lines[0]
    assert "deleted 3 secret(s)" in lines[0] and "deleted IAM role and instance profile" in lines[0]
    # two instance roles, three secrets (the manifest) and one look at which of them exist (down names only those)
    assert sum(sb.calls().values()) <= 18, sb.calls()


def test_user_data_small_and_free_of_credentials(sb, home):
    handle = dam.up("ec2-test", progress=False)
    try:
        scheduler = handle.record.resources["scheduler"]
        raw = ec2().describe_instance_attribute(InstanceId=scheduler, Attribute="userData")["UserData"]["Value"]
        text = base64.b64decode(raw).decode()
        assert "-----BEGIN" not in text and "--tls-key" in text  # TLS on; the key comes from the secret
        assert len(text.encode()) < userdata.EC2_USER_DATA_LIMIT * 0.6
        mine = boto3.Session().get_credentials().get_frozen_credentials()  # the test's user's keys
        for where in (text, (home / "clusters" / "ec2-test.json").read_text(), sb.console_output(scheduler)):
            assert mine.secret_key not in where and "AWS_SECRET_ACCESS_KEY" not in where
            assert mine.access_key not in where
    finally:
        handle.down()


def test_found_by_tags_without_registry_and_attach_recovers_tls(sb, home):
    handle = dam.up("ec2-test", progress=False)
    handle.close()
    for path in (home / "clusters").glob("*.json"):
        path.unlink()  # another laptop: no registry at all
    found = dam.list_clusters()
    assert [c.name for c in found] == ["ec2-test"] and found[0].note.startswith("recovered")
    attached = dam.attach("ec2-test")  # the client's identity comes from the cluster's client secret
    assert attached.client.submit(lambda: 41 + 1).result() == 42
    attached.close()
    for path in (home / "clusters").glob("*.json"):
        path.unlink()
    assert "ec2-test" in dam.down(all=True)[0]


def test_cluster_without_tls_is_found_by_tags(sb, home):
    handle = dam.up("ec2-test", overrides={"network.tls": False}, progress=False)
    assert handle.scheduler_address.startswith("tcp://")
    handle.close()
    (home / "clusters" / "ec2-test.json").unlink()
    attached = dam.attach("ec2-test")
    assert attached.scheduler_address.startswith("tcp://")
    assert attached.client.submit(lambda: 1).result() == 1
    attached.down()


def test_spot_falls_back_to_on_demand(sb):
    sb.inject_fault("ec2:RunInstances", "InsufficientInstanceCapacity", times=None,
                    match={"InstanceMarketOptions.MarketType": "spot"})
    handle = dam.up("ec2-test", overrides={"worker.spot": True}, progress=False)
    try:
        workers = [i for i in instances(handle.record.cluster_id)
                   if i["InstanceId"] in handle.record.resources["workers"]]
        assert len(workers) == 2 and all(i.get("InstanceLifecycle") != "spot" for i in workers)
    finally:
        handle.down()


def test_capacity_error_moves_to_another_subnet(sb):
    sb.inject_fault("ec2:RunInstances", "InsufficientInstanceCapacity", times=1, match={"InstanceType": "m6i.large"})
    handle = dam.up("ec2-test", progress=False)
    try:
        workers = [i for i in instances(handle.record.cluster_id)
                   if i["InstanceId"] in handle.record.resources["workers"]]
        assert len(workers) == 2
    finally:
        handle.down()


def test_no_capacity_anywhere_fails_cleanly(sb):
    sb.inject_fault("ec2:RunInstances", "InsufficientInstanceCapacity", times=None, match={"InstanceType": "m6i.large"})
    with pytest.raises(AwsError, match="InsufficientInstanceCapacity.*another `instance.type`"):
        dam.up("ec2-test", progress=False)
    assert registry.get("ec2-test") is None


def test_throttling_is_retried(sb):
    sb.inject_fault("ec2:DescribeInstances", "RequestLimitExceeded", status=503, times=3)
    handle = dam.up("ec2-test", progress=False)
    handle.down()


@pytest.mark.parametrize(("code", "expected"), [
    ("UnauthorizedOperation", "lacks a permission"),
    ("AuthFailure", "credentials were rejected"),
    ("InstanceLimitExceeded", "instance limit is reached"),
])
def test_aws_refusals_explained_and_cleaned(sb, code, expected):
    sb.inject_fault("ec2:RunInstances", code, message="You are not authorized", times=None)
    with pytest.raises(AwsError, match=expected) as info:
        dam.up("ec2-test", progress=False)
    assert "Traceback" not in str(info.value) and "torn down" in str(info.value)


def test_bad_ami_and_bad_type(sb):
    with pytest.raises(AwsError, match="InvalidAMIID"):
        dam.up("ec2-test", overrides={"instance.ami": "ami-0000000000000dead"}, progress=False)
    with pytest.raises(ProfileError, match="instance type"):
        dam.up("ec2-test", overrides={"worker.type": "m99.gigantic"}, progress=False)


def test_missing_credentials(sb, monkeypatch, tmp_path):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(AwsError, match="No AWS credentials were found.*aws configure.*sandbox start"):
        dam.up("ec2-test", progress=False)


def test_failed_boot_fails_fast_with_console_output(sb):
    started = time.monotonic()
    with pytest.raises(LaunchError, match="installing the software failed") as info:  # software.pip, by sync
        dam.up("ec2-test", overrides={"software.pip": ["no-such-package-dam"],
                                      "software.env": {"PIP_NO_INDEX": "1"}}, progress=False)
    assert time.monotonic() - started < 60
    assert "console output" in str(info.value) and "torn down" in str(info.value)


def test_user_data_that_never_starts_a_scheduler_times_out_cleanly(sb):
    # With no usable PATH the script can neither run Python nor power off: the instance stays
    # up doing nothing, as a broken image would, until `up` gives up and removes it. How many
    # instances were running by then depends on the machine's load, so the count is not pinned:
    # the error must name the last state it saw, and nothing may be left.
    with pytest.raises(WaitTimeout, match="did not become ready within 8 s.*torn down") as info:
        dam.up("ec2-test", overrides={"software.env": {"PATH": "/nonexistent"}}, timeout=8, progress=False)
    assert re.search(r"last state: instances [0-3]/3 running", str(info.value)), info.value
    assert not sb.resources()


def test_instance_terminated_mid_boot(sb):
    sb.boot_delay = 3.0

    def kill_scheduler(event):
        record = registry.get("ec2-test")
        if event.stage == "boot" and record and record.resources.get("scheduler"):
            ec2().terminate_instances(InstanceIds=[record.resources["scheduler"]])

    started = time.monotonic()
    with pytest.raises(LaunchError, match="scheduler instance .* is (shutting-down|terminated)"):
        lifecycle.up("ec2-test", on_event=kill_scheduler)
    assert time.monotonic() - started < 30


def test_timeout_and_interrupt_tear_down(sb):
    sb.boot_delay = 30.0
    with pytest.raises(WaitTimeout, match="within 2 s"):
        dam.up("ec2-test", timeout=2, progress=False)
    assert not sb.resources()

    def interrupt(event):
        if event.stage == "boot":
            raise KeyboardInterrupt

    with pytest.raises(Interrupted, match="torn down"):
        lifecycle.up("ec2-test", on_event=interrupt)


def test_idle_cluster_terminates_itself(sb):
    handle = dam.up("ec2-test", overrides={"lifecycle.idle_timeout": "3s"}, wait_workers=2, progress=False)
    cluster_id = handle.record.cluster_id
    handle.close()  # no client, no tasks: after 3 s the scheduler stops, the workers follow, all power off
    deadline = time.monotonic() + 60
    while instances(cluster_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not instances(cluster_id), "instances did not terminate themselves"
    assert [c.status for c in dam.list_clusters()] == ["dead"]
    dam.down("ec2-test")  # removes the security group


def test_max_lifetime_is_enforced_on_the_instances(sb):
    # Long enough for `up` to see the scheduler (software sync checks the image first), short for the test.
    handle = dam.up("ec2-test", overrides={"lifecycle.max_lifetime": "12s"}, progress=False)
    cluster_id = handle.record.cluster_id
    deadline = time.monotonic() + 60
    while instances(cluster_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not instances(cluster_id)
    handle.down()


def test_vpc_without_subnet_and_subnet_without_public_ip(sb):
    vpc = ec2().describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    handle = dam.up("ec2-test", overrides={"instance.vpc_id": vpc}, progress=False)
    handle.down()

    # A subnet that gives no public address: one is asked for explicitly, so the laptop reaches it.
    private = ec2().create_subnet(VpcId=vpc, CidrBlock="172.31.250.0/24")["Subnet"]["SubnetId"]
    try:
        sb.reset_calls()
        handle = dam.up("ec2-test", overrides={"instance.subnet_id": private}, progress=False)
        for call in sb.requests("ec2:RunInstances"):
            assert call["NetworkInterface.1.AssociatePublicIpAddress"] == "true"
            assert call["NetworkInterface.1.SubnetId"] == private and "SubnetId" not in call
        assert all(i.get("PublicIpAddress") for i in instances(handle.record.cluster_id))
        handle.down()
        # From inside the VPC (private addresses), none is asked for.
        sb.reset_calls()
        handle = dam.up("ec2-test", overrides={"instance.subnet_id": private, "network.use_private_ip": True},
                        progress=False)
        assert all(c["SubnetId"] == private and "NetworkInterface.1.SubnetId" not in c
                   for c in sb.requests("ec2:RunInstances"))
        handle.down()
    finally:
        ec2().delete_subnet(SubnetId=private)


def launches(sb):
    """(market, zone) of every RunInstances call, in order."""
    zone_of = {s["SubnetId"]: s["AvailabilityZone"] for s in ec2().describe_subnets()["Subnets"]}
    return [(c.get("InstanceMarketOptions.MarketType", "on-demand"),
             zone_of[c.get("SubnetId") or c.get("NetworkInterface.1.SubnetId")])
            for c in sb.requests("ec2:RunInstances")]


def test_workers_follow_their_scheduler_and_try_spot_in_every_allowed_zone_first(sb):
    sb.inject_fault("ec2:RunInstances", "InsufficientInstanceCapacity", times=None,
                    match={"InstanceMarketOptions.MarketType": "spot"})
    sb.reset_calls()
    zones = ["us-east-1b", "us-east-1c"]
    handle = dam.up("ec2-test", overrides={"worker.spot": True, "instance.zones": zones}, progress=False)
    try:
        assert launches(sb) == [("on-demand", "us-east-1b"),  # the scheduler, never spot
                                ("spot", "us-east-1b"), ("spot", "us-east-1c"), ("on-demand", "us-east-1b")]
        assert {i["Placement"]["AvailabilityZone"] for i in instances(handle.record.cluster_id)} == {"us-east-1b"}
    finally:
        handle.down()


def test_capacity_fallback_stays_in_the_pinned_subnets_zone(sb):
    pinned = ec2().describe_subnets(Filters=[{"Name": "availability-zone", "Values": ["us-east-1d"]}])["Subnets"][0]
    sb.inject_fault("ec2:RunInstances", "InsufficientInstanceCapacity", times=None, match={"InstanceType": "m6i.large"})
    sb.reset_calls()
    with pytest.raises(AwsError, match="zones us-east-1d: InsufficientInstanceCapacity.*instance.zones.*torn down"):
        dam.up("ec2-test", overrides={"instance.subnet_id": pinned["SubnetId"]}, progress=False)
    assert {zone for _, zone in launches(sb)} == {"us-east-1d"}
    sb.clear_faults()
    sb.inject_fault("ec2:RunInstances", "InsufficientInstanceCapacity", times=1, match={"InstanceType": "m6i.large"})
    handle = dam.up("ec2-test", overrides={"instance.subnet_id": pinned["SubnetId"],
                                           "instance.zones": ["us-east-1d", "us-east-1e"]}, progress=False)
    try:  # allowed another zone: the workers moved there
        workers = [i for i in instances(handle.record.cluster_id)
                   if i["InstanceId"] in handle.record.resources["workers"]]
        assert {i["Placement"]["AvailabilityZone"] for i in workers} == {"us-east-1e"}
    finally:
        handle.down()


def test_root_volume_uses_the_images_root_device(sb):
    ubuntu = "ami-1e749f67"  # an Ubuntu image: its root device is /dev/sda1, not Amazon Linux's /dev/xvda
    assert ec2().describe_images(ImageIds=[ubuntu])["Images"][0]["RootDeviceName"] == "/dev/sda1"
    sb.reset_calls()
    plan = dam.plan("ec2-test", ["instance.root_volume_gb=40", f"worker.ami={ubuntu}"])
    assert plan.settings["root_devices"] == {"scheduler": "/dev/xvda", "worker": "/dev/sda1"}
    handle = dam.up("ec2-test", overrides={"instance.root_volume_gb": 40, "worker.ami": ubuntu}, progress=False)
    try:
        devices = {c["ImageId"]: (c["BlockDeviceMapping.1.DeviceName"], c["BlockDeviceMapping.1.Ebs.VolumeSize"])
                   for c in sb.requests("ec2:RunInstances")}
        assert devices[ubuntu] == ("/dev/sda1", "40") and ("/dev/xvda", "40") in devices.values()
    finally:
        handle.down()


def test_plan_prices_the_scheduler_on_demand_and_spot_now(sb):
    sb.reset_calls()
    plan = dam.plan("ec2-test", ["worker.count=3", "worker.spot=true"])
    kinds = {(r.kind, r.role): r for r in plan.resources}
    scheduler, workers = kinds[("instance", "scheduler")], kinds[("instance", "worker")]
    assert scheduler.spot_hourly_cost is None  # the scheduler never runs on spot
    assert workers.spot_hourly_cost == pytest.approx(3 * round(0.096 / 3, 4))  # today's price, not history's
    assert plan.spot_hourly_cost == pytest.approx(0.0416 + 3 * round(0.096 / 3, 4) + 3 * secrets.HOURLY_COST)
    (asked,) = sb.requests("ec2:DescribeSpotPriceHistory")
    started = time.mktime(time.strptime(asked["StartTime"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert abs(started - time.time()) < 120

    sb.set_spot_price("m6i.large", 0.0)  # a zero price is no price
    plan = dam.plan("ec2-test", ["worker.spot=true"])
    workers = next(r for r in plan.resources if r.role == "worker")
    assert workers.spot_hourly_cost is None and any("no spot price known for m6i.large" in n for n in plan.notes)


def test_plan_without_any_aws_set_up_says_what_is_missing(home, monkeypatch, tmp_path):
    (home / "profiles").mkdir(parents=True)
    (home / "profiles" / "nowhere.yaml").write_text("backend: ec2\nworker: {count: 2}\n")
    for var in [v for v in os.environ if v.startswith("AWS_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setattr("dask_aws_magic.aws.session._on_ec2", lambda: False)
    with pytest.raises(AwsError) as info:
        dam.plan("nowhere")
    text = str(info.value)
    assert "No AWS region and no AWS credentials were found" in text and "region:" in text
    assert "aws configure" in text and "%dask_cluster sandbox start" in text
    assert "\n" not in text and "Traceback" not in text


def test_backend_defaults():
    from dask_aws_magic.backends.ec2 import EC2Backend

    assert EC2Backend.defaults.boot_time == 180.0


def test_cluster_of_another_aws_profile_is_found_and_never_marked_dead(sb, home):
    iam_user(sb, "work", "AdministratorAccess", region="us-west-2", account=None)  # an account the default cannot see
    (home / "profiles" / "work.yaml").write_text("backend: ec2\nregion: us-west-2\naws_profile: work\n"
                                                  "worker: {count: 1}\n")
    handle = dam.up("work", progress=False)
    handle.close()
    assert handle.record.settings["region"] == "us-west-2" and handle.record.settings["aws_profile"] == "work"
    assert not boto3.client("ec2", region_name="us-west-2").describe_instances()["Reservations"]
    assert [(c.name, c.status) for c in dam.list_clusters()] == [("work", "running")]
    for path in (home / "clusters").glob("*.json"):
        path.unlink()  # no record: found from the profile's scope
    found = dam.list_clusters()
    assert [(c.name, c.status) for c in found] == [("work", "running")]
    from dask_aws_magic.backends import get_backend

    assert get_backend("ec2").scope(found[0]) == "us-west-2 (profile work)"
    role = f"dask-aws-magic-{found[0].cluster_id}"
    assert dam.down(all=True) == ["work: terminated 2 instance(s); deleted security group "
                                  f"{found[0].resources['security_group']}; deleted IAM role and instance profile "
                                  f"{role}-scheduler; deleted IAM role and instance profile {role}-worker; "
                                  "deleted 3 secret(s)"]


def test_a_scope_that_cannot_be_listed_is_reported_never_hidden(sb, home):
    iam_user(sb, "eu", "AdministratorAccess", region="eu-west-1", account=None)
    (home / "profiles" / "eu.yaml").write_text("backend: ec2\nregion: eu-west-1\naws_profile: eu\nworker: {count: 1}\n")
    handle = dam.up("eu", progress=False)
    handle.close()
    from dask_aws_magic.aws.scopes import LIST_ATTEMPTS
    from dask_aws_magic.backends import get_backend

    # Throttled past the retries a listing allows: reported, never raised.
    sb.inject_fault("ec2:DescribeInstances", "RequestLimitExceeded", times=LIST_ATTEMPTS, region="eu-west-1",
                    status=503)
    answer = get_backend("ec2").discover()
    assert answer.searched == ["us-east-1"] and len(answer.failed) == 1
    assert all(w in answer.failed[0] for w in ("ec2", "eu-west-1", "'eu'", "RequestLimitExceeded", "throttling"))
    # No Describe permission there: the face says what it could not see, and the cluster is unknown.
    sb.inject_fault("ec2:DescribeInstances", "UnauthorizedOperation", times=None, region="eu-west-1", status=403)
    with pytest.warns(UserWarning, match="eu-west-1.*'eu'.*UnauthorizedOperation"):
        listed = dam.list_clusters()
    assert [(c.name, c.status) for c in listed] == [("eu", "unknown")]  # neither dead nor running
    with pytest.raises(DaskAwsMagicError, match="eu-west-1"):
        dam.down(all=True)
    sb.clear_faults()
    assert registry.get("eu") is not None
    dam.down("eu")


def test_down_terminates_recorded_and_tagged_instances(sb, home):
    handle = dam.up("ec2-test", progress=False)
    handle.close()
    record = registry.get("ec2-test")
    workers = list(record.resources["workers"])
    # One worker no longer answers to the tag query (as just after a launch), one is not in the record
    # (a scale cut short): both go.
    ec2().delete_tags(Resources=[workers[0]], Tags=[{"Key": "dask-aws-magic:cluster-id"}])
    registry.update("ec2-test", lambda r: r.resources["workers"].pop(workers[1]))
    assert "terminated 3 instance(s)" in dam.down("ec2-test")[0]
    assert not instances(record.cluster_id)


@pytest.mark.parametrize("stage", ["plan", "launch", "boot", "connect", "workers"])
def test_cancel_up_at_every_stage_from_another_thread(sb, stage):
    sb.boot_delay = 2.0
    _, stages = cancel_at(lambda hold: lifecycle.start_up("ec2-test", wait_workers=2, subscriber=hold), stage)
    assert stages[stages.index(stage) + 1] == "teardown" and stages[-1] == "cancelled"
    assert registry.get("ec2-test") is None
    assert not sb.resources()  # the fixture checks again, after any stray launch could land


def test_cancel_during_the_run_instances_call(sb):
    sb.delay("ec2:RunInstances", 3.0, times=1)  # AWS is slow to answer the scheduler's launch
    operation = lifecycle.start_up("ec2-test")
    deadline = time.monotonic() + 30
    while not sb.calls().get("ec2:RunInstances"):  # counted as it arrives, before the sandbox holds it
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.5)  # inside the held RunInstances call (held 3 s)
    assert operation.cancel()
    with pytest.raises(Interrupted, match="torn down"):
        operation.result(timeout=120)
    stages = [e.stage for e in operation.events_since(0)]
    assert "boot" not in stages and stages[-2:] == ["teardown", "cancelled"]
    assert sb.calls()["ec2:RunInstances"] == 1  # the workers were never launched
    assert registry.get("ec2-test") is None and not sb.resources()


def test_another_owners_cluster_is_listed_apart_and_left_alone_by_down_all(sb, home, monkeypatch):
    iam = boto3.client("iam")
    iam.create_user(UserName="bob")
    iam.attach_user_policy(UserName="bob", PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
    key = iam.create_access_key(UserName="bob")["AccessKey"]
    mine = dam.up("ec2-test", name="mine", progress=False)
    mine.close()
    me = mine.record.owner
    with monkeypatch.context() as bob:  # bob starts a cluster in the same account, from his machine
        bob.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        bob.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        bobs = dam.up("ec2-test", name="bobs", progress=False)
        bobs.close()
    assert bobs.record.owner.endswith(":user/bob") and me != bobs.record.owner
    (home / "clusters" / "bobs.json").unlink()  # his registry is on his machine
    tags = {t["Key"]: t["Value"] for t in instances(bobs.record.cluster_id)[0]["Tags"]}
    assert tags["dask-aws-magic:owner"] == bobs.record.owner

    assert [c.name for c in dam.list_clusters()] == ["mine"]
    from dask_aws_magic.core import inventory

    assert inventory.survey().others == {bobs.record.owner: 1}
    assert [line.split(":")[0] for line in dam.down(all=True)] == ["mine"]
    assert instances(bobs.record.cluster_id), "down --all touched another owner's cluster"
    assert not instances(mine.record.cluster_id)
    from dask_aws_magic.core.errors import ForeignCluster

    with pytest.raises(ForeignCluster, match="belongs to .*user/bob"):
        dam.down("bobs")
    dam.down("bobs", owner=bobs.record.owner)
    assert not instances(bobs.record.cluster_id)
    iam.delete_access_key(UserName="bob", AccessKeyId=key["AccessKeyId"])  # the test's own user
    iam.detach_user_policy(UserName="bob", PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
    iam.delete_user(UserName="bob")


def test_up_returns_when_the_scheduler_answers_and_says_how_many_workers_joined(sb):
    sb.boot_delay = 1.0
    events = []
    record = lifecycle.up("ec2-test", on_event=events.append)
    last = events[-1]
    assert last.stage == "ready" and record.scheduler_address in last.message
    assert re.search(r"[0-2] of 2 workers joined, the rest are booting .*wait_for_workers\(2\)|2 worker\(s\) joined",
                     last.message), last.message
    dam.down("ec2-test")
