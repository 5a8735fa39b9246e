"""The sandbox's STS and IAM, as strict as AWS where the data credentials rely on them: temporary
credentials that expire, federation tokens and role sessions cut by their session policies, S3 calls
checked against the bucket and object they touch, and the container credentials endpoint of tasks."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import boto3
import botocore.exceptions
import pytest

from dask_aws_magic.sandbox import Sandbox
from dask_aws_magic.sandbox.policies import Caller, permitted

pytestmark = pytest.mark.sandbox

ACCOUNT = "123456789012"
READ_ONLY_PREFIX = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::data-bucket/in/*"},
    {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::data-bucket",
     "Condition": {"StringLike": {"s3:prefix": ["in/*", "in"]}}},
]}


@pytest.fixture
def sb():
    with Sandbox(credential_lifetime=4) as sandbox:
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="data-bucket")
        for key in ("in/a.csv", "secret/b.csv"):
            s3.put_object(Bucket="data-bucket", Key=key, Body=b"x\n1\n")
        yield sandbox
        for key in ("in/a.csv", "secret/b.csv", "in/new.csv"):
            s3.delete_object(Bucket="data-bucket", Key=key)
        s3.delete_bucket(Bucket="data-bucket")
        assert not sandbox.resources()


def _user(sb, name, policy):
    sb.add_credentials_profile(name, account_id=ACCOUNT)
    boto3.client("iam").put_user_policy(UserName=f"sandbox-{name}", PolicyName="p", PolicyDocument=json.dumps(policy))
    return boto3.Session(profile_name=name)


def _session(creds):
    return boto3.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                         aws_session_token=creds["SessionToken"])


def _code(call, *args, **kwargs):
    with pytest.raises(botocore.exceptions.ClientError) as failed:
        call(*args, **kwargs)
    return failed.value.response["Error"]["Code"]


ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def test_a_federation_token_is_the_user_cut_by_its_session_policy(sb):
    alice = _user(sb, "alice", ALL)
    with sb.enforce_iam():
        token = alice.client("sts").get_federation_token(Name="alice-data", Policy=json.dumps(READ_ONLY_PREFIX),
                                                         DurationSeconds=3600)
        creds = token["Credentials"]
        assert token["FederatedUser"]["Arn"] == f"arn:aws:sts::{ACCOUNT}:federated-user/alice-data"
        # The sandbox shortened the lifetime asked for: the Expiration says so.
        assert creds["Expiration"].timestamp() - time.time() < 10
        scoped = _session(creds)
        assert scoped.client("sts").get_caller_identity()["Arn"] == token["FederatedUser"]["Arn"]
        s3 = scoped.client("s3")
        assert s3.get_object(Bucket="data-bucket", Key="in/a.csv")["Body"].read() == b"x\n1\n"
        assert [o["Key"] for o in s3.list_objects_v2(Bucket="data-bucket", Prefix="in/")["Contents"]] == ["in/a.csv"]
        assert _code(s3.get_object, Bucket="data-bucket", Key="secret/b.csv") == "AccessDenied"
        assert _code(s3.list_objects_v2, Bucket="data-bucket", Prefix="secret/") == "AccessDenied"
        assert _code(s3.list_objects_v2, Bucket="data-bucket") == "AccessDenied"  # no prefix: the whole bucket
        assert _code(s3.put_object, Bucket="data-bucket", Key="in/new.csv", Body=b"") == "AccessDenied"
        writer = _session(alice.client("sts").get_federation_token(Name="writer", Policy=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:PutObject", "s3:DeleteObject"],
                                                    "Resource": "arn:aws:s3:::data-bucket/in/*"}]}))["Credentials"])
        w3 = writer.client("s3")
        w3.put_object(Bucket="data-bucket", Key="in/new.csv", Body=b"")
        # DeleteObjects is judged key by key: within the prefix it deletes, one key outside refuses.
        refused = w3.delete_objects(Bucket="data-bucket", Delete={"Objects": [{"Key": "in/new.csv"},
                                                                            {"Key": "secret/b.csv"}]})
        assert {e["Code"] for e in refused.get("Errors", [])} == {"AccessDenied"} and not refused.get("Deleted")
        done = w3.delete_objects(Bucket="data-bucket", Delete={"Objects": [{"Key": "in/new.csv"}]})
        assert [d["Key"] for d in done["Deleted"]] == ["in/new.csv"] and not done.get("Errors")
        # Nor any IAM or STS call but GetCallerIdentity, whatever the user may do.
        assert _code(scoped.client("iam").list_users) == "AccessDenied"
        assert _code(scoped.client("sts").get_federation_token, Name="again") == "AccessDenied"


def test_the_user_own_policy_still_limits_a_federation_token(sb):
    reader = _user(sb, "reader", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "sts:GetFederationToken"], "Resource": "*"}]})
    with sb.enforce_iam():
        creds = reader.client("sts").get_federation_token(Name="reader", Policy=json.dumps(ALL))["Credentials"]
        s3 = _session(creds).client("s3")
        assert s3.get_object(Bucket="data-bucket", Key="secret/b.csv")["Body"].read()
        assert _code(s3.put_object, Bucket="data-bucket", Key="in/new.csv", Body=b"") == "AccessDenied"
        # Without a session policy a federation token may do nothing.
        bare = reader.client("sts").get_federation_token(Name="bare")["Credentials"]
        assert _code(_session(bare).client("s3").get_object, Bucket="data-bucket", Key="in/a.csv") == "AccessDenied"


def test_expired_credentials_are_refused_with_expired_token(sb):
    alice = _user(sb, "alice", ALL)
    creds = alice.client("sts").get_federation_token(Name="alice", Policy=json.dumps(ALL))["Credentials"]
    s3 = _session(creds).client("s3")
    assert s3.get_object(Bucket="data-bucket", Key="in/a.csv")
    time.sleep(max(0.0, creds["Expiration"].timestamp() - time.time()) + 0.5)
    assert _code(s3.get_object, Bucket="data-bucket", Key="in/a.csv") == "ExpiredToken"  # IAM not even enforced
    assert _code(_session(creds).client("sts").get_caller_identity) == "ExpiredToken"
    assert _code(_session(creds).client("secretsmanager").list_secrets) == "ExpiredTokenException"
    issued = [s for s in sb.issued_credentials() if s.access_key_id == creds["AccessKeyId"]]
    assert issued and issued[0].expired and issued[0].secret_access_key == creds["SecretAccessKey"]


def _role(name, trusted, policy):
    iam = boto3.client("iam")
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": trusted}, "Action": "sts:AssumeRole"}]}
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust), MaxSessionDuration=7200)
    iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    return arn["Role"]["Arn"]


def _drop_role(name):
    iam = boto3.client("iam")
    iam.delete_role_policy(RoleName=name, PolicyName="p")
    iam.delete_role(RoleName=name)


def test_role_chaining_needs_the_role_to_trust_itself_and_is_cut_by_the_session_policy(sb):
    sb.credential_lifetime = None
    alice = _user(sb, "alice", ALL)
    alice_arn = f"arn:aws:iam::{ACCOUNT}:user/dask-aws-magic-sandbox/sandbox-alice"  # its path included, as on AWS
    arn = _role("analyst", alice_arn, ALL)
    selfish = _role("selfish", [alice_arn, f"arn:aws:iam::{ACCOUNT}:role/selfish"], ALL)
    try:
        with sb.enforce_iam():
            first = alice.client("sts").assume_role(RoleArn=arn, RoleSessionName="first")["Credentials"]
            as_role = _session(first).client("sts")
            # A role whose trust policy does not name it cannot assume itself.
            assert _code(as_role.assume_role, RoleArn=arn, RoleSessionName="again") == "AccessDenied"
            second = alice.client("sts").assume_role(RoleArn=selfish, RoleSessionName="first")["Credentials"]
            chain = _session(second).client("sts")
            assert _code(chain.assume_role, RoleArn=selfish, RoleSessionName="long", DurationSeconds=7200) \
                == "ValidationError"  # an hour at most when chaining
            scoped = chain.assume_role(RoleArn=selfish, RoleSessionName="scoped",
                                       Policy=json.dumps(READ_ONLY_PREFIX))["Credentials"]
            s3 = _session(scoped).client("s3")
            assert s3.get_object(Bucket="data-bucket", Key="in/a.csv")
            assert _code(s3.get_object, Bucket="data-bucket", Key="secret/b.csv") == "AccessDenied"
    finally:
        _drop_role("analyst")
        _drop_role("selfish")


def test_policy_evaluation_follows_aws():
    caller = Caller(arn="arn:aws:iam::1:user/u", account="1", identity_policies=[{"Statement": [
        {"Effect": "Allow", "Action": "S3:Get*", "Resource": "arn:aws:s3:::my.bucket/in/*"}]}])
    assert permitted(caller, "s3:GetObject", "arn:aws:s3:::my.bucket/in/x", {})
    assert not permitted(caller, "s3:GetObject", "arn:aws:s3:::myXbucket/in/x", {})  # "." is no wildcard
    assert not permitted(caller, "s3:GetObject", "arn:aws:s3:::my.bucket/In/x", {})  # resources are case-sensitive
    caller.session_policy = {"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*",
                                            "Condition": {"StringEqualsIfExists": {"s3:prefix": "in/"}}}]}
    assert permitted(caller, "s3:GetObject", "arn:aws:s3:::my.bucket/in/x", {})
    caller.session_policy["Statement"][0]["Condition"] = {"NumericLessThan": {"s3:max-keys": "10"}}
    assert not permitted(caller, "s3:GetObject", "arn:aws:s3:::my.bucket/in/x", {})  # unknown: no allow
    caller.session_policy = {"Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"},
        {"Effect": "Deny", "Action": "s3:GetObject", "NotResource": "arn:aws:s3:::my.bucket/in/a"}]}
    assert permitted(caller, "s3:GetObject", "arn:aws:s3:::my.bucket/in/a", {})
    assert not permitted(caller, "s3:GetObject", "arn:aws:s3:::my.bucket/in/b", {})


def test_a_task_role_reaches_its_task_through_the_container_credentials_endpoint(sb):
    from dask_aws_magic.sandbox.task_roles import task_role_environment

    sb.credential_lifetime = None
    iam = boto3.client("iam")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service":
                                                     "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    arn = iam.create_role(RoleName="task", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName="task", PolicyName="p", PolicyDocument=json.dumps(READ_ONLY_PREFIX))
    untrusting = _role("untrusting", f"arn:aws:iam::{ACCOUNT}:root", ALL)
    try:
        metadata = sb._tasks.metadata
        backend = type("B", (), {"account_id": ACCOUNT, "region_name": "us-east-1"})()
        task = type("T", (), {"id": "t1"})()
        env = task_role_environment(metadata, backend, type("D", (), {"task_role_arn": arn})(), task)
        url, token = env["AWS_CONTAINER_CREDENTIALS_FULL_URI"], env["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
        with pytest.raises(urllib.error.HTTPError, match="403"):
            urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": "wrong"}), timeout=5)
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": token}), timeout=5) as r:
            creds = json.load(r)
        assert set(creds) >= {"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}
        session = boto3.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                                aws_session_token=creds["Token"])
        with sb.enforce_iam():
            assert session.client("s3").get_object(Bucket="data-bucket", Key="in/a.csv")
            assert _code(session.client("s3").get_object, Bucket="data-bucket", Key="secret/b.csv") == "AccessDenied"
        from dask_aws_magic.sandbox.tasks import StartFailure

        with pytest.raises(StartFailure, match="unable to assume the role"):
            task_role_environment(metadata, backend, type("D", (), {"task_role_arn": untrusting})(), task)
        metadata.remove("t1")
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": token}), timeout=5)
    finally:
        iam.delete_role_policy(RoleName="task", PolicyName="p")
        iam.delete_role(RoleName="task")
        _drop_role("untrusting")


def test_the_nodes_session_policy_covers_a_folder_and_nothing_beside_it():
    from dask_aws_magic.aws.data_credentials import session_policy

    policy = session_policy([("b", "in", False), ("b", "out", True), ("whole", "", False)])
    caller = Caller(arn="arn:aws:iam::1:user/u", account="1", session_policy=policy,
                    identity_policies=[{"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}])

    def may(action, resource, prefix=None):
        return permitted(caller, action, resource, {} if prefix is None else {"s3:prefix": [prefix]})

    assert may("s3:GetObject", "arn:aws:s3:::b/in/2024/x.csv") and may("s3:GetObject", "arn:aws:s3:::b/in")
    assert not may("s3:GetObject", "arn:aws:s3:::b/in-other/x.csv")  # a sibling sharing the prefix's letters
    assert not may("s3:PutObject", "arn:aws:s3:::b/in/x.csv") and may("s3:PutObject", "arn:aws:s3:::b/out/x.csv")
    assert may("s3:DeleteObject", "arn:aws:s3:::b/out/x") and may("s3:AbortMultipartUpload", "arn:aws:s3:::b/out/x")
    assert may("s3:ListBucket", "arn:aws:s3:::b", "in/") and may("s3:ListBucket", "arn:aws:s3:::b", "out/2024/")
    assert not may("s3:ListBucket", "arn:aws:s3:::b", "in") and not may("s3:ListBucket", "arn:aws:s3:::b", "")
    assert may("s3:ListBucket", "arn:aws:s3:::whole", "") and may("s3:GetObject", "arn:aws:s3:::whole/any/key")
    assert not may("s3:GetObject", "arn:aws:s3:::other/x") and not may("ec2:DescribeInstances", "*")
