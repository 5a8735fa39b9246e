"""Issue 16: tags are claims, not proof. Replayed in the AWS sandbox with IAM enforced: the victim works
with its own identity; an intruder in the same account has ReadOnlyAccess plus ``ec2:CreateTags``
and puts our tags on things. Nothing the intruder tags is listed as the victim's, written to its
registry, stopped, deleted or proxied; owner tags it flips change nothing; a worker cannot read the
scheduler's key. Every test ends with nothing left on the emulated AWS."""

from __future__ import annotations

import json
import secrets as random

import boto3
import pytest

import dask_aws_magic as dam
from dask_aws_magic.aws import manifest, secrets
from dask_aws_magic.aws.tags import TAG_CLUSTER, TAG_CLUSTER_ID, TAG_OWNER, TAG_PROTOCOL, TAG_ROLE
from dask_aws_magic.core import inventory, registry
from dask_aws_magic.core.errors import ClusterNotFound, DaskAwsMagicError
from dask_aws_magic.faces import render

from .conftest import EC2_PROFILE, FARGATE_PROFILE, assert_refused, aws_sandbox, instance_credentials, sandbox_identity

pytestmark = pytest.mark.sandbox

PROFILE = EC2_PROFILE
# An instance someone controls: its "dashboard" is a page that tries the Jupyter API of whoever shows it.
FORGED_DASHBOARD = """#!/bin/bash
IMDS="${AWS_EC2_METADATA_SERVICE_ENDPOINT:-http://169.254.169.254/}"
TOKEN=$(curl -sf -X PUT "${IMDS}latest/api/token" -H "X-aws-ec2-metadata-token-ttl-seconds: 60")
IP=$(curl -sf -H "X-aws-ec2-metadata-token: $TOKEN" "${IMDS}latest/meta-data/local-ipv4")
W="${SANDBOX_INSTANCE_ROOT:-}/www"; mkdir -p "$W/status"
echo '<html><title>Dask</title><script>fetch("/api/contents")</script></html>' > "$W/status/index.html"
cd "$W" && exec python3 -m http.server 8787 --bind "$IP"
"""


@pytest.fixture
def sb(home, monkeypatch):
    """The sandbox, IAM enforced, and identities of one account: the victim (who runs the tool), the
    intruder (ReadOnlyAccess + ec2:CreateTags), someone who runs instances of their own, and a writer
    who may write any secret (SecretsManagerReadWrite)."""
    with aws_sandbox(home, {"prod": PROFILE, "fg": FARGATE_PROFILE}) as sandbox:
        sandbox.victim = sandbox_identity(sandbox, "victim", "AdministratorAccess")
        sandbox.intruder = sandbox_identity(sandbox, "intruder", "ReadOnlyAccess", allow=["ec2:CreateTags"])
        sandbox.someone = sandbox_identity(sandbox, "someone", "AdministratorAccess")
        sandbox.writer = sandbox_identity(sandbox, "writer", "SecretsManagerReadWrite")  # may write any secret
        with monkeypatch.context() as env, sandbox.enforce_iam():
            _run_as(env, "victim")
            sandbox.victim_arn = sandbox.victim.client("sts").get_caller_identity()["Arn"]
            yield sandbox
            _remove_instances_of_someone(sandbox)


def _run_as(env, profile: str) -> None:
    """Make the tool run with the credentials profile ``profile`` (the sandbox's default keys would win)."""
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        env.delenv(variable, raising=False)
    env.setenv("AWS_PROFILE", profile)


def _someones_instance(sb, user_data: str = "#!/bin/bash\nsleep 600\n") -> str:
    """An instance of someone else's, running ``user_data``."""
    ec2 = sb.someone.client("ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    return ec2.run_instances(ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1,
                             UserData=user_data)["Instances"][0]["InstanceId"]


def _someones_group(sb) -> str:
    ec2 = sb.someone.client("ec2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    return ec2.create_security_group(GroupName=f"team-{random.token_hex(3)}", Description="theirs",
                                     VpcId=vpc)["GroupId"]


def _remove_instances_of_someone(sb) -> None:
    ec2 = sb.someone.client("ec2")
    reply = ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}])
    ids = [i["InstanceId"] for r in reply["Reservations"] for i in r["Instances"]]
    if ids:
        ec2.terminate_instances(InstanceIds=ids)
        ec2.get_waiter("instance_terminated").wait(InstanceIds=ids, WaiterConfig={"Delay": 0.2})
    for group in ec2.describe_security_groups()["SecurityGroups"]:
        if group["GroupName"].startswith("team-"):
            ec2.delete_security_group(GroupId=group["GroupId"])


def _tag(sb, resources: list[str], **tags: str) -> None:
    """The intruder writes tags: the one thing it may do besides reading."""
    sb.intruder.client("ec2").create_tags(Resources=resources, Tags=[{"Key": k, "Value": v} for k, v in tags.items()])


def _state(sb, instance_id: str) -> str:
    reply = sb.someone.client("ec2").describe_instances(InstanceIds=[instance_id])
    return reply["Reservations"][0]["Instances"][0]["State"]["Name"]


def _group_exists(sb, group: str) -> bool:
    groups = sb.someone.client("ec2").describe_security_groups()["SecurityGroups"]
    return group in {g["GroupId"] for g in groups}


def test_1_a_forged_cluster_is_listed_unverified_never_recorded_connected_or_proxied(sb, home):
    forged = _someones_instance(sb, FORGED_DASHBOARD)
    claimed = f"dam-{random.token_hex(6)}"
    _tag(sb, [forged], **{TAG_CLUSTER: "prod", TAG_CLUSTER_ID: claimed, TAG_ROLE: "scheduler",
                          TAG_PROTOCOL: "tcp", TAG_OWNER: sb.victim_arn, "dask-aws-magic:backend": "ec2"})

    # What an older version wrote when it believed the tags: a record rebuilt from them.
    registry.write(registry.ClusterRecord(name="prod", cluster_id=claimed, backend="ec2", profile=registry.RECOVERED,
                                          status="running", dashboard_link="http://127.0.0.1:8787/status",
                                          resources={"region": "us-east-1", "scheduler": forged}))

    found = inventory.survey()
    assert found.clusters == [] and found.others == {}
    [entry] = found.unverified
    assert entry.resources == [forged] and entry.cluster_id == claimed and entry.owner == sb.victim_arn
    assert "no manifest" in entry.reason, entry.reason
    shown = render.survey(found)
    assert "Unverified" in shown and forged in shown and "down --unverified" in shown
    assert not list((home / "clusters").glob("*.json"))  # nothing written to the registry, the old belief gone
    for act in (lambda: dam.attach("prod"), lambda: dam.status("prod"), lambda: inventory.find("prod")):
        with pytest.raises(ClusterNotFound, match="unverified"):
            act()
    # The proxy serves only what `find` proves (its 404 is tested with a real server in test_serverext).
    assert dam.list_clusters(owner="*") == []
    # A namesake that is only claimed does not stop the victim from starting the real one.
    handle = dam.up("prod", progress=False)
    assert handle.record.cluster_id != claimed and handle.client.submit(lambda: 1).result() == 1
    assert [c.cluster_id for c in dam.list_clusters()] == [handle.record.cluster_id]
    handle.down()


def test_2_down_all_and_down_name_leave_what_others_tagged(sb, home):
    handle = dam.up("prod", progress=False)
    handle.close()
    real = handle.record
    # A made-up cluster of the victim's: someone's instance and group.
    made_up = f"dam-{random.token_hex(6)}"
    lure, group = _someones_instance(sb), _someones_group(sb)
    _tag(sb, [lure, group], **{TAG_CLUSTER: "old", TAG_CLUSTER_ID: made_up, TAG_OWNER: sb.victim_arn})
    # The real cluster's id on another instance of someone's, as a worker and as its scheduler.
    stowaway, impostor = _someones_instance(sb), _someones_instance(sb)
    _tag(sb, [stowaway], **{TAG_CLUSTER: "prod", TAG_CLUSTER_ID: real.cluster_id, TAG_ROLE: "worker",
                            TAG_OWNER: sb.victim_arn})
    _tag(sb, [impostor], **{TAG_CLUSTER: "prod", TAG_CLUSTER_ID: real.cluster_id, TAG_ROLE: "scheduler",
                            TAG_OWNER: sb.victim_arn})
    dam.scale("prod", 0)  # retires the proven worker only
    assert _state(sb, stowaway) == "running"

    for path in (home / "clusters").glob("*.json"):
        path.unlink()  # another machine: what the tags claim is all there is to go on
    found = inventory.survey()
    [cluster] = found.clusters
    assert cluster.cluster_id == real.cluster_id and cluster.owner == sb.victim_arn
    assert cluster.scheduler_address == real.scheduler_address  # the proven scheduler, not the impostor
    assert cluster.resources["workers"] == {}  # the stowaway tagged as a worker is none of its own
    unverified = {tuple(sorted(u.resources)): u for u in found.unverified}
    assert unverified.keys() == {tuple(sorted([lure, group])), tuple(sorted([stowaway, impostor]))}
    assert "does not list them" in unverified[tuple(sorted([stowaway, impostor]))].reason

    lines = dam.down(all=True)
    assert [line.split(":")[0] for line in lines] == ["prod"]
    assert f"left instance {impostor}, instance {stowaway}" in lines[0] or \
        f"left instance {stowaway}, instance {impostor}" in lines[0], lines
    assert "down --unverified" in lines[0]
    for instance in (lure, stowaway, impostor):
        assert _state(sb, instance) == "running"
    assert _group_exists(sb, group)
    with pytest.raises(ClusterNotFound, match="unverified"):
        dam.down("old")  # a made-up cluster: nothing proves it; `down NAME` does nothing
    assert _state(sb, lure) == "running"

    # Named one by one, knowingly: removed, with a warning.
    with pytest.raises(DaskAwsMagicError, match="not among the unverified"):
        dam.down(unverified=["i-0123456789abcdef0"])
    removed = dam.down(unverified=[lure, group])
    assert removed[0].startswith("warning:") and f"terminated instance {lure}" in removed
    assert not _group_exists(sb, group) and _state(sb, stowaway) == "running"


def test_3_flipped_owner_tags_change_nothing(sb, home, tmp_path, monkeypatch):
    handle = dam.up("prod", progress=False)
    handle.close()
    real = handle.record
    ec2 = sb.victim.client("ec2")
    tagged = [i["InstanceId"] for r in ec2.describe_instances(Filters=[
        {"Name": f"tag:{TAG_CLUSTER_ID}", "Values": [real.cluster_id]}])["Reservations"] for i in r["Instances"]]
    intruder_arn = sb.intruder.client("sts").get_caller_identity()["Arn"]
    _tag(sb, [*tagged, real.resources["security_group"]], **{TAG_OWNER: intruder_arn})
    [worker] = real.resources["workers"]
    _tag(sb, [worker], **{TAG_CLUSTER_ID: f"dam-{random.token_hex(6)}"})  # and moves a worker elsewhere

    # The intruder's view: it cannot read the manifest, so the cluster is not its own.
    with monkeypatch.context() as env:
        _run_as(env, "intruder")
        env.setenv("DASK_AWS_MAGIC_HOME", str(tmp_path / "intruder"))
        theirs = inventory.survey()
        assert theirs.clusters == [] and {u.cluster_id for u in theirs.unverified} == {real.cluster_id}
        assert "cannot be read with your credentials" in theirs.unverified[0].reason
        assert dam.down(all=True) == []
        with pytest.raises(ClusterNotFound, match="unverified"):
            dam.down("prod", owner=intruder_arn)
    # Nor can it rewrite the manifest: its own policies refuse, and so does the secret's resource policy.
    sm = sb.intruder.client("secretsmanager")
    assert_refused(sm.put_secret_value, SecretId=real.resources["client_secret"], SecretString="{}")

    # The victim on a second machine (a fresh home, no record): its cluster, whatever the owner tags say.
    with monkeypatch.context() as env:
        env.setenv("DASK_AWS_MAGIC_HOME", str(tmp_path / "laptop"))
        found = inventory.survey()
        assert [(c.name, c.owner) for c in found.clusters] == [("prod", sb.victim_arn)]
        assert list(found.clusters[0].resources["workers"]) == [worker]  # by its ClientToken, not its tag
        assert found.others == {} and found.unverified == []
        assert "prod: terminated 2 instance(s)" in dam.down(all=True)[0]
    reply = ec2.describe_instances(InstanceIds=tagged)["Reservations"]
    assert {i["State"]["Name"] for r in reply for i in r["Instances"]} == {"terminated"}
    registry.remove("prod")  # the first machine's record of what is gone


def test_a_fargate_cluster_is_proven_by_its_manifest_too(sb, home, tmp_path, monkeypatch):
    handle = dam.up("fg", progress=False)
    handle.close()
    real = handle.record
    intruder_arn = sb.intruder.client("sts").get_caller_identity()["Arn"]
    group = _someones_group(sb)  # what ec2:CreateTags reaches of an ECS cluster: security groups
    _tag(sb, [group], **{TAG_CLUSTER: "fg", TAG_CLUSTER_ID: real.cluster_id, TAG_OWNER: sb.victim_arn,
                         "dask-aws-magic:backend": "fargate"})
    _tag(sb, [real.resources["security_group"]], **{TAG_OWNER: intruder_arn})
    with monkeypatch.context() as env:
        env.setenv("DASK_AWS_MAGIC_HOME", str(tmp_path / "laptop"))  # a second machine
        found = inventory.survey()
        [cluster] = found.clusters
        assert (cluster.name, cluster.owner, cluster.backend) == ("fg", sb.victim_arn, "fargate")
        assert cluster.scheduler_address == real.scheduler_address
        assert [u.resources for u in found.unverified] == [[group]]
        lines = dam.down(all=True)
        assert lines[0].startswith("fg: stopped 2 task(s)") and f"left {group}" in lines[0], lines
    assert _group_exists(sb, group)
    registry.remove("fg")


def test_the_manifest_is_written_by_its_owner_alone(sb, home):
    handle = dam.up("prod", progress=False)
    try:
        arn = handle.record.resources["client_secret"]
        sm = sb.writer.client("secretsmanager")  # may write any secret...
        stored = json.loads(sm.get_secret_value(SecretId=arn)["SecretString"])
        assert stored["manifest"]["owner"] == sb.victim_arn
        assert_refused(sm.put_secret_value, SecretId=arn, SecretString="{}")  # ...but not this one
        assert_refused(sm.delete_resource_policy, SecretId=arn)
        assert_refused(sm.put_resource_policy, SecretId=arn, ResourcePolicy="{}")
        policy = json.loads(sb.victim.client("secretsmanager").get_resource_policy(SecretId=arn)["ResourcePolicy"])
        assert policy == manifest.policy(sb.victim_arn)
        proof = manifest.read(sb.victim.client("secretsmanager"), handle.record.cluster_id).manifest
        assert proof.names["security-group"] == [f"dask-aws-magic-prod-{handle.record.cluster_id}"]
        assert len(proof.tokens) == 2 and proof.ids["scheduler"] == [handle.record.resources["scheduler"]]
    finally:
        handle.down()


def test_7_a_worker_cannot_read_the_schedulers_key(sb, home, monkeypatch):
    handle = dam.up("prod", progress=False)
    try:
        resources = handle.record.resources
        [worker] = resources["workers"]
        creds = instance_credentials(sb, worker, monkeypatch)
        as_worker = boto3.Session(aws_access_key_id=creds["AccessKeyId"], aws_session_token=creds["Token"],
                                  aws_secret_access_key=creds["SecretAccessKey"]).client("secretsmanager")
        own = secrets.read_secret(as_worker, resources["node_secrets"]["worker"])
        assert own["worker_key"].startswith("-----BEGIN") and "scheduler_key" not in own
        assert_refused(as_worker.get_secret_value, SecretId=resources["node_secrets"]["scheduler"])
        assert_refused(as_worker.get_secret_value, SecretId=resources["client_secret"])
        for secret in (*resources["node_secrets"].values(), resources["client_secret"]):
            assert_refused(sb.intruder.client("secretsmanager").get_secret_value, SecretId=secret)
        assert handle.client.submit(lambda: 6 * 7).result() == 42  # each node still has what it needs
    finally:
        handle.down()


def test_an_up_that_fails_while_writing_its_manifest_leaves_nothing(sb, home):
    sb.inject_fault("secretsmanager:PutResourcePolicy", "AccessDeniedException", "not allowed to lock it")
    with pytest.raises(DaskAwsMagicError, match="manifest of prod.*torn down"):
        dam.up("prod", progress=False)
    assert sb.calls()["secretsmanager:CreateSecret"] == 1  # the manifest was made, then removed
    assert not sb.resources().get("secrets") and registry.get("prod") is None
