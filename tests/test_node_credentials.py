"""The nodes' side of the data credentials, on a real cluster (scheduler and workers in processes of
their own): what travels, what each process serves its AWS SDKs, renewal in place, a worker that
joins later, and a plugin that needs nothing of this package on the nodes."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import time
import urllib.error
import urllib.request

import boto3
import cloudpickle
import pytest

import dask_aws_magic as dam
from dask_aws_magic.backends import NodeCredentials
from dask_aws_magic.core import forwarding, node_credentials
from dask_aws_magic.sandbox import Sandbox

ACCOUNT = "123456789012"
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the nodes run this module's functions


def _issue(name: str) -> NodeCredentials:
    """A federation token of the sandbox user ``reader`` (may read the bucket), as `up` makes them."""
    creds = boto3.Session(profile_name="reader").client("sts").get_federation_token(
        Name=name, Policy=json.dumps({"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    c = creds["Credentials"]
    return NodeCredentials(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"], c["Expiration"].timestamp(),
                           identity=creds["FederatedUser"]["Arn"], description=f"test token {name}")


def _seen_by_sdk() -> dict[str, str]:
    """On a node: which credentials botocore resolves, and a read with them."""
    import os

    import botocore.session

    session = botocore.session.get_session()
    creds = session.get_credentials()
    body = session.create_client("s3").get_object(Bucket="node-bucket", Key="k")["Body"].read().decode()
    return {"key": creds.access_key, "method": creds.method, "body": body,
            "static": str("AWS_SECRET_ACCESS_KEY" in os.environ)}


@pytest.fixture
def sb(home):
    with Sandbox() as sandbox:
        sandbox.add_credentials_profile("reader", account_id=ACCOUNT)
        policy = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject", "sts:GetFederationToken"], "Resource": "*"}]}
        iam = boto3.client("iam")
        iam.put_user_policy(UserName="sandbox-reader", PolicyName="p", PolicyDocument=json.dumps(policy))
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="node-bucket")
        s3.put_object(Bucket="node-bucket", Key="k", Body=b"hello")
        yield sandbox
        s3.delete_object(Bucket="node-bucket", Key="k")
        s3.delete_bucket(Bucket="node-bucket")


def test_every_process_uses_the_forwarded_credentials_and_renewals_replace_them(sb, home):
    with dam.up("local", workers=1, progress=False) as cluster:
        client = cluster.client
        first = _issue("first")
        with sb.enforce_iam():
            forwarding.send(client, first)
            seen = client.run(_seen_by_sdk)
            assert [s["key"] for s in seen.values()] == [first.access_key_id]
            assert all(s["method"] == "container-role" and s["body"] == "hello" and s["static"] == "False"
                       for s in seen.values())  # the sandbox's static keys were removed from the environment
            assert client.run_on_scheduler(_seen_by_sdk)["key"] == first.access_key_id
            info = forwarding.held(client)
            assert set(info) == {"Expiration", "IssuedAt"}  # nothing secret comes back
            assert first.secret_access_key not in json.dumps(info)

            second = _issue("second")
            forwarding.send(client, second)  # a renewal: same plugin name, new credentials, same endpoint
            uris = client.run(lambda: __import__("os").environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"])
            assert [s["key"] for s in client.run(_seen_by_sdk).values()] == [second.access_key_id]
            assert client.run_on_scheduler(_seen_by_sdk)["key"] == second.access_key_id

            cluster.scale(2)  # a worker that joins later gets the current ones from the scheduler
            client.wait_for_workers(2, timeout=60)
            seen = client.run(_seen_by_sdk)
            assert len(seen) == 2 and {s["key"] for s in seen.values()} == {second.access_key_id}
            later = set(client.run(lambda: __import__("os").environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"]).values())
            assert set(uris.values()) < later  # the first worker kept its endpoint across the renewal


def test_the_endpoint_answers_only_its_token(sb, home):
    def ask(token_of):
        import os

        request = urllib.request.Request(os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"],
                                         headers={"Authorization": token_of(os.environ)})
        try:
            with urllib.request.urlopen(request, timeout=5) as reply:
                return sorted(json.load(reply))
        except urllib.error.HTTPError as exc:
            return exc.code

    with dam.up("local", workers=1, progress=False) as cluster:
        forwarding.send(cluster.client, _issue("token"))
        assert list(cluster.client.run(ask, lambda env: env["AWS_CONTAINER_AUTHORIZATION_TOKEN"]).values()) == [
            ["AccessKeyId", "Expiration", "SecretAccessKey", "Token"]]
        assert list(cluster.client.run(ask, lambda env: "guess").values()) == [403]
        assert list(cluster.client.run(ask, lambda env: "").values()) == [403]


NODE = r"""
import builtins, json, os, pickle, sys, urllib.request
real_import = builtins.__import__
def guarded(name, *args, **kwargs):
    if name.startswith("dask_aws_magic"):
        raise ImportError("the nodes do not have dask_aws_magic")
    return real_import(name, *args, **kwargs)
builtins.__import__ = guarded
plugin = pickle.loads(sys.stdin.buffer.read())
class Worker: pass
worker = Worker()
plugin.setup(worker)
request = urllib.request.Request(os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"],
                                 headers={"Authorization": os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"]})
print(json.load(urllib.request.urlopen(request, timeout=5))["AccessKeyId"])
"""


def test_the_plugin_travels_by_value_and_needs_nothing_of_this_package():
    from distributed.protocol.pickle import dumps

    forwarding._nodes()  # registers the module to travel by value, as `send` does
    credentials = NodeCredentials("ASIAEXAMPLEKEY000001", "secret", "token", time.time() + 600, identity="arn:x",
                                  description="test")
    payload = dumps(node_credentials.WorkerCredentials(credentials.for_nodes()))
    answer = subprocess.run([sys.executable, "-c", NODE], input=payload, capture_output=True, timeout=60)
    assert answer.returncode == 0, answer.stderr.decode()
    assert answer.stdout.decode().strip() == "ASIAEXAMPLEKEY000001"
    assert "secret" not in repr(credentials) and "token" not in repr(credentials)
    assert "secret" not in repr(node_credentials.WorkerCredentials(credentials.for_nodes()))


def test_a_by_reference_pickle_would_not_load_on_a_node():
    """The check above is meaningful: the same guard refuses a plugin pickled by reference."""
    payload = pickle.dumps(node_credentials.WorkerCredentials({"AccessKeyId": "A"}))
    answer = subprocess.run([sys.executable, "-c", NODE], input=payload, capture_output=True, timeout=60)
    assert answer.returncode != 0 and b"do not have dask_aws_magic" in answer.stderr
