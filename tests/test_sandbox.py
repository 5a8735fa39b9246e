"""The sandbox against a real moto server, driven with plain boto3 (no mocks)."""

from __future__ import annotations

import gzip
import ipaddress
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from dask_aws_magic import sandbox
from dask_aws_magic.sandbox import Sandbox
from dask_aws_magic.sandbox.process import live_groups

pytestmark = pytest.mark.sandbox

AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
IMDS = '"${AWS_EC2_METADATA_SERVICE_ENDPOINT:-http://169.254.169.254/}latest'
SERVE_USER_DATA = f"""#!/bin/bash
T=$(curl -s -X PUT {IMDS}/api/token" -H "X-aws-ec2-metadata-token-ttl-seconds: 60")
IP=$(curl -s -H "X-aws-ec2-metadata-token: $T" {IMDS}/meta-data/local-ipv4")
echo "no-token-status=$(curl -s -o /dev/null -w '%{{http_code}}' {IMDS}/meta-data/local-ipv4")"
echo "hello from $IP" > index.html
echo "serving on $IP"
exec python3 -m http.server --bind "$IP" 8000
"""


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")
        time.sleep(interval)


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox() as running:
        yield running


def run(ec2: Any, user_data: str | None = None, count: int = 1, **kwargs: Any) -> list[str]:
    if user_data is not None:
        kwargs["UserData"] = user_data
    ami = boto3.client("ssm").get_parameter(Name=AMI_PARAMETER)["Parameter"]["Value"]
    reply = ec2.run_instances(ImageId=ami, MinCount=count, MaxCount=count, InstanceType="t3.micro", **kwargs)
    return [i["InstanceId"] for i in reply["Instances"]]


def describe(ec2: Any, instance_id: str) -> dict[str, Any]:
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


def state(ec2: Any, instance_id: str) -> str:
    return str(describe(ec2, instance_id)["State"]["Name"])


def http_get(url: str, timeout: float = 1.0) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return str(reply.read().decode())
    except OSError:
        return None


def test_environment_is_set_and_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "real-profile")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "real-token")
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", "https://elsewhere.example")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    before = dict(os.environ)
    with Sandbox(region="us-west-2") as sb:
        assert sb.endpoint_url.startswith("http://127.0.0.1:")
        assert os.environ["AWS_ENDPOINT_URL"] == sb.endpoint_url
        assert os.environ["AWS_REGION"] == os.environ["AWS_DEFAULT_REGION"] == "us-west-2"
        assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_EC2"):
            assert name not in os.environ
        assert not os.path.exists(os.environ["AWS_SHARED_CREDENTIALS_FILE"])
        ec2 = boto3.client("ec2")
        assert ec2.meta.region_name == "us-west-2"
        ec2.describe_instances()
        assert sb.calls()["ec2:DescribeInstances"] == 1
        assert sandbox.current() is sb
    assert dict(os.environ) == before
    assert sandbox.current() is None


def test_instances_run_user_data_and_serve_http(sb: Sandbox) -> None:
    ec2 = boto3.client("ec2")
    ids = run(ec2, SERVE_USER_DATA, count=3)
    wait_for(lambda: len(sb.processes()) == 3)
    ips = []
    for instance_id in ids:
        instance = describe(ec2, instance_id)
        ip = instance["PrivateIpAddress"]
        assert instance["PublicIpAddress"] == ip
        assert instance["NetworkInterfaces"][0]["Association"]["PublicIp"] == ip
        assert ipaddress.IPv4Address(ip) in ipaddress.IPv4Network("127.0.0.0/8")
        assert ipaddress.IPv4Address(ip) not in ipaddress.IPv4Network("127.0.0.0/16")
        ips.append(ip)
    assert len(set(ips)) == 3
    for ip in ips:
        assert wait_for(lambda ip=ip: http_get(f"http://{ip}:8000/index.html")) == f"hello from {ip}\n"
    first = ids[0]
    output = ec2.get_console_output(InstanceId=first)["Output"]  # botocore decodes the base64
    assert f"serving on {ips[0]}" in output
    assert "no-token-status=401" in output
    assert output == sb.console_output(first)


def test_reported_ip_can_be_bound(sb: Sandbox) -> None:
    ec2 = boto3.client("ec2")
    ip = describe(ec2, run(ec2)[0])["PrivateIpAddress"]
    with socket.socket() as s:
        s.bind((ip, 0))
        s.listen()
        with socket.create_connection(s.getsockname(), timeout=1):
            pass


def test_boot_delay_keeps_instances_pending() -> None:
    with Sandbox(boot_delay=0.8) as sb:
        ec2 = boto3.client("ec2")
        started = time.monotonic()
        (instance_id,) = run(ec2, "#!/bin/sh\nsleep 60\n")
        assert state(ec2, instance_id) == "pending"
        assert not sb.processes()
        wait_for(lambda: state(ec2, instance_id) == "running", interval=0.01)
        assert time.monotonic() - started >= 0.8
        wait_for(lambda: instance_id in sb.processes())


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_terminate_kills_the_process_group(sb: Sandbox) -> None:
    ec2 = boto3.client("ec2")
    (instance_id,) = run(ec2, "#!/bin/bash\nsleep 300 &\necho child=$!\nsleep 300\n")
    pgid = wait_for(lambda: sb.processes().get(instance_id))
    child = int(wait_for(lambda: sb.console_output(instance_id).partition("child=")[2].split("\n")[0]))
    assert pid_exists(pgid) and pid_exists(child)
    ec2.terminate_instances(InstanceIds=[instance_id])
    wait_for(lambda: not pid_exists(pgid), timeout=3)
    assert not live_groups({pgid})
    assert instance_id not in sb.processes()
    assert state(ec2, instance_id) == "terminated"


def test_user_data_exiting_does_not_end_the_instance(sb: Sandbox) -> None:
    ec2 = boto3.client("ec2")
    (instance_id,) = run(ec2, "echo done\n")
    wait_for(lambda: "done" in sb.console_output(instance_id))
    time.sleep(0.2)
    assert state(ec2, instance_id) == "running"


@pytest.mark.parametrize(("behaviour", "final"), [("terminate", "terminated"), ("stop", "stopped")])
def test_shutdown_from_user_data(sb: Sandbox, behaviour: str, final: str) -> None:
    ec2 = boto3.client("ec2")
    (instance_id,) = run(
        ec2,
        "#!/bin/bash\necho bye\nshutdown -h now\nsleep 300\n",
        InstanceInitiatedShutdownBehavior=behaviour,
    )
    wait_for(lambda: state(ec2, instance_id) == final, timeout=3)
    assert describe(ec2, instance_id)["StateReason"]["Code"] == "Client.InstanceInitiatedShutdown"
    wait_for(lambda: instance_id not in sb.processes(), timeout=3)
    assert "bye" in sb.console_output(instance_id)


def test_python_gzip_user_data_uses_the_test_interpreter(sb: Sandbox) -> None:
    ec2 = boto3.client("ec2")
    script = (
        b"#!/usr/bin/env python3\nimport os, sys\nprint('exe', sys.executable)\nprint('keys', sorted(os.environ))\n"
    )
    (instance_id,) = run(ec2, gzip.compress(script))  # type: ignore[arg-type]
    output = wait_for(lambda: "keys" in sb.console_output(instance_id) and sb.console_output(instance_id))
    assert os.path.realpath(output.split("exe ")[1].split()[0]) == os.path.realpath(sys.executable)
    assert "AWS_ACCESS_KEY_ID" not in output and "AWS_SECRET_ACCESS_KEY" not in output  # only the role's, via IMDS
    assert "AWS_EC2_METADATA_SERVICE_ENDPOINT" in output and "'AWS_ENDPOINT_URL'" in output  # AWS's API, reachable


def test_instance_metadata_service(sb: Sandbox) -> None:
    ec2 = boto3.client("ec2")
    (instance_id,) = run(
        ec2,
        "#!/bin/sh\nsleep 60\n",
        InstanceMarketOptions={"MarketType": "spot"},
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "worker-1"}]}],
    )
    base = f"{sb.metadata_url}{instance_id}/latest/"
    token_request = urllib.request.Request(
        base + "api/token", method="PUT", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}
    )
    token = urllib.request.urlopen(token_request, timeout=2).read().decode()

    def get(path: str) -> str:
        request = urllib.request.Request(base + path, headers={"X-aws-ec2-metadata-token": token})
        return str(urllib.request.urlopen(request, timeout=2).read().decode())

    assert get("meta-data/instance-id") == instance_id
    assert get("meta-data/instance-life-cycle") == "spot"
    assert get("meta-data/tags/instance/Name") == "worker-1"
    assert get("meta-data/placement/region") == "us-east-1"
    assert get("meta-data/local-ipv4") == get("meta-data/public-ipv4")
    assert get("user-data") == "#!/bin/sh\nsleep 60\n"
    assert '"instanceId": "' + instance_id in get("dynamic/instance-identity/document")
    with pytest.raises(urllib.error.HTTPError) as missing:
        get("meta-data/spot/instance-action")
    assert missing.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as unauthorized:
        urllib.request.urlopen(base + "meta-data/instance-id", timeout=2)
    assert unauthorized.value.code == 401


def test_fault_with_match_fails_spot_only(sb: Sandbox) -> None:
    ec2 = boto3.client("ec2")
    fault = sb.inject_fault(
        action="ec2:RunInstances",
        code="InsufficientInstanceCapacity",
        message="no spot capacity",
        match={"InstanceMarketOptions.MarketType": "spot"},
    )
    with pytest.raises(ClientError) as failed:
        run(ec2, InstanceMarketOptions={"MarketType": "spot"})
    assert failed.value.response["Error"] == {
        "Code": "InsufficientInstanceCapacity",
        "Message": "no spot capacity",
    }
    assert fault.remaining == 0
    assert run(ec2)  # on-demand is unaffected
    assert run(ec2, InstanceMarketOptions={"MarketType": "spot"})  # the fault was used up
    assert sb.calls()["ec2:RunInstances"] == 3


def test_fault_on_json_protocol(sb: Sandbox) -> None:
    sb.inject_fault("ssm:GetParameter", "ParameterNotFound", times=2)
    ssm = boto3.client("ssm")
    for _ in range(2):
        with pytest.raises(ssm.exceptions.ParameterNotFound):
            ssm.get_parameter(Name="/x")


def test_delay_holds_a_request_then_serves_it(sb: Sandbox) -> None:
    ec2 = boto3.client("ec2")
    ami = boto3.client("ssm").get_parameter(Name=AMI_PARAMETER)["Parameter"]["Value"]
    launched: list[str] = []

    def launch() -> None:
        reply = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)
        launched.extend(i["InstanceId"] for i in reply["Instances"])

    delay = sb.delay("ec2:RunInstances", 1.0)
    started = time.monotonic()
    thread = threading.Thread(target=launch)
    thread.start()
    wait_for(lambda: sb.calls()["ec2:RunInstances"] == 1)  # counted on arrival, then held
    assert ec2.describe_instances()["Reservations"] == []  # other requests are served meanwhile
    thread.join(timeout=10)
    assert time.monotonic() - started >= 1.0
    assert len(launched) == 1 and delay.remaining == 0
    started = time.monotonic()
    launch()  # used up: answered at once
    assert time.monotonic() - started < 0.5

    sb.delay("ec2:RunInstances", 60.0, times=None)
    thread = threading.Thread(target=launch)
    thread.start()
    wait_for(lambda: sb.calls()["ec2:RunInstances"] == 3)
    sb.clear_delays()  # lets the held request go
    thread.join(timeout=5)
    assert not thread.is_alive() and len(launched) == 3


def test_calls_are_counted(sb: Sandbox) -> None:
    ec2, iam = boto3.client("ec2"), boto3.client("iam")
    ec2.describe_instances()
    sb.reset_calls()
    ec2.describe_instances()
    ec2.describe_instances()
    iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")
    boto3.client("ssm").put_parameter(Name="/p", Value="v", Type="String")
    boto3.client("s3").create_bucket(Bucket="sandbox-bucket")
    assert sb.calls() == {
        "ec2:DescribeInstances": 2,
        "iam:CreateRole": 1,
        "ssm:PutParameter": 1,
        "s3:CreateBucket": 1,
    }


def test_resources_list_leftovers_until_cleaned_up(sb: Sandbox) -> None:
    ec2 = boto3.client("ec2")
    assert not sb.resources()
    group = ec2.create_security_group(GroupName="dask", Description="dask")["GroupId"]
    (instance_id,) = run(ec2, SecurityGroupIds=[group])
    left = sb.resources()
    assert left["security_groups"] == [group]
    assert left["instances"] == [instance_id]
    ec2.terminate_instances(InstanceIds=[instance_id])
    ec2.delete_security_group(GroupId=group)
    assert sb.resources() == {}


def test_default_ami_lookup(sb: Sandbox) -> None:
    name = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
    ami = boto3.client("ssm").get_parameter(Name=name)["Parameter"]["Value"]
    ec2 = boto3.client("ec2")
    assert ec2.describe_images(ImageIds=[ami])["Images"][0]["ImageId"] == ami
    reply = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)
    assert reply["Instances"][0]["ImageId"] == ami


def test_describe_instance_types(sb: Sandbox) -> None:
    types = boto3.client("ec2").describe_instance_types(InstanceTypes=["m5.large"])["InstanceTypes"]
    assert types[0]["VCpuInfo"]["DefaultVCpus"] == 2
    assert types[0]["MemoryInfo"]["SizeInMiB"] == 8192


def test_stop_leaves_no_process() -> None:
    sb = sandbox.start()
    assert sandbox.start() is sb and sandbox.current() is sb
    ec2 = boto3.client("ec2")
    run(ec2, "#!/bin/bash\nsleep 300 &\npython3 -c 'import time; time.sleep(300)'\n", count=2)
    groups = set(wait_for(lambda: len(sb.processes()) == 2 and sb.processes()).values())
    sandbox.stop()
    assert sandbox.current() is None
    assert not live_groups(groups)
    with pytest.raises(RuntimeError):
        sb.processes()


def test_instance_processes_die_with_the_test_process(tmp_path: Any) -> None:
    driver = tmp_path / "driver.py"
    driver.write_text(
        "import os, time, boto3\n"
        "from dask_aws_magic.sandbox import Sandbox\n"
        f"sb = Sandbox(workdir={str(tmp_path / 'instances')!r}).start()\n"
        f"ami = boto3.client('ssm').get_parameter(Name={AMI_PARAMETER!r})['Parameter']['Value']\n"
        "boto3.client('ec2').run_instances(ImageId=ami, MinCount=1, MaxCount=1,\n"
        "    UserData='#!/bin/bash\\nsleep 300 &\\nsetsid sleep 301 &\\nsleep 302\\n')\n"
        "while not sb.processes(): time.sleep(0.01)\n"
        "time.sleep(0.3)\n"
        "print(*sb.processes().values(), flush=True)\n"
        "os._exit(0)  # no clean-up: the children must go by themselves\n"
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    done = subprocess.run([sys.executable, str(driver)], capture_output=True, text=True, timeout=30, env=env)
    pgid = int(done.stdout.split()[0])
    wait_for(lambda: not live_groups({pgid}) and not _sleepers(), timeout=3)


def _sleepers() -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if cmdline.startswith(("sleep 300 ", "sleep 301 ", "sleep 302 ")):
            found.append(cmdline)
    return found


WRITE_ROOT = """#!/bin/bash
mkdir -p "$SANDBOX_INSTANCE_ROOT/opt/app" && cd "$SANDBOX_INSTANCE_ROOT/opt/app"
ID=$(basename "$(dirname "$SANDBOX_INSTANCE_ROOT")")
echo "secret of $ID" > key.pem
echo "root=$SANDBOX_INSTANCE_ROOT"
echo "mine=$(cat key.pem)"
sleep 300
"""


def test_each_instance_has_its_own_root(sb: Sandbox) -> None:
    ec2 = boto3.client("ec2")
    ids = run(ec2, WRITE_ROOT, count=2)
    outputs = [wait_for(lambda i=i: "mine=" in sb.console_output(i) and sb.console_output(i)) for i in ids]
    roots = {out.split("root=")[1].split()[0] for out in outputs}
    assert len(roots) == 2 and not os.path.exists("/opt/app")  # nothing shared, nothing on the host's /
    for instance_id, out in zip(ids, outputs, strict=True):
        assert f"mine=secret of {instance_id}" in out
    ec2.terminate_instances(InstanceIds=ids)
    for root in roots:  # once ended, only the console output is left: no key material
        wait_for(lambda root=root: os.listdir(os.path.dirname(root)) == ["console.log"], timeout=5)
    assert all("mine=" in sb.console_output(i) for i in ids)


def test_package_managers_never_run_on_the_host(sb: Sandbox) -> None:
    ec2 = boto3.client("ec2")
    commands = ["dnf install -y htop", "yum install -y htop", "apt-get install -y htop", "pip install six",
                "pip3 install six", "python3 -m pip install six", "docker pull busybox"]
    script = "#!/bin/bash\n" + "".join(f"{c}; echo \"status=$?\"\n" for c in commands) + (
        'python3 -m venv --without-pip "$SANDBOX_INSTANCE_ROOT/env" && echo venv-ok\necho done\n')
    (instance_id,) = run(ec2, script)
    output = wait_for(lambda: "done" in sb.console_output(instance_id) and sb.console_output(instance_id), timeout=30)
    for command in commands:
        assert f"[sandbox] {command}: refused" in output
    assert output.count("status=1") == len(commands)
    assert "venv-ok" in output  # a venv under the instance's root is the instance's own business


def test_two_sandboxes_at_once_do_not_collide(sb: Sandbox, tmp_path: Any) -> None:
    driver = tmp_path / "driver.py"
    driver.write_text(
        "import sys, time, boto3\n"
        "from dask_aws_magic.sandbox import Sandbox\n"
        "with Sandbox() as sb:\n"
        f"    ami = boto3.client('ssm').get_parameter(Name={AMI_PARAMETER!r})['Parameter']['Value']\n"
        f"    ids = [i['InstanceId'] for i in boto3.client('ec2').run_instances(ImageId=ami, MinCount=2, MaxCount=2,"
        f" UserData={SERVE_USER_DATA!r})['Instances']]\n"
        "    while not all('serving on' in sb.console_output(i) for i in ids): time.sleep(0.05)\n"
        "    print(*[sb.console_output(i).split('serving on ')[1].split()[0] for i in ids], flush=True)\n"
        "    sys.stdin.readline()\n"
    )
    other = subprocess.Popen([sys.executable, str(driver)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        ec2 = boto3.client("ec2")
        ids = run(ec2, SERVE_USER_DATA, count=2)
        theirs = other.stdout.readline().split()  # type: ignore[union-attr]
        ours = [describe(ec2, i)["PrivateIpAddress"] for i in ids]
        assert len(theirs) == 2 and not set(theirs) & set(ours)
        for ip in [*ours, *theirs]:
            assert wait_for(lambda ip=ip: http_get(f"http://{ip}:8000/index.html")) == f"hello from {ip}\n"
    finally:
        other.communicate("\n", timeout=30)
    assert other.returncode == 0


def test_credentials_profiles_are_separate_accounts(sb: Sandbox) -> None:
    account = sb.add_credentials_profile("work", region="eu-west-1")
    work = boto3.Session(profile_name="work")
    assert work.client("sts").get_caller_identity()["Account"] == account
    assert boto3.client("sts").get_caller_identity()["Account"] != account
    ami = work.client("ssm", region_name="eu-west-1").get_parameter(Name=AMI_PARAMETER)["Parameter"]["Value"]
    mine = work.client("ec2", region_name="eu-west-1").run_instances(ImageId=ami, MinCount=1, MaxCount=1)
    assert not boto3.client("ec2", region_name="eu-west-1").describe_instances()["Reservations"]
    assert sb.resources()["instances"] == [mine["Instances"][0]["InstanceId"]]
    work.client("ec2", region_name="eu-west-1").terminate_instances(InstanceIds=[mine["Instances"][0]["InstanceId"]])
    assert not sb.resources()  # the profile's own user is the sandbox's, not a leftover


def test_requests_are_kept_and_faults_can_target_a_region(sb: Sandbox) -> None:
    sb.inject_fault("ec2:DescribeInstances", "UnauthorizedOperation", times=None, region="eu-west-1")
    boto3.client("ec2").describe_instances(Filters=[{"Name": "tag-key", "Values": ["x"]}])
    with pytest.raises(ClientError, match="UnauthorizedOperation"):
        boto3.client("ec2", region_name="eu-west-1").describe_instances()
    kept = sb.requests("ec2:DescribeInstances")
    assert [r["@region"] for r in kept] == ["us-east-1", "eu-west-1"] and kept[0]["Filter.1.Name"] == "tag-key"


def test_spot_prices_are_those_in_effect(sb: Sandbox) -> None:
    ec2 = boto3.client("ec2")
    now = ec2.describe_spot_price_history(InstanceTypes=["m6i.large"], StartTime=time.time())["SpotPriceHistory"]
    assert {h["SpotPrice"] for h in now} == {"0.032000"}  # a third of the on-demand list price
    assert len({h["AvailabilityZone"] for h in now}) == len(now) > 1  # one price per zone
    history = ec2.describe_spot_price_history(InstanceTypes=["m6i.large"])["SpotPriceHistory"]
    assert len(history) == 2 * len(now)  # without a StartTime: older prices too
    sb.set_spot_price("m6i.large", 0.05, zone="us-east-1a")
    sb.set_spot_price("t3.medium", None)
    now = ec2.describe_spot_price_history(InstanceTypes=["m6i.large", "t3.medium"], StartTime=time.time())
    prices = {(h["InstanceType"], h["AvailabilityZone"]): h["SpotPrice"] for h in now["SpotPriceHistory"]}
    assert prices[("m6i.large", "us-east-1a")] == "0.050000" and prices[("m6i.large", "us-east-1b")] == "0.032000"
    assert not any(t == "t3.medium" for t, _ in prices)


def test_enforced_iam_checks_bodiless_requests_signatures_as_aws_does(sb):
    # A REST GET (EFS) has no body: its signature covers an empty payload. moto hashed the parsed query
    # (or headers) instead and refused every such call; other protocols and a wrong key are unchanged.
    from .conftest import iam_user

    iam_user(sb, "efs-admin", "AdministratorAccess")
    iam_user(sb, "nobody")
    efs = boto3.Session(profile_name="efs-admin").client("efs")
    fs = efs.create_file_system(CreationToken="t")["FileSystemId"]
    try:
        with sb.enforce_iam():
            assert efs.describe_mount_targets(FileSystemId=fs)["MountTargets"] == []
            assert [f["FileSystemId"] for f in efs.describe_file_systems()["FileSystems"]] == [fs]
            admin = boto3.Session(profile_name="efs-admin")  # and the other protocols still pass: a form POST,
            assert admin.client("ec2").describe_instance_types(MaxResults=5)["InstanceTypes"]  # JSON, REST-XML
            assert admin.client("secretsmanager").list_secrets()["SecretList"] == []
            assert "Buckets" in admin.client("s3").list_buckets()
            with pytest.raises(ClientError, match="AccessDenied|not authorized"):
                boto3.Session(profile_name="nobody").client("efs").describe_file_systems()
            keys = boto3.Session(profile_name="efs-admin").get_credentials()
            forged = boto3.client("efs", aws_access_key_id=keys.access_key, aws_secret_access_key="x" * 40)
            with pytest.raises(ClientError, match="SignatureDoesNotMatch"):
                forged.describe_mount_targets(FileSystemId=fs)
    finally:
        efs.delete_file_system(FileSystemId=fs)
