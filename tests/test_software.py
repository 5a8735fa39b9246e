"""Issue 15, the user's software on the nodes (``software.sync``), in the AWS sandbox with IAM enforced:
the kernel's editable package importable on the workers after ``up``; the second ``up`` of the same
environment fetches one archive and installs nothing; nodes cannot replace an archive nor read another
environment; ``software.image`` and ``software.sync: false`` turn it off; what cannot be reproduced is
listed by ``plan``; a version mismatch is one line at connect; bad input names the field."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
import urllib.error
from pathlib import Path

import boto3
import nbformat
import pytest
from nbclient import NotebookClient

import dask_aws_magic as dam
from dask_aws_magic.aws import environments, fetch_secret, sync_environment
from dask_aws_magic.backends import environment
from dask_aws_magic.core import versions
from dask_aws_magic.core.errors import LaunchError, ProfileError

from .conftest import aws_sandbox
from .test_kernel import outputs

pytestmark = pytest.mark.sandbox

ACCOUNT = "123456789012"
PROFILE = """\
backend: ec2
region: us-east-1
aws_profile: admin
scheduler: {type: t3.medium}
worker: {type: m6i.large, count: 1}
"""


@pytest.fixture
def sb(home):
    with aws_sandbox(home, {"synced": PROFILE}) as sandbox:
        yield sandbox


def _project(folder: Path, name: str, version: str, body: str, extra: str = "") -> Path:
    """A small setuptools project ``name`` in ``folder``."""
    (folder / name).mkdir(parents=True)
    (folder / name / "__init__.py").write_text(textwrap.dedent(body))
    (folder / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{name}"
        version = "{version}"
        {extra}
        [tool.setuptools]
        packages = ["{name}"]
        """))
    return folder


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """A kernel whose Python sees a package the nodes' Python does not: a light venv whose .pth adds this
    venv's site-packages, with the test's package installed editable into it only; its kernelspec."""
    base = tmp_path_factory.mktemp("kernel")
    project = _project(base / "syncpkg-src", "syncpkg", "0.1.0", """\
        VALUE = "synced-1"

        def double(x):
            return 2 * x
        """)
    venv = base / "kenv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    Path(site, "zz_test_venv.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check",
                    "-e", str(project)], check=True, capture_output=True)
    kernels = base / "share" / "kernels" / "synckernel"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "sync test kernel", "language": "python"}))
    assert subprocess.run([sys.executable, "-c", "import syncpkg"], capture_output=True).returncode != 0
    return {"python": python, "jupyter_path": str(base / "share"), "project": project}


@pytest.mark.kernel
@pytest.mark.timeout(420)
def test_the_kernels_editable_package_reaches_the_workers_and_the_second_up_fetches_one_archive(
        home, kernel_env, monkeypatch):
    monkeypatch.setenv("JUPYTER_PATH", kernel_env["jupyter_path"])
    (home / "profiles").mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, text in {"synced": PROFILE, "unsynced": "extends: synced\nsoftware: {sync: false}\n"}.items():
        (home / "profiles" / f"{name}.yaml").write_text(text)
    notebook = nbformat.v4.new_notebook()
    client = NotebookClient(notebook, timeout=300, kernel_name="synckernel")

    with client.setup_kernel():
        def run(source: str) -> str:
            cell = nbformat.v4.new_code_cell(textwrap.dedent(source))
            notebook.cells.append(cell)
            client.execute_cell(cell, len(notebook.cells) - 1)
            return outputs(cell)

        run(f"""\
            %load_ext dask_aws_magic
            import json, boto3, syncpkg
            from dask_aws_magic.sandbox import Sandbox
            sb = Sandbox(image={sys.executable!r}).start()  # the nodes' Python: the tests', without syncpkg
            sb_home = {str(home)!r}
            sb.add_credentials_profile("admin", account_id="123456789012")
            boto3.client("iam").attach_user_policy(UserName="sandbox-admin",
                PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
            """)

        def nodes_said() -> str:
            return run("""\
                from dask_aws_magic.core import registry
                made = registry.read("synced").resources
                ids = [made["scheduler"], *made["workers"]]
                print(json.dumps({i: [l for l in sb.console_output(i).splitlines() if "software:" in l] for i in ids}))
                """)

        up = run("""\
            with sb.enforce_iam():
                %dask_cluster up synced --wait-workers 1
            """)
        assert "ready" in up and "differ from this kernel" not in up, up
        assert run("client.submit(syncpkg.double, 21).result()") == "42"  # pickled by reference: imported there
        where = run("print(set(client.run(lambda: __import__('syncpkg').__file__).values()))")
        assert "/opt/dask-aws-magic/software/site/syncpkg/__init__.py" in where
        first = json.loads(nodes_said())
        scheduler = first.pop(run("print(registry.read('synced').resources['scheduler'])").strip())
        assert "installing 0 missing package(s), 1 local wheel(s)" in scheduler[0], scheduler
        assert "uploaded the environment archive" in scheduler[-1], scheduler
        for said in first.values():  # a worker installs too, or fetches the archive if the scheduler was first
            assert "installing 0 missing" in said[0] or "fetched the environment archive" in said[0], said
        run("%dask_cluster down synced")

        run("sb.reset_calls()")
        up = run("""\
            with sb.enforce_iam():
                %dask_cluster up synced --wait-workers 1
            """)
        assert "ready" in up, up
        calls = json.loads(run("print(json.dumps(sb.calls()))"))
        second = json.loads(nodes_said())
        assert len(second) == 2
        for said in second.values():  # no install ran: each node fetched the one archive
            assert any("fetched the environment archive" in line for line in said), second
            assert not any("installing" in line for line in said), second
        assert calls.get("s3:GetObject") == 2 * len(second)  # per node: the lock and the archive
        assert not calls.get("s3:PutObject"), calls  # nothing uploaded again
        assert run("client.submit(syncpkg.double, 4).result()") == "8"
        run("%dask_cluster down synced")

        # Fargate: the tasks read the environment with their task role (the container credentials endpoint)
        up = run(f"""\
            open(sb_home + "/profiles/fg-synced.yaml", "w").write({FARGATE!r})
            with sb.enforce_iam():
                %dask_cluster up fg-synced --wait-workers 1
            """)
        assert "ready" in up and "differ from this kernel" not in up, up
        assert run("client.submit(syncpkg.double, 5).result()") == "10"
        where = run("print(set(client.run(lambda: __import__('syncpkg').__file__).values()))")
        assert "/software/site/syncpkg/__init__.py" in where, where
        run("%dask_cluster down fg-synced")

        up = run("%dask_cluster up unsynced --wait-workers 1")
        assert "ready" in up
        line = [x for x in up.splitlines() if "differ from this kernel" in x]
        assert len(line) == 1 and "syncpkg 0.1.0 here, missing on the cluster" in line[0], up
        assert "Mismatched versions" not in up  # distributed's own table is not shown
        run("%dask_cluster down unsynced")
        leftovers = run("""\
            sb.remove_environment_buckets()
            print(json.dumps(sb.resources()))
            sb.stop()
            """)
        assert leftovers.splitlines()[0] == "{}", leftovers


def _instance_credentials(sb, instance_id, monkeypatch):
    monkeypatch.setattr(fetch_secret, "IMDS", f"{sb.metadata_url}{instance_id}/")
    return fetch_secret.credentials(fetch_secret.imds_token())


def test_a_node_cannot_replace_an_archive_nor_touch_another_environment(sb, home, monkeypatch):
    with sb.enforce_iam():
        handle = dam.up("synced", progress=False)
    try:
        sync = handle.record.settings["software"]["sync"]
        bucket, key = sync["bucket"], sync["key"]
        s3 = boto3.client("s3")
        archive = f"envs/{key}/archives/built-by-the-first-node.tar.gz"
        s3.put_object(Bucket=bucket, Key=archive, Body=b"the good archive")
        s3.put_object(Bucket=bucket, Key="envs/another-environment/lock.json", Body=b"{}")
        creds = _instance_credentials(sb, handle.record.resources["scheduler"], monkeypatch)
        node = sync_environment.S3(bucket, "us-east-1", creds)
        with sb.enforce_iam():
            assert json.loads(node.get(f"envs/{key}/lock.json"))["key"] == key  # its own environment
            with pytest.raises(urllib.error.HTTPError) as refused:  # a plain write is refused by IAM
                node.request("PUT", archive, b"poisoned")
            assert refused.value.code == 403
            assert node.put_new(archive, b"poisoned") is False  # a conditional write loses: S3 keeps the first
            assert node.put_new(f"envs/{key}/archives/new.tar.gz", b"x") is True  # adding one is allowed
            for other in ("envs/another-environment/lock.json", f"envs/{key}/lock.json"):
                with pytest.raises(urllib.error.HTTPError) as refused:
                    node.request("PUT", other, b"{}", {"If-None-Match": "*"})
                assert refused.value.code == 403
            assert node.get("envs/another-environment/lock.json") is None  # 403: not its environment
        assert s3.get_object(Bucket=bucket, Key=archive)["Body"].read() == b"the good archive"
    finally:
        handle.down()
    # `down` leaves the bucket, a cache: tagged, private, encrypted, expiring.
    s3 = boto3.client("s3")
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
    assert tags[environments.TAG_PURPOSE] == "environments" and tags["dask-aws-magic:owner"].endswith("sandbox-admin")
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    lifecycle = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert lifecycle[0]["Expiration"]["Days"] == environments.EXPIRE_DAYS
    assert not sb.resources() and sb.caches() == {"environment_buckets": [bucket]}
    boto3.client("s3").create_bucket(Bucket=f"{environments.bucket_name('111122223333', 'us-east-1')}")
    assert sb.resources() == {"s3_buckets": ["dask-aws-magic-envs-111122223333-us-east-1"]}  # untagged: a leak
    boto3.client("s3").delete_bucket(Bucket="dask-aws-magic-envs-111122223333-us-east-1")


def test_the_image_and_sync_false_turn_sync_off(sb, home):
    synced = dam.plan("synced")
    assert [r.kind for r in synced.resources].count("s3-bucket") == 1
    assert any(n.startswith("software.sync: ") for n in synced.notes)
    for override, why in ((["software.image=ghcr.io/dask/dask:latest"], "software.image wins"),
                          (["software.sync=false"], "software.sync is off")):
        plan = dam.plan("synced", override)
        assert "s3-bucket" not in [r.kind for r in plan.resources]
        assert plan.settings["software"]["sync"] is None
        assert any(why in note for note in plan.notes), plan.notes
    with sb.enforce_iam():
        handle = dam.up("synced", overrides=["software.sync=false"], progress=False)
    try:
        assert handle.client.submit(lambda: 1 + 1).result() == 2
        said = sb.console_output(handle.record.resources["scheduler"])
        assert "software:" not in said and "starting the scheduler" in said
        assert "s3_buckets" not in sb.resources()  # nothing made for it
    finally:
        handle.down()


def _dist(site: Path, name: str, version: str, *, installer: str = "pip", direct: dict | None = None,
          requires: list[str] = ()) -> None:
    """A distribution's metadata as an installer leaves it."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
             *(f"Requires-Dist: {r}" for r in requires)]
    (info / "METADATA").write_text("\n".join(lines) + "\n")
    (info / "INSTALLER").write_text(installer + "\n")
    if direct is not None:
        (info / "direct_url.json").write_text(json.dumps(direct))


def test_the_lock_builds_local_projects_and_lists_what_cannot_be_reproduced(tmp_path):
    site = tmp_path / "site"
    good = _project(tmp_path / "good-src", "goodpkg", "1.2.0", "X = 1\n")
    bare = tmp_path / "bare-src"
    bare.mkdir()
    (bare / "barepkg.py").write_text("X = 1\n")
    broken = _project(tmp_path / "broken-src", "brokenpkg", "0.1", "X = 1\n")
    (broken / "pyproject.toml").write_text("[build-system]\nrequires = []\nbuild-backend = 'nothing.here'\n")
    _dist(site, "plain", "1.0", requires=['winonly; sys_platform == "win32"', "dep>=1"])
    _dist(site, "dep", "2.0")
    _dist(site, "winonly", "3.0")
    _dist(site, "condapkg", "4.0", installer="conda")
    _dist(site, "goodpkg", "1.2.0", direct={"url": good.as_uri(), "dir_info": {"editable": True}})
    _dist(site, "barepkg", "0.1", direct={"url": bare.as_uri(), "dir_info": {}})
    _dist(site, "brokenpkg", "0.1", direct={"url": broken.as_uri(), "dir_info": {"editable": True}})
    _dist(site, "fromgit", "0.3", direct={"url": "https://example.invalid/x.git",
                                          "vcs_info": {"vcs": "git", "commit_id": "abc123"}})
    _dist(site, "private", "0.9", direct={"url": "https://me:s3cr3t-token@example.invalid/private-0.9.tar.gz",
                                          "archive_info": {}})
    _dist(site, "kerneltool", "9.0")
    _dist(site, "pip", "24.0")

    lock = environment.lock(python="3.11", arch="x86_64", exclude=["kerneltool"], pip=["s3fs"], paths=[str(site)],
                            wheel_dir=str(tmp_path / "wheels"))
    assert lock.pins == ["dep==2.0", "plain==1.0"]
    assert lock.direct == ["fromgit @ git+https://example.invalid/x.git@abc123"]
    assert [(w.name, w.version) for w in lock.wheels] == [("goodpkg", "1.2.0")]
    assert lock.wheels[0].file.startswith("goodpkg-1.2.0-") and os.path.isfile(lock.wheels[0].path)
    left = {item.name: item for item in lock.left_out}
    assert sorted(left) == ["barepkg", "brokenpkg", "condapkg", "private", "winonly"]
    assert "credentials" in left["private"].reason and "s3cr3t" not in json.dumps(lock.to_json())
    assert "sys_platform" in left["winonly"].reason
    assert "conda" in left["condapkg"].reason and "software.pip" in left["condapkg"].fix
    assert "no pyproject.toml" in left["barepkg"].reason and "pyproject.toml" in left["barepkg"].fix
    assert "building a wheel" in left["brokenpkg"].reason
    # The key is stable across builds of the same tree, and follows the code.
    again = environment.lock(python="3.11", arch="x86_64", exclude=["kerneltool"], pip=["s3fs"], paths=[str(site)],
                             wheel_dir=str(tmp_path / "wheels"))
    assert again.key == lock.key
    (good / "goodpkg" / "__init__.py").write_text("X = 2\n")
    changed = environment.lock(python="3.11", arch="x86_64", exclude=["kerneltool"], pip=["s3fs"],
                               paths=[str(site)], wheel_dir=str(tmp_path / "wheels"))
    assert changed.key != lock.key
    assert environment.lock(python="3.11", arch="arm64", exclude=["kerneltool"], pip=["s3fs"], paths=[str(site)],
                            wheel_dir=str(tmp_path / "wheels")).key != changed.key


def test_metadata_read_from_headers_matches_importlib(tmp_path):
    # Nodes and the kernel read every distribution's METADATA header lines instead of importlib's email
    # parser (ten times slower): both must agree on every distribution installed here. A header folded over
    # two lines is unfolded (importlib keeps the fold), and a description that looks like a header is not one,
    # with Windows line ends too.
    from importlib import metadata

    seen = 0
    for dist in metadata.distributions():
        assert sync_environment.core_metadata(dist) == (dist.metadata["Name"], dist.version,
                                                        list(dist.requires or [])), dist.metadata["Name"]
        seen += 1
    assert seen > 50
    info = tmp_path / "folded-1.0.dist-info"
    info.mkdir()
    headers = 'Metadata-Version: 2.1\nName: folded\nVersion: 1.0\nRequires-Dist: a>=1;\n python_version < "4"\n'
    (info / "METADATA").write_bytes(f"{headers}Requires-Dist: b\n\nName: not-this\nRequires-Dist: c\n"
                                    .replace("\n", "\r\n").encode())
    folded = sync_environment.core_metadata(metadata.PathDistribution(info))
    assert folded == ("folded", "1.0", ['a>=1; python_version < "4"', "b"])


def test_plan_lists_what_cannot_be_reproduced(sb, home, tmp_path, monkeypatch):
    site = tmp_path / "site"
    _dist(site, "condapkg", "4.0", installer="conda")
    monkeypatch.syspath_prepend(str(site))
    plan = dam.plan("synced")
    note = next(n for n in plan.notes if "cannot reproduce" in n)
    assert "condapkg 4.0: installed by conda" in note and "software.pip" in note
    assert not any("condapkg" in pin for pin in plan.settings["software"]["sync"]["lock"]["pins"])
    assert "condapkg" not in " ".join(n for n in dam.plan("synced", ["software.exclude=[condapkg]"]).notes)


@pytest.mark.parametrize(("override", "field"), [
    ("software.sync=maybe", "`software.sync` is 'maybe', but must be of type boolean"),
    ("software.exclude=[black==22.1]", "`software.exclude.0` is 'black==22.1', which is not in the expected form"),
    ("software.exclude=[./tools]", "`software.exclude.0` is './tools'"),
    ("software.exclude=black", "`software.exclude` is 'black', but must be of type array"),
])
def test_bad_sync_settings_name_the_field(home, override, field):
    with pytest.raises(ProfileError) as bad:
        dam.plan("ec2-small", [override])
    assert field in str(bad.value) and "Traceback" not in str(bad.value)


def test_a_mismatch_is_one_line_with_both_versions_and_the_fix():
    here = {"python": "3.11", "pandas": "2.2.1", "syncpkg": "0.1.0", "ipykernel": "7.4.0", "dask": "2026.8.0"}
    there = {"w1": {"python": "3.11", "pandas": "2.1.0", "syncpkg": None, "ipykernel": None, "dask": "2026.8.0"},
             "w2": {"python": "3.12", "pandas": "2.1.0", "syncpkg": None, "dask": "2026.8.0"}}
    found = versions.compare(here, there, needed={"pandas", "syncpkg", "dask"})
    assert [(m.name, m.here, m.there) for m in found] == [
        ("pandas", "2.2.1", "2.1.0"), ("python", "3.11", "3.12"), ("syncpkg", "0.1.0", "missing")]
    line = versions.one_line(found, "big")
    assert "\n" not in line and "pandas 2.2.1 here, 2.1.0 on the cluster" in line
    assert "%dask_cluster down big" in line and "software.sync" in line
    assert versions.compare(here, {"w1": dict(here)}, needed={"pandas"}) == []


def test_a_bucket_name_taken_by_another_account_is_never_used(sb, home):
    sb.add_credentials_profile("squatter", root=True)  # an account of its own
    squatter = boto3.Session(profile_name="squatter").client("s3")
    bucket = environments.bucket_name(ACCOUNT, "us-east-1")
    squatter.create_bucket(Bucket=bucket)
    with sb.enforce_iam(), pytest.raises(LaunchError) as refused:
        dam.up("synced", progress=False)
    message = str(refused.value)
    assert bucket in message and "not in account 123456789012" in message and "software.sync: false" in message
    assert "torn down" in message and "Traceback" not in message
    assert "Contents" not in squatter.list_objects_v2(Bucket=bucket)  # nothing of ours went into it
    squatter.delete_bucket(Bucket=bucket)


FARGATE = """\
backend: fargate
region: us-east-1
aws_profile: admin
worker: {count: 1}
software: {sync: true}
ecs:
  scheduler: {cpu: 0.5, memory: 1GiB}
  worker: {cpu: 1, memory: 2GiB}
"""


def test_fargate_tasks_get_a_task_role_that_reads_only_their_environment(sb, home):
    """The task role made for a Fargate cluster may read its environment and add its archive, nothing
    else; the task definition names the environment and holds no credential; `down` deletes the role."""
    (home / "profiles" / "fg-sync.yaml").write_text(FARGATE)
    plan = dam.plan("fg-sync")
    assert {(r.kind, r.role) for r in plan.resources} >= {("s3-bucket", "environments"), ("iam-role", "task")}
    assert "s3-bucket" not in [r.kind for r in dam.plan("fg-sync", ["software.sync=false"]).resources]
    with sb.enforce_iam():
        handle = dam.up("fg-sync", progress=False)
    try:
        ecs, iam = (boto3.Session(profile_name="admin").client(name) for name in ("ecs", "iam"))
        definition = ecs.describe_task_definition(
            taskDefinition=handle.record.resources["task_definitions"]["worker"])["taskDefinition"]
        command = json.loads(definition["containerDefinitions"][0]["command"][-1])
        assert command["sync"]["bucket"] == environments.bucket_name(ACCOUNT, "us-east-1")
        assert "AWS_SECRET_ACCESS_KEY" not in json.dumps(definition) and "testing" not in json.dumps(definition)
        role = definition["taskRoleArn"].rsplit("/", 1)[-1]
        statements = iam.get_role_policy(RoleName=role, PolicyName="dask-aws-magic")["PolicyDocument"]["Statement"]
        key = command["sync"]["key"]
        assert {s["Resource"] for s in statements} == {
            f"arn:aws:s3:::{command['sync']['bucket']}/envs/{key}/*",
            f"arn:aws:s3:::{command['sync']['bucket']}/envs/{key}/archives/*"}
        assert handle.client.submit(lambda: 1 + 1).result() == 2
    finally:
        handle.down()
    assert not [r for r in boto3.client("iam").list_roles()["Roles"] if r["RoleName"].endswith("-task")]
