"""Issue 8's secrets in the AWS sandbox, with IAM enforced where it matters: no key material where
a read-only identity can look, an instance role that reads its own secret and nothing else, the
errors of a missing IAM permission, an existing instance profile, and an HTTPS dashboard."""

from __future__ import annotations

import base64
import json
import os
import ssl
import urllib.error
import urllib.request

import boto3
import pytest

import dask_aws_magic as dam
from dask_aws_magic.aws import fetch_secret, iam, secrets
from dask_aws_magic.core.errors import LaunchError

from .conftest import EC2_PROFILE, assert_private, assert_refused, aws_sandbox, instance_credentials, sandbox_identity

pytestmark = pytest.mark.sandbox

PROFILE = EC2_PROFILE + """\
software:
  env: {DB_PASSWORD: hunter2-in-the-env}
"""


@pytest.fixture
def sb(home):
    with aws_sandbox(home, {"sec": PROFILE}) as sandbox:
        yield sandbox


def test_a_read_only_identity_finds_no_key_material(sb, home):
    handle = dam.up("sec", progress=False)
    try:
        handle.client.wait_for_workers(1, timeout=60)
        env = handle.client.run(lambda: __import__("os").environ.get("DB_PASSWORD"))
        assert set(env.values()) == {"hunter2-in-the-env"}  # software.env arrived, through the secret
        assert_private(home)  # the record holds the client's key
        client_key = handle.record.resources["tls"]["key"]
        sm = boto3.client("secretsmanager")
        nodes = {role: secrets.read_secret(sm, arn) for role, arn in handle.record.resources["node_secrets"].items()}
        forbidden = ["PRIVATE KEY", "hunter2-in-the-env", client_key.splitlines()[1],
                     nodes["scheduler"]["scheduler_key"].splitlines()[1], nodes["worker"]["worker_key"].splitlines()[1]]

        auditor = sandbox_identity(sb, "auditor", "ReadOnlyAccess")
        seen = []
        with sb.enforce_iam():
            ec2, sm = auditor.client("ec2"), auditor.client("secretsmanager")
            reply = ec2.describe_instances()
            seen.append(json.dumps(reply, default=str))
            ids = [i["InstanceId"] for r in reply["Reservations"] for i in r["Instances"]]
            assert handle.record.resources["scheduler"] in ids  # it can describe everything
            for instance_id in ids:
                data = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
                seen.append(base64.b64decode(data["UserData"]["Value"]).decode())
                seen.append(ec2.get_console_output(InstanceId=instance_id).get("Output", ""))
            seen.append(json.dumps(ec2.describe_security_groups(), default=str))
            listed = sm.list_secrets()["SecretList"]
            cluster_id = handle.record.cluster_id
            assert {s["Name"] for s in listed} == {secrets.node_secret_name(cluster_id, "scheduler"),
                                                   secrets.node_secret_name(cluster_id, "worker"),
                                                   secrets.client_secret_name(cluster_id)}
            for secret in listed:
                seen.append(json.dumps(sm.describe_secret(SecretId=secret["ARN"]), default=str))
                assert_refused(sm.get_secret_value, SecretId=secret["ARN"])
            roles = auditor.client("iam")
            for role in (iam.role_name(cluster_id, "scheduler"), iam.role_name(cluster_id, "worker")):
                seen.append(json.dumps(roles.get_role(RoleName=role), default=str))
                seen.append(json.dumps(roles.get_role_policy(RoleName=role, PolicyName=iam.INLINE_POLICY),
                                       default=str))
            seen.append(json.dumps(auditor.client("ssm").describe_parameters(), default=str))
        everything = "\n".join(seen)
        assert handle.record.cluster_id in everything and "secretsmanager:GetSecretValue" in everything
        for text in forbidden:
            assert text not in everything
    finally:
        handle.down()
    assert_private(home)


def test_the_instance_role_reads_its_own_secret_and_nothing_else(sb, home, monkeypatch):
    handle = dam.up("sec", progress=False)
    other = dam.up("sec", name="other", progress=False)
    try:
        creds = instance_credentials(sb, handle.record.resources["scheduler"], monkeypatch)
        as_instance = boto3.Session(aws_access_key_id=creds["AccessKeyId"],
                                    aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["Token"])
        mine, theirs = handle.record.resources, other.record.resources
        with sb.enforce_iam():
            # The instance's own signer (standard library, Signature V4), checked by the sandbox as AWS does.
            fetched = fetch_secret.get_secret_value(mine["node_secrets"]["scheduler"], "us-east-1", creds)
            assert fetched["scheduler_cert"].startswith("-----BEGIN CERTIFICATE-----")
            assert "worker_key" not in fetched  # its own identity only
            sm = as_instance.client("secretsmanager")
            assert_refused(sm.get_secret_value, SecretId=mine["client_secret"])  # never the client's identity
            assert_refused(sm.get_secret_value, SecretId=mine["node_secrets"]["worker"])  # nor the workers'
            assert_refused(sm.get_secret_value, SecretId=theirs["node_secrets"]["scheduler"])  # nor another cluster's
            assert_refused(sm.list_secrets)
            assert_refused(as_instance.client("ec2").describe_instances)
            forged = dict(creds, SecretAccessKey="x" + creds["SecretAccessKey"][1:])
            with pytest.raises(urllib.error.HTTPError):
                fetch_secret.get_secret_value(mine["node_secrets"]["scheduler"], "us-east-1", forged)
    finally:
        handle.down()
        other.down()


def test_a_refused_create_role_names_the_permission_and_the_option(sb, home):
    sandbox_identity(sb, "limited", "AdministratorAccess", deny=["iam:CreateRole"])
    (home / "profiles" / "limited.yaml").write_text("extends: sec\naws_profile: limited\n")
    with sb.enforce_iam(), pytest.raises(LaunchError) as refused:
        dam.up("limited", progress=False)
    message = str(refused.value)
    assert "iam:CreateRole" in message and "instance.iam_instance_profile" in message
    assert "Traceback" not in message and "Everything started was torn down" in message
    assert not dam.list_clusters(owner="*")


def test_a_refused_pass_role_names_the_permission_and_the_option(sb, home):
    sb.inject_fault("ec2:RunInstances", "UnauthorizedOperation", "You are not authorized to perform this "
                    "operation. User: arn:aws:iam::123456789012:user/x is not authorized to perform: "
                    "iam:PassRole on resource: arn:aws:iam::123456789012:role/dask-aws-magic/x")
    with pytest.raises(LaunchError) as refused:
        dam.up("sec", progress=False)
    assert "iam:PassRole" in str(refused.value) and "instance.iam_instance_profile" in str(refused.value)


def test_an_existing_instance_profile_is_granted_the_secret_instead_of_a_new_role(sb, home):
    client = boto3.client("iam")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                                                    "Action": "sts:AssumeRole"}]}
    arn = client.create_role(RoleName="data-access", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    client.create_instance_profile(InstanceProfileName="data-access")
    client.add_role_to_instance_profile(InstanceProfileName="data-access", RoleName="data-access")
    try:
        handle = dam.up("sec", overrides={"instance.iam_instance_profile": "data-access"}, progress=False)
        assert handle.client.submit(lambda: 2 + 2).result() == 4
        assert handle.record.resources["roles"] == {}
        assert [r["RoleName"] for r in client.list_roles()["Roles"]] == ["data-access"]
        for secret in handle.record.resources["node_secrets"].values():
            policy = boto3.client("secretsmanager").get_resource_policy(SecretId=secret)
            assert json.loads(policy["ResourcePolicy"])["Statement"][0]["Principal"]["AWS"] == [arn]
        handle.down()
        assert [r["RoleName"] for r in client.list_roles()["Roles"]] == ["data-access"]  # the user's, untouched
        assert client.get_instance_profile(InstanceProfileName="data-access")["InstanceProfile"]["Roles"]
    finally:
        client.remove_role_from_instance_profile(InstanceProfileName="data-access", RoleName="data-access")
        client.delete_instance_profile(InstanceProfileName="data-access")
        client.delete_role(RoleName="data-access")


def test_a_missing_instance_profile_is_a_clear_error(sb, home):
    with pytest.raises(LaunchError, match=r"`instance.iam_instance_profile` names 'nope', which does not exist"):
        dam.up("sec", overrides={"instance.iam_instance_profile": "nope"}, progress=False)


def test_the_dashboard_speaks_https_with_the_cluster_ca(sb, home):
    handle = dam.up("sec", progress=False)
    try:
        link = handle.dashboard_link
        assert link.startswith("https://")
        context = ssl.create_default_context(cadata=handle.record.resources["tls"]["ca"])
        context.check_hostname = False  # the cluster's CA signs for no hostname
        with urllib.request.urlopen(link, context=context, timeout=10) as reply:
            assert reply.status == 200
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(link.replace("https://", "http://"), timeout=5).read()
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.urlopen(link, timeout=5)  # not a certificate any public CA signed
    finally:
        handle.down()
    assert not os.environ.get("DASK_DISTRIBUTED__SCHEDULER__DASHBOARD__TLS__CERT")
