"""Issue 16, items 12 and 13 in the AWS sandbox with IAM enforced: the owner of a cluster is an identity
that survives a new session (an assumed role's role, not its session), an STS that does not answer
makes `list` and `down --all` fail at once saying so, and `down --all --owner` means that owner."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import boto3
import pytest

import dask_aws_magic as dam
from dask_aws_magic.aws import iam as aws_iam
from dask_aws_magic.aws import identity
from dask_aws_magic.core import registry
from dask_aws_magic.core.naming import owner_key

from .conftest import ACCOUNT, EC2_PROFILE, acting_as, assumed_role_profile, aws_sandbox, iam_user, new_session

pytestmark = pytest.mark.sandbox

PROFILE = EC2_PROFILE
ROLE = f"arn:aws:iam::{ACCOUNT}:role/team/scientist"


@pytest.fixture
def sb(home):
    """The sandbox, whose default credentials are a role assumed from a user (a new session each time)."""
    with aws_sandbox(home, {"owned": PROFILE}) as sandbox:
        assert assumed_role_profile(sandbox, "ds", "scientist", "AdministratorAccess", path="/team/") == ROLE
        try:
            with acting_as("ds"), sandbox.enforce_iam():
                yield sandbox
        finally:
            aws_iam.delete_role(boto3.client("iam"), "scientist")  # the test's own role


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dask_aws_magic.faces.cli", *args], capture_output=True,
                          text=True, env=os.environ, timeout=120)


def instances(cluster_id: str) -> list[dict]:
    ec2 = boto3.client("ec2")
    reply = ec2.describe_instances(Filters=[{"Name": "tag:dask-aws-magic:cluster-id", "Values": [cluster_id]},
                                            {"Name": "instance-state-name", "Values": ["pending", "running"]}])
    return [i for r in reply["Reservations"] for i in r["Instances"]]


def test_owner_keys_read_every_form_of_a_role_as_that_role():
    session = f"arn:aws:sts::{ACCOUNT}:assumed-role/scientist/botocore-session-1764756000"
    sso = f"arn:aws:sts::{ACCOUNT}:assumed-role/AWSReservedSSO_DS_0123/alice@example.com"
    assert owner_key(session) == owner_key(ROLE) == owner_key(f"arn:aws:iam::{ACCOUNT}:role/scientist")
    assert owner_key(sso) == f"arn:aws:iam::{ACCOUNT}:role/AWSReservedSSO_DS_0123"
    assert owner_key(f"arn:aws:iam::{ACCOUNT}:user/bob") == f"arn:aws:iam::{ACCOUNT}:user/bob"
    assert owner_key(ROLE) != owner_key(f"arn:aws:iam::{ACCOUNT}:role/team/other")


def test_a_new_session_of_the_same_role_owns_the_cluster(sb, home):
    """With boto3's default session name every session was another owner: a second machine listed
    "No clusters" and `down --all` stopped nothing, both exit 0, with the instances running."""
    handle = dam.up("owned", progress=False)
    handle.close()
    record = handle.record
    assert record.owner == ROLE  # the role, found with iam:GetRole for its path; never the session
    tags = {t["Key"]: t["Value"] for t in instances(record.cluster_id)[0]["Tags"]}
    assert tags["dask-aws-magic:owner"] == ROLE
    (home / "clusters" / "owned.json").unlink()  # another machine: no registry, a new session
    listed = cli("list")
    assert listed.returncode == 0, listed.stderr
    assert "owned" in listed.stdout and "running" in listed.stdout and "Not shown" not in listed.stdout
    stopped = cli("down", "--all")
    assert stopped.returncode == 0 and "owned: terminated 2 instance(s)" in stopped.stdout, stopped
    assert not instances(record.cluster_id)


def test_without_iam_get_role_the_owner_is_the_same_role(sb, home):
    """A session that may not call iam:GetRole tags the role's ARN without its path: the same owner."""
    handle = dam.up("owned", progress=False)
    handle.close()
    boto3.client("iam").put_role_policy(RoleName="scientist", PolicyName="no-get-role", PolicyDocument=(
        '{"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "iam:GetRole", "Resource": "*"}]}'))
    new_session()
    assert identity.owner("us-east-1") == f"arn:aws:iam::{ACCOUNT}:role/scientist"
    assert [(c.name, c.status) for c in dam.list_clusters()] == [("owned", "running")]
    assert dam.down(all=True)[0].startswith("owned: terminated 2 instance(s)")


def test_clusters_tagged_with_the_older_session_owner_are_still_yours(sb, home):
    handle = dam.up("owned", progress=False)
    handle.close()
    older = f"arn:aws:sts::{ACCOUNT}:assumed-role/scientist/botocore-session-1764700000"
    ec2 = boto3.client("ec2")
    ids = [i["InstanceId"] for i in instances(handle.record.cluster_id)] + [handle.record.resources["security_group"]]
    ec2.create_tags(Resources=ids, Tags=[{"Key": "dask-aws-magic:owner", "Value": older}])
    (home / "clusters" / "owned.json").unlink()
    [found] = dam.list_clusters()  # the owner is the manifest's (the role), whatever the tags now say
    assert (found.name, found.owner, found.status) == ("owned", f"arn:aws:iam::{ACCOUNT}:role/team/scientist",
                                                       "running")
    assert dam.down(all=True)[0].startswith("owned: terminated 2 instance(s)")


@pytest.mark.parametrize("fault", ["Throttling", "AccessDenied"])
def test_when_sts_does_not_answer_list_and_down_all_fail_fast_saying_so(sb, home, fault):
    """They took 165 s and 202 s and exited 0 (clusters counted as others')."""
    handle = dam.up("owned", progress=False)
    handle.close()
    (home / "clusters" / "owned.json").unlink()  # another machine: only AWS knows whose it is
    new_session()
    sb.inject_fault("sts:GetCallerIdentity", fault, f"{fault} by the test", times=None, status=400)
    for args in (("list",), ("down", "--all")):
        started = time.monotonic()
        result = cli(*args)
        took = time.monotonic() - started
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert "sts:GetCallerIdentity" in result.stderr and fault in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and took < 30, took
    assert len(instances(handle.record.cluster_id)) == 2  # nothing was touched, nothing said "no clusters"
    sb.clear_faults()
    new_session()
    assert dam.down(all=True)[0].startswith("owned: terminated 2 instance(s)")


def test_down_all_with_an_owner_stops_that_owners_clusters_only(sb, home):
    mine = dam.up("owned", name="mine", progress=False)
    mine.close()
    bob = iam_user(sb, "bob", "AdministratorAccess")
    os.environ["AWS_PROFILE"] = "bob"
    new_session()
    bobs = [dam.up("owned", name=f"bobs-{i}", progress=False) for i in range(2)]
    for handle in bobs:
        handle.close()
        assert handle.record.owner == bob
        (home / "clusters" / f"{handle.name}.json").unlink()  # his registry is on his machine
    os.environ["AWS_PROFILE"] = "ds"
    new_session()
    result = cli("down", "--all", "--owner", bob)
    assert result.returncode == 0, result.stderr
    assert "bobs-0: terminated 2 instance(s)" in result.stdout and "bobs-1: terminated" in result.stdout
    assert "mine" not in result.stdout
    assert not any(instances(h.record.cluster_id) for h in bobs) and len(instances(mine.record.cluster_id)) == 2
    assert registry.get("bobs-0") is None  # another owner's: never written to your registry
    assert [line.split(":")[0] for line in dam.down(all=True)] == ["mine"]
