"""Issue 15: the user's data on the workers, in the AWS sandbox with IAM enforced, the caller a
credentials profile with policies (an IAM user). dask's dataframe example reads CSV and Parquet from
the user's bucket with no ``storage_options`` on ec2, fargate and ecs; a scoped cluster reads and
writes only where its profile says; credentials that live seconds are renewed while a computation
keeps reading; ``role`` and ``none``; refusals before anything is created. After each: no file of
any emulated machine, no CloudWatch event, no task definition, no record and no log under the home
holds a secret key or session token the sandbox issued."""

from __future__ import annotations

import contextlib
import io
import json
import os
import time

import boto3
import cloudpickle
import pandas as pd
import pytest

import dask_aws_magic as dam
from dask_aws_magic.aws.data_credentials import ForwardingImpossible
from dask_aws_magic.core import forwarding, registry
from dask_aws_magic.core.errors import LaunchError, ProfileError

from .conftest import assert_private, aws_sandbox

pytestmark = pytest.mark.sandbox
cloudpickle.register_pickle_by_value(__import__("sys").modules[__name__])  # the workers run this module's functions

ACCOUNT = "123456789012"
BUCKET = "lake"
SCOPE = "data:\n  s3: [s3://lake/in, {url: s3://lake/out, write: true}]\n"
FARGATE = ("backend: fargate\nregion: us-east-1\nworker: {count: 1}\n"
           "ecs: {scheduler: {cpu: 0.5, memory: 1GiB}, worker: {cpu: 1, memory: 2GiB}}\n")
PROFILES = {
    "ec2-data": "backend: ec2\nregion: us-east-1\nworker: {count: 1}\n" + SCOPE,
    "fargate-data": FARGATE + SCOPE,
    "fargate-open": FARGATE,  # no data.s3: the caller's whole identity
    "ecs-data": "backend: ecs\nregion: us-east-1\nworker: {count: 1}\n" + SCOPE,
}
SESSION_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")


def example_frame() -> pd.DataFrame:
    """dask's dataframe example data: a small slice of `dask.datasets.timeseries`."""
    import dask

    return dask.datasets.timeseries(start="2000-01-01", end="2000-01-03", freq="10min", seed=15).compute()


@contextlib.contextmanager
def as_user(name: str):
    """This process acts as the sandbox credentials profile ``name`` (as `export AWS_PROFILE=` would)."""
    import s3fs

    saved = {key: os.environ.get(key) for key in SESSION_VARIABLES}
    for key in SESSION_VARIABLES:
        os.environ.pop(key, None)
    os.environ["AWS_PROFILE"] = name
    boto3.DEFAULT_SESSION = None
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        yield
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None)
            if value is not None:
                os.environ[key] = value
        boto3.DEFAULT_SESSION = None
        s3fs.S3FileSystem.clear_instance_cache()


@contextlib.contextmanager
def lake(home, **options):
    """The sandbox with the user alice (AdministratorAccess) and her bucket: CSV and Parquet under in/,
    something private under secret/; this process acts as alice."""
    with aws_sandbox(home, PROFILES, workdir=str(home.parent / "aws"), **options) as sb:
        sb.add_credentials_profile("alice", account_id=ACCOUNT)
        boto3.client("iam").attach_user_policy(UserName="sandbox-alice",
                                               PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        frame = example_frame()
        for i, day in enumerate(("2000-01-01", "2000-01-02")):
            part = frame.loc[day]
            s3.put_object(Bucket=BUCKET, Key=f"in/csv/{i}.csv", Body=part.to_csv().encode())
            buffer = io.BytesIO()
            part.to_parquet(buffer)
            s3.put_object(Bucket=BUCKET, Key=f"in/parquet/part.{i}.parquet", Body=buffer.getvalue())
        s3.put_object(Bucket=BUCKET, Key="secret/salaries.csv", Body=b"name,salary\nalice,1\n")
        try:
            with as_user("alice"):
                yield sb
        finally:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
                for item in page.get("Contents", []):
                    s3.delete_object(Bucket=BUCKET, Key=item["Key"])
            s3.delete_bucket(Bucket=BUCKET)
    assert_private(home)


def secrets_issued(sb) -> set[bytes]:
    """The secret keys and session tokens of every temporary credential the sandbox issued (forwarded
    ones, and the instances' and tasks' own roles)."""
    return {value.encode() for s in sb.issued_credentials() for value in (s.secret_access_key, s.session_token)}


def assert_no_secret_anywhere(sb, home) -> None:
    """No file of any emulated machine, CloudWatch event, task definition, record or log holds one."""
    from moto.ecs.models import ecs_backends
    from moto.logs.models import logs_backends

    secrets = secrets_issued(sb)
    assert secrets
    places: list[tuple[str, bytes]] = []
    for root in (home.parent / "aws", home):
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                places.append((str(path), path.read_bytes()))
    for account in logs_backends.values():
        for backend in account.values():
            for group in list(backend.groups.values()):
                for stream in list(group.streams.values()):
                    text = "\n".join(str(e.message) for e in stream.events)
                    places.append((f"log {group.name}/{stream.log_stream_name}", text.encode()))
    for account in ecs_backends.values():
        for backend in account.values():
            for family in list(backend.task_definitions.values()):
                for definition in family.values():
                    places.append((f"task definition {definition.arn}",
                                   json.dumps(vars(definition), default=str).encode()))
    assert len(places) > 10
    for where, content in places:
        for secret in secrets:
            assert secret not in content, f"a secret credential is in {where}"


def _identity() -> str:
    """On a node: whose permissions its AWS SDKs act with."""
    import boto3 as node_boto3

    return str(node_boto3.client("sts").get_caller_identity()["Arn"])


def _get(key: str) -> str:
    """On a node: read one object with boto3; the AWS error code if refused."""
    import boto3 as node_boto3

    try:
        return node_boto3.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()[:20]
    except node_boto3.session.botocore.exceptions.ClientError as exc:
        return f"refused: {exc.response['Error']['Code']}: {exc}"


@pytest.mark.parametrize("backend", ["ec2", "fargate", "ecs"])
def test_dataframes_read_csv_and_parquet_from_the_users_bucket(home, backend):
    import dask.dataframe as dd

    expected = example_frame().groupby("name").x.mean()
    with lake(home) as sb, sb.enforce_iam():
        plan = dam.plan(f"{backend}-data")
        line = next(n for n in plan.notes if n.startswith("data:"))
        assert f"arn:aws:iam::{ACCOUNT}:user/" in line and "sandbox-alice" in line
        assert "limited to s3://lake/in (read) and s3://lake/out (read-write)" in line and "renewed" in line
        handle = dam.up(f"{backend}-data", progress=False)
        try:
            client = handle.client
            client.wait_for_workers(1, timeout=120)
            assert set(client.run(lambda: os.environ.get("AWS_REGION")).values()) == {"us-east-1"}
            assert set(client.run(lambda: os.environ.get("AWS_DEFAULT_REGION")).values()) == {"us-east-1"}
            assert client.run_on_scheduler(lambda: os.environ.get("AWS_REGION")) == "us-east-1"
            who = set(client.run(_identity).values()) | {client.run_on_scheduler(_identity)}
            assert who == {f"arn:aws:sts::{ACCOUNT}:federated-user/dask-aws-magic-{handle.record.cluster_id[4:]}"}

            csv = dd.read_csv("s3://lake/in/csv/*.csv", parse_dates=["timestamp"])
            parquet = dd.read_parquet("s3://lake/in/parquet/")
            for frame in (csv, parquet):
                pd.testing.assert_series_equal(frame.groupby("name").x.mean().compute().sort_index(),
                                               expected.sort_index(), check_exact=False)
            executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
            assert sum(executed.values()) >= 4  # read by the cluster's workers, not in this process
            assert_no_secret_anywhere(sb, home)
        finally:
            handle.down()
        assert_no_secret_anywhere(sb, home)


def test_a_scoped_cluster_reads_and_writes_only_where_its_profile_says(home):
    import dask.dataframe as dd

    with lake(home) as sb, sb.enforce_iam():
        handle = dam.up("ec2-data", progress=False)
        try:
            client = handle.client
            client.wait_for_workers(1, timeout=120)
            assert client.submit(_get, "in/csv/0.csv", pure=False).result().startswith("timestamp,")
            refused = client.submit(_get, "secret/salaries.csv", pure=False).result()
            assert refused.startswith("refused: AccessDenied")
            assert client.submit(_arrow_read, "in/csv/0.csv", pure=False).result().startswith("timestamp,")
            assert "ACCESS_DENIED" in client.submit(_arrow_read, "secret/salaries.csv", pure=False).result()
            with pytest.raises(PermissionError):  # the kernel (alice) may list it; the workers may not read it
                dd.read_csv("s3://lake/secret/*.csv").compute()

            frame = dd.read_csv("s3://lake/in/csv/*.csv")
            frame.to_csv("s3://lake/out/csv/part-*.csv", index=False)
            frame.to_parquet("s3://lake/out/parquet/", write_index=False)
            written = {o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="out/")["Contents"]}
            assert {"out/csv/part-0.csv", "out/csv/part-1.csv"} <= written
            assert any(k.startswith("out/parquet/") and k.endswith(".parquet") for k in written)
            assert len(dd.read_parquet("s3://lake/out/parquet/").compute()) == len(frame.compute())
            frame.to_parquet("s3://lake/out/parquet/", write_index=False, overwrite=True)  # deletes, then writes
            assert len(dd.read_parquet("s3://lake/out/parquet/").compute()) == len(frame.compute())
            with pytest.raises(PermissionError):  # read-only under in/
                frame.to_csv("s3://lake/in/copy-*.csv", index=False)
            assert not boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="in/copy").get("Contents")
            assert_no_secret_anywhere(sb, home)
        finally:
            handle.down()


def _arrow_read(key: str) -> str:
    """On a node: read one object with pyarrow's own S3 filesystem (the AWS C++ SDK)."""
    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(f"s3://{BUCKET}/{key}")
    try:
        with fs.open_input_stream(path) as stream:
            return stream.read().decode()[:20]
    except OSError as exc:
        return f"refused: {exc}"


def _keep_reading(seconds: float) -> list[tuple[float, str, str]]:
    """On a worker: read from S3 for ``seconds`` with one s3fs filesystem (as a long computation does),
    noting when, with which access key, and whether each read worked."""
    import time as node_time

    import botocore.session
    import s3fs

    fs = s3fs.S3FileSystem()
    seen = []
    deadline = node_time.time() + seconds
    while node_time.time() < deadline:
        key = botocore.session.get_session().get_credentials().access_key
        try:
            outcome = "ok" if fs.cat("lake/in/csv/0.csv").startswith(b"timestamp") else "wrong"
        except Exception as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        seen.append((node_time.time(), key, outcome))
        fs.invalidate_cache()
        node_time.sleep(0.25)
    return seen


def test_credentials_that_live_seconds_are_renewed_while_a_computation_keeps_reading(home):
    lifetime = 16.0
    with lake(home, credential_lifetime=lifetime) as sb, sb.enforce_iam():
        handle = dam.up("fargate-data", progress=False)
        try:
            client = handle.client  # connecting starts the renewals
            client.wait_for_workers(1, timeout=60)
            reads = client.submit(_keep_reading, 3.5 * lifetime, pure=False).result(timeout=300)
            failures = [r for r in reads if r[2] != "ok"]
            assert not failures, failures[:3]
            keys = list(dict.fromkeys(key for _, key, _ in reads))
            assert len(keys) >= 3, "the credentials were not renewed"
            issued = {s.access_key_id: s for s in sb.issued_credentials() if s.kind == "federated-user"}
            for when, key, _ in reads:  # every read used credentials that were valid then
                assert when < issued[key].expiration.timestamp()
            assert handle._refresher.renewals >= 2 and handle._refresher.problem is None
            assert forwarding.held(client)
            assert_no_secret_anywhere(sb, home)
        finally:
            handle.down()
        assert handle._refresher is None  # stopped with the client


def test_a_failed_renewal_is_said_once_and_retried(home, caplog):
    with lake(home, credential_lifetime=20.0) as sb, sb.enforce_iam():
        handle = dam.up("fargate-data", progress=False)
        try:
            handle.client.wait_for_workers(1, timeout=60)
            sb.inject_fault("sts:GetFederationToken", "AccessDenied", "Not now", status=403, times=None)
            deadline = time.time() + 40
            while handle._refresher.problem is None and time.time() < deadline:
                time.sleep(0.5)
            time.sleep(6)  # several more failed attempts
            warnings = [r for r in caplog.records if "Could not renew the data credentials" in r.getMessage()]
            assert len(warnings) == 1 and "refused sts:GetFederationToken" in warnings[0].getMessage()
            sb.clear_faults()
            deadline = time.time() + 40
            while handle._refresher.problem is not None and time.time() < deadline:
                time.sleep(0.5)
            assert handle._refresher.problem is None
            assert any("renewed again" in r.getMessage() for r in caplog.records)
        finally:
            handle.down()


def test_a_scheduler_frozen_at_the_handover_fails_up_in_time_and_leaves_nothing(home, monkeypatch):
    """A scheduler that answered, then froze, must not hold `up` in the call that hands it the
    credentials: `up` fails after the hand-over's time and tears everything down."""
    import signal

    from dask_aws_magic.core import forwarding, lifecycle

    monkeypatch.setattr(lifecycle, "HANDOVER_TIMEOUT", 5.0)
    deliver = forwarding.deliver
    with lake(home) as sb, sb.enforce_iam():
        def frozen_first(backend, record, credentials):  # in up's own thread, just before the hand-over
            os.killpg(sb.processes()[record.resources["scheduler"]], signal.SIGSTOP)
            return deliver(backend, record, credentials)

        # Not from an event callback: events reach it from another thread, sometimes after the hand-over.
        monkeypatch.setattr(forwarding, "deliver", frozen_first)
        started = time.monotonic()
        with pytest.raises(LaunchError) as failed:
            lifecycle.up("ec2-data")
        assert time.monotonic() - started < 120
        message = str(failed.value)
        assert "Waited 5 s for the scheduler to take the data credentials" in message, message
        assert "torn down" in message, message
        assert registry.get("ec2-data") is None


def _task_role(name: str) -> str:
    iam = boto3.client("iam")
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    read = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/in/*"},
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{BUCKET}"}]}
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="read", PolicyDocument=json.dumps(read))
    return str(arn)


def test_role_mode_uses_the_task_role_and_none_mode_gives_no_data_access(home):
    import dask.dataframe as dd

    with lake(home) as sb:
        arn = _task_role("lake-reader")
        try:
            with sb.enforce_iam():
                overrides = {"data.credentials": "role", "ecs.task_role": "lake-reader"}
                assert "the role of lake-reader (`ecs.task_role`)" in " ".join(
                    dam.plan("fargate-data", overrides=overrides).notes)
                handle = dam.up("fargate-data", overrides=overrides, progress=False)
                try:
                    client = handle.client
                    client.wait_for_workers(1, timeout=60)
                    assert forwarding.held(client) == {}  # nothing forwarded
                    assert handle._refresher is None
                    tasks = {w["name"] for w in client.scheduler_info()["workers"].values()}  # named by task id
                    assert set(client.run(_identity).values()) == {
                        f"arn:aws:sts::{ACCOUNT}:assumed-role/lake-reader/{task}" for task in tasks}
                    assert len(dd.read_csv("s3://lake/in/csv/*.csv").compute()) == len(example_frame())
                    assert client.submit(_get, "secret/salaries.csv", pure=False).result().startswith(
                        "refused: AccessDenied")
                    assert_no_secret_anywhere(sb, home)
                finally:
                    handle.down()
                assert arn.endswith("role/lake-reader")

                handle = dam.up("ec2-data", overrides={"data.credentials": "none"}, progress=False)
                try:
                    client = handle.client
                    client.wait_for_workers(1, timeout=60)
                    assert forwarding.held(client) == {} and handle._refresher is None
                    own = set(client.run(_identity).values())
                    # the workers act only as their own role (one per node role): it may read their secret, no data
                    assert all(f"assumed-role/dask-aws-magic-{handle.record.cluster_id}-worker/" in a for a in own)
                    assert client.submit(_get, "in/csv/0.csv", pure=False).result().startswith("refused: AccessDenied")
                finally:
                    handle.down()
        finally:
            boto3.client("iam").delete_role_policy(RoleName="lake-reader", PolicyName="read")
            boto3.client("iam").delete_role(RoleName="lake-reader")


def _nothing_created(sb, home) -> None:
    calls = sb.calls()
    made = [call for call in calls if call.split(":")[1].startswith(("Create", "Run", "Register", "Put"))]
    assert not made, made
    assert not registry.scan()[0]


def test_root_credentials_are_refused_before_anything_is_created(home):
    with lake(home) as sb:
        sb.add_credentials_profile("rooty", account_id=ACCOUNT, root=True)
        with as_user("rooty"), sb.enforce_iam():
            assert boto3.client("sts").get_caller_identity()["Arn"] == f"arn:aws:iam::{ACCOUNT}:root"
            sb.reset_calls()
            for attempt in (lambda: dam.plan("ec2-data"), lambda: dam.up("fargate-data", progress=False)):
                with pytest.raises(ForwardingImpossible) as refused:
                    attempt()
                message = str(refused.value)
                assert "root user" in message and "data.credentials: role" in message
                assert "data.credentials: none" in message and "Traceback" not in message
            _nothing_created(sb, home)
            # With nothing forwarded, root may start a cluster (its nodes get no data credentials).
            assert "no credentials for your data" in " ".join(
                dam.plan("ec2-data", overrides={"data.credentials": "none"}).notes)


def test_a_role_that_may_not_assume_itself_fails_up_before_any_launch(home):
    with lake(home) as sb:
        iam = boto3.client("iam")
        trusted = [f"arn:aws:iam::{ACCOUNT}:user/dask-aws-magic-sandbox/sandbox-alice"]
        admin = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}

        def trust(principals):
            return json.dumps({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": principals}, "Action": "sts:AssumeRole"}]})

        arn = iam.create_role(RoleName="analyst", AssumeRolePolicyDocument=trust(trusted))["Role"]["Arn"]
        iam.put_role_policy(RoleName="analyst", PolicyName="all", PolicyDocument=json.dumps(admin))
        with open(os.environ["AWS_CONFIG_FILE"], "a") as config:
            config.write(f"\n[profile analyst]\nrole_arn = {arn}\nsource_profile = alice\nregion = us-east-1\n")
        try:
            with as_user("analyst"), sb.enforce_iam():
                sb.reset_calls()
                with pytest.raises(ForwardingImpossible) as refused:
                    dam.up("fargate-data", progress=False)
                message = str(refused.value)
                assert "role analyst" in message or "role/analyst" in message
                for way in ("Remove `data.s3`", "assume itself", "data.credentials: role", "data.credentials: none"):
                    assert way in message
                _nothing_created(sb, home)

                # Unscoped, the nodes get the role session's own credentials.
                plan = dam.plan("fargate-open")
                assert "your role session's own credentials" in " ".join(plan.notes)
                handle = dam.up("fargate-open", progress=False)
                try:
                    handle.client.wait_for_workers(1, timeout=60)
                    assert handle.record.owner == f"arn:aws:iam::{ACCOUNT}:role/analyst"  # the role owns it
                    [session] = set(handle.client.run(_identity).values())  # the nodes act as the session `up` used
                    assert session.startswith(f"arn:aws:sts::{ACCOUNT}:assumed-role/analyst/")
                    assert handle.client.submit(_get, "secret/salaries.csv", pure=False).result().startswith("name,")
                finally:
                    handle.down()

            iam.update_assume_role_policy(RoleName="analyst", PolicyDocument=trust([*trusted, arn]))
            with as_user("analyst"), sb.enforce_iam():
                handle = dam.up("fargate-data", progress=False)
                try:
                    handle.client.wait_for_workers(1, timeout=60)
                    assert set(handle.client.run(_identity).values()) == {
                        f"arn:aws:sts::{ACCOUNT}:assumed-role/analyst/dask-aws-magic-{handle.record.cluster_id}"}
                    assert handle.client.submit(_get, "in/csv/0.csv", pure=False).result().startswith("timestamp")
                    assert handle.client.submit(_get, "secret/salaries.csv", pure=False).result().startswith(
                        "refused: AccessDenied")
                finally:
                    handle.down()
        finally:
            iam.delete_role_policy(RoleName="analyst", PolicyName="all")
            iam.delete_role(RoleName="analyst")


@pytest.mark.parametrize(("override", "field"), [
    ({"data.s3": ["lake/in"]}, "data.s3.0"),
    ({"data.s3": ["s3://Lake_Bucket/in"]}, "data.s3[0]"),
    ({"data.s3": ["s3://lake/in/*"]}, "data.s3[0]"),
    ({"data.s3": [{"url": "s3://lake/out", "write": "yes"}]}, "data.s3.0"),
    ({"data.credentials": "sometimes"}, "data.credentials"),
    ({"data.credentials": "role"}, "instance.iam_instance_profile"),
    ({"network.tls": False, "data.credentials": "forward"}, "network.tls"),
])
def test_bad_data_fields_are_clear_errors_and_create_nothing(home, override, field):
    with lake(home) as sb:
        sb.reset_calls()
        with pytest.raises(ProfileError) as refused:
            dam.up("ec2-data", overrides=override, progress=False)
        message = str(refused.value)
        assert f"`{field}`" in message and "Traceback" not in message
        assert not sb.calls()  # refused before any AWS call
        assert not registry.scan()[0]


KERNEL_CELLS = [
    "%load_ext dask_aws_magic\n%dask_cluster sandbox start",
    # The user alice and her bucket; then this kernel acts as alice, with IAM enforced.
    "import os, boto3\nfrom dask_aws_magic.sandbox import current\nsb = current()\n"
    "sb.add_credentials_profile('alice', account_id='123456789012')\n"
    "boto3.client('iam').attach_user_policy(UserName='sandbox-alice', "
    "PolicyArn='arn:aws:iam::aws:policy/AdministratorAccess')\n"
    "s3 = boto3.client('s3')\ns3.create_bucket(Bucket='lake')\n"
    "s3.put_object(Bucket='lake', Key='in/a.csv', Body=b'x,y\\n1,2\\n3,4\\n')\n"
    "s3.put_object(Bucket='lake', Key='secret/b.csv', Body=b'x,y\\n5,6\\n')\n"
    "for key in ('AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'):\n    os.environ.pop(key)\n"
    "os.environ['AWS_PROFILE'] = 'alice'\nboto3.DEFAULT_SESSION = None\n"
    "enforcing = sb.enforce_iam()\nenforcing.__enter__()",
    "%%dask_cluster up -n lake\nbackend: fargate\nworker: {count: 1}\n"
    "ecs: {scheduler: {cpu: 0.5, memory: 1GiB}, worker: {cpu: 1, memory: 2GiB}}\ndata: {s3: [s3://lake/in]}",
    "import dask.dataframe as dd\nclient.wait_for_workers(1)\nprint(dd.read_csv('s3://lake/in/*.csv').x.sum().compute())",
    "try:\n    dd.read_csv('s3://lake/secret/*.csv').x.sum().compute()\nexcept PermissionError as exc:\n"
    "    print('refused', type(exc).__name__)",
    "from dask_aws_magic.faces import handle\n"
    "print('renewing', any(h._refresher is not None and h._refresher.running for h in list(handle._open)))",
    "%dask_cluster down lake",
    "enforcing.__exit__(None, None, None)\nfor key in ('in/a.csv', 'secret/b.csv'):\n"
    "    s3.delete_object(Bucket='lake', Key=key)\ns3.delete_bucket(Bucket='lake')\nprint(sb.resources())",
    "%dask_cluster sandbox stop",
]


@pytest.mark.kernel
def test_a_notebook_reads_its_users_bucket_through_a_real_kernel(home):
    import nbformat
    from nbclient import NotebookClient

    from .test_kernel import outputs

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in KERNEL_CELLS])
    NotebookClient(notebook, timeout=240, kernel_name="python3").execute()
    seen = [outputs(cell) for cell in notebook.cells]
    assert "ready" in seen[2], seen
    assert seen[3].strip() == "4"
    assert seen[4].strip() == "refused PermissionError"
    assert seen[5].strip() == "renewing True"
    assert "lake: " in seen[6]
    assert seen[7].strip() == "{}"


def test_without_tls_nothing_is_forwarded_unless_asked_and_then_refused(home):
    with lake(home):
        notes = " ".join(dam.plan("ec2-data", overrides={"network.tls": False}).notes)
        assert "no credentials for your data reach the nodes (`network.tls: false`" in notes
        assert "(`data.s3` is ignored" in notes


def test_only_the_owner_renews_them(home):
    from dask_aws_magic.core.naming import same_owner
    from dask_aws_magic.faces.handle import ClusterHandle

    assert same_owner("arn:aws:sts::1:assumed-role/r/session-a", "arn:aws:sts::1:assumed-role/r/session-b")
    assert not same_owner("arn:aws:sts::1:assumed-role/r/s", "arn:aws:sts::1:assumed-role/other/s")
    assert not same_owner("arn:aws:iam::1:user/bob", "arn:aws:iam::1:user/alice")
    with lake(home, credential_lifetime=12.0) as sb, sb.enforce_iam():
        handle = dam.up("fargate-data", progress=False)
        try:
            handle.close()  # alice's kernel lets go; bob, who may do anything, connects
            sb.add_credentials_profile("bob", account_id=ACCOUNT)
            boto3.client("iam").attach_user_policy(UserName="sandbox-bob",
                                                   PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
            with as_user("bob"):
                other = ClusterHandle(registry.read("fargate-data"))
                other.connect()
                try:
                    deadline = time.time() + 30
                    while other._refresher.problem is None and time.time() < deadline:
                        time.sleep(0.5)
                    assert "not the owner of fargate-data" in str(other._refresher.problem)
                    assert other._refresher.renewals == 0
                    alice = {s.access_key_id for s in sb.issued_credentials()
                             if s.kind == "federated-user" and s.user_name == "sandbox-alice"}
                    assert alice and not [s for s in sb.issued_credentials() if s.user_name == "sandbox-bob"]
                finally:
                    other.close()
        finally:
            handle.down()


def test_more_locations_than_a_session_policy_holds_are_refused_by_plan(home):
    many = [f"s3://lake/in/folder-number-{i:03d}/with/a/long/path" for i in range(40)]
    with lake(home) as sb:
        sb.reset_calls()
        with pytest.raises(ForwardingImpossible, match=r"`data.s3` names more locations than a session policy"):
            dam.plan("ec2-data", overrides={"data.s3": many})
        made = [c for c in sb.calls() if c.split(":")[1].startswith(("Create", "Run", "GetFederation"))]
        assert not made
