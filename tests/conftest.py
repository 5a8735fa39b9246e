"""Shared fixtures: an isolated home per test, and a check that no cluster process outlives a test."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import psutil
import pytest

from dask_aws_magic.core.errors import Interrupted

if TYPE_CHECKING:
    from dask_aws_magic.sandbox import Sandbox

TAGS = ("DASK_AWS_MAGIC_CLUSTER_ID", "DASK_AWS_MAGIC_ADAPTS_CLUSTER_ID")  # cluster processes, adaptors


def cluster_processes(home: str) -> list[psutil.Process]:
    """Every live process tagged as part of a dask-aws-magic cluster whose home is under ``home``."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "distributed.cli" not in cmdline and "dask_aws_magic.core.adaptor" not in cmdline:
            continue
        try:
            env = proc.environ()
            ours = any(tag in env for tag in TAGS) and env.get("DASK_AWS_MAGIC_TAG_HOME", "").startswith(home)
            if ours and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh DASK_AWS_MAGIC_HOME; fails the test if a cluster process of it is left running."""
    path = tmp_path / "home"
    monkeypatch.setenv("DASK_AWS_MAGIC_HOME", str(path))
    yield path
    leftovers = cluster_processes(str(path.resolve()))
    for proc in leftovers:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert not leftovers, f"processes left running: {[p.pid for p in leftovers]}"


def assert_refuses_strangers(address: str) -> None:
    """A TLS scheduler at ``address`` lets in no client without a certificate its own CA signed: not
    one with another cluster's identity, not one without TLS."""
    from distributed import Client

    from dask_aws_magic.aws.tls import client_security, new_cluster_material

    other = new_cluster_material("stranger")
    stranger = client_security(other.ca, other.client.cert, other.client.key)
    for target, security in ((address, stranger), (address.replace("tls://", "tcp://"), None)):
        with pytest.raises(OSError):  # distributed's "Timed out trying to connect" after the refusal
            Client(target, security=security, timeout=3)


def assert_private(home) -> None:
    """Everything under the home is this user's alone: folders 0700, files 0600."""
    import stat

    for path in [home, *home.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_dir():
            assert mode == 0o700, (oct(mode), path)
        elif path.is_file():
            assert mode == 0o600, (oct(mode), path)


@contextlib.contextmanager
def aws_sandbox(home, profiles: dict[str, str], *, iam: bool = True, **options) -> Iterator[Sandbox]:
    """The AWS sandbox (``Sandbox(**options)``), with ``profiles`` (name -> text) in the test's home. Fails the
    test if anything is left on the emulated AWS, after a `down --all` so that one failure does not cascade.

    With ``iam`` (the default) IAM is enforced as AWS does, and the test acts as the user ``admin``
    (AdministratorAccess): a call our code makes that AWS would refuse fails here too."""
    import dask_aws_magic as dam
    from dask_aws_magic.sandbox import Sandbox

    (home / "profiles").mkdir(mode=0o700, parents=True, exist_ok=True)
    home.chmod(0o700)
    for name, text in profiles.items():  # written as `up` would find them: the user's own, private
        path = home / "profiles" / f"{name}.yaml"
        path.write_text(text)
        path.chmod(0o600)
    with Sandbox(**options) as sandbox:
        if iam:
            iam_user(sandbox, "admin", "AdministratorAccess")
            sandbox.reset_calls()  # the test counts its own calls
            with acting_as("admin"), sandbox.enforce_iam():
                yield sandbox
        else:
            yield sandbox
        leftovers = sandbox.resources()  # the software-sync bucket is not among them: a cache (sb.caches())
        if leftovers:
            with contextlib.suppress(Exception):
                dam.down(all=True)
        assert not leftovers, f"left on AWS: {leftovers}"


ACCOUNT = "123456789012"  # the sandbox's default account

# The smallest clusters the AWS tests start: one worker each.
EC2_PROFILE = """\
backend: ec2
region: us-east-1
scheduler: {type: t3.medium}
worker: {type: m6i.large, count: 1}
"""
FARGATE_PROFILE = """\
backend: fargate
region: us-east-1
worker: {count: 1}
ecs:
  scheduler: {cpu: 0.5, memory: 1GiB}
  worker: {cpu: 1, memory: 2GiB}
"""


def iam_user(sb, name: str, *policies: str, deny: list[str] | None = None, allow: list[str] | None = None,
             region: str | None = None, account: str | None = ACCOUNT) -> str:
    """A credentials profile ``name`` of a user in ``account`` (the sandbox's default; None: an account of
    its own), with the AWS-managed ``policies`` attached and inline policies allowing the actions in
    ``allow`` and denying those in ``deny``; the user's ARN. In another account the policies are attached
    by that account's root user."""
    import json

    import boto3

    account = sb.add_credentials_profile(name, region=region, account_id=account)
    if account == ACCOUNT:
        client = boto3.client("iam")
    else:
        sb.add_credentials_profile(f"{name}-root", region=region, account_id=account, root=True)
        client = boto3.Session(profile_name=f"{name}-root").client("iam")
    for policy in policies:
        client.attach_user_policy(UserName=f"sandbox-{name}", PolicyArn=f"arn:aws:iam::aws:policy/{policy}")
    for effect, actions in (("Allow", allow), ("Deny", deny)):
        if actions:
            client.put_user_policy(UserName=f"sandbox-{name}", PolicyName=effect.lower(), PolicyDocument=json.dumps({
                "Version": "2012-10-17", "Statement": [{"Effect": effect, "Action": actions, "Resource": "*"}]}))
    return str(client.get_user(UserName=f"sandbox-{name}")["User"]["Arn"])


def assumed_role_profile(sb, name: str, role: str, *policies: str, path: str = "/", deny: list[str] | None = None,
                         ) -> str:
    """A credentials profile ``name`` that assumes the role ``role`` (as `aws configure` writes one with
    ``role_arn`` and ``source_profile``: boto3 names each session ``botocore-session-<epoch>``), the role
    holding the AWS-managed ``policies`` and denied ``deny``; the role's ARN."""
    import configparser
    import json
    import os

    import boto3

    iam_user(sb, f"{name}-source")
    client = boto3.client("iam")
    client.put_user_policy(UserName=f"sandbox-{name}-source", PolicyName="assume", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}))
    trust = {"Version": "2012-10-17", "Statement": [  # the account's identities allowed sts:AssumeRole
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"}]}
    arn = client.create_role(RoleName=role, Path=path, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    for policy in policies:
        client.attach_role_policy(RoleName=role, PolicyArn=f"arn:aws:iam::aws:policy/{policy}")
    if deny:
        client.put_role_policy(RoleName=role, PolicyName="deny", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": deny, "Resource": "*"}]}))
    config = configparser.ConfigParser()
    config.read(os.environ["AWS_CONFIG_FILE"])
    config[f"profile {name}"] = {"role_arn": arn, "source_profile": f"{name}-source", "region": sb.region}
    with open(os.open(os.environ["AWS_CONFIG_FILE"], os.O_WRONLY | os.O_TRUNC), "w") as out:
        config.write(out)
    return str(arn)


def new_session() -> None:
    """What another process or machine starts with: no AWS session, client or identity remembered."""
    import boto3

    from dask_aws_magic.aws import identity, session

    session._sessions.clear()
    session._clients.clear()
    identity._known.clear()
    identity._failed.clear()
    boto3.DEFAULT_SESSION = None  # the test's own calls too


@contextlib.contextmanager
def acting_as(profile: str) -> Iterator[None]:
    """The process's default AWS credentials are those of the credentials profile ``profile`` (the
    sandbox's own keys, which come first in boto3's chain, are put aside meanwhile)."""
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE")
    saved = {key: os.environ.pop(key, None) for key in names}
    os.environ["AWS_PROFILE"] = profile
    new_session()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        new_session()


@pytest.fixture
def shell(home):
    """A real IPython shell with the extension loaded; every cluster of the test's home is stopped after."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "dask_aws_magic")
    yield shell
    try:
        shell.run_line_magic("dask_cluster", "down --all")
    finally:
        shell.run_line_magic("unload_ext", "dask_aws_magic")
        shell.user_ns.pop("client", None)


@pytest.fixture(scope="session", autouse=True)
def no_leftovers_at_end(tmp_path_factory):
    """After the whole run, no process of this run's homes may remain (killed and reported if one does)."""
    base = str(tmp_path_factory.getbasetemp().resolve())
    yield
    leftovers = cluster_processes(base)
    for proc in leftovers:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert not leftovers, f"cluster processes outlived the tests: {[p.pid for p in leftovers]}"


def cancel_at(start, stage: str, during=None):
    """Start an operation with ``start(subscriber)``, hold its thread at its first event of ``stage``,
    cancel it from this thread, then let it go on. ``during()`` runs while it is held. Returns the
    operation and the stages it went through."""
    reached, released = threading.Event(), threading.Event()

    def hold(event):
        if event.stage == stage and not reached.is_set():
            reached.set()
            released.wait(30)

    operation = start(hold)
    assert reached.wait(60), f"the operation never reached {stage!r}: {operation.events_since(0)}"
    if during is not None:
        during()
    assert operation.cancel()
    released.set()
    with pytest.raises(Interrupted, match="torn down"):
        operation.result(timeout=120)
    assert operation.state == "cancelled"
    return operation, [e.stage for e in operation.events_since(0)]


def sandbox_identity(sb, name, *policies, deny=None, allow=None):
    """:func:`iam_user`'s user in the sandbox's default account, as its boto3 session."""
    import boto3

    iam_user(sb, name, *policies, deny=deny, allow=allow)
    return boto3.Session(profile_name=name)


def assert_refused(call, *args, **kwargs):
    """The call is refused for want of permission (moto answers JSON services' refusals in XML, so
    botocore sees the status, not the code)."""
    import botocore.exceptions

    from dask_aws_magic.aws import iam

    with pytest.raises(botocore.exceptions.ClientError) as refused:
        call(*args, **kwargs)
    response = refused.value.response
    assert response["Error"]["Code"] in iam.REFUSED or response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "not authorized" in str(refused.value) or "AccessDenied" in str(refused.value)


def instance_credentials(sb, instance_id, monkeypatch):
    """What an instance's own code gets from its metadata service: its role's temporary credentials."""
    from dask_aws_magic.aws import fetch_secret

    monkeypatch.setattr(fetch_secret, "IMDS", f"{sb.metadata_url}{instance_id}/")
    return fetch_secret.credentials(fetch_secret.imds_token())
