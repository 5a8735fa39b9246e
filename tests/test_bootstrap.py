"""The user-data scripts: valid bash in every variant, small, and with no credential, key or env value."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from dask_aws_magic.backends.ec2 import userdata

SOFTWARE = dict(python="3.11", dask="2026.8.0", distributed="2026.8.0")


@pytest.mark.parametrize("role", ["scheduler", "worker"])
@pytest.mark.parametrize("variant", [
    {},
    {"pip": ["pandas>=2", "pyarrow"], "env": {"MY_VAR": "it's \"quoted\" $HOME"}},
    {"image": "ghcr.io/dask/dask:2026.8.0", "env": {"A": "s3cr3t-v4lue"}},
    {"sync": {"bucket": "dask-aws-magic-envs-123456789012-us-east-1", "key": "0123abcd", "lock": {}}},
])
@pytest.mark.parametrize("tls", [True, False])
def test_every_variant_is_valid_bash(role, variant, tls):
    spec = userdata.NodeSpec(
        role=role, cluster="c1", cluster_id="dam-1", software=userdata.Software(**SOFTWARE, **variant),
        secret="dask-aws-magic/dam-1/nodes", tls=tls, scheduler_ip="10.0.0.5", nprocs=2, nthreads=2,
        memory=4 * 2**30, idle_timeout=600, max_lifetime=3600,
    )
    script = userdata.user_data(spec)
    checked = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert checked.returncode == 0, checked.stderr
    assert len(script.encode()) < userdata.EC2_USER_DATA_LIMIT * 0.6  # room left for software.pip
    assert "AWS_SECRET_ACCESS_KEY" not in script and "AWS_ACCESS_KEY_ID" not in script
    assert "PRIVATE KEY" not in script and "CERTIFICATE" not in script  # the secret holds them
    for value in variant.get("env", {}).values():  # software.env travels in the secret too
        assert value not in script and shlex.quote(value) not in script
    assert "dask-aws-magic/dam-1/nodes" in script
    if variant.get("sync"):  # the sync script (from the secret) runs before Dask, and its folder goes first
        sync = script.index('"$D/sync_environment.py" dask-aws-magic-envs-123456789012-us-east-1 0123abcd')
        assert sync < script.index("distributed.cli") and 'PYTHONPATH="$D/software/site' in script
        assert "import base64" not in script  # the script itself is not in user-data
    if variant.get("image"):
        assert '$(sed "s/^/-e /" "$D/env.names")' in script and "docker run" in script
    if tls:
        assert "--protocol tls" in script or "tls://10.0.0.5:8786" in script
        assert ("DASK_DISTRIBUTED__SCHEDULER__DASHBOARD__TLS__CERT" in script) == (role == "scheduler")


@pytest.mark.parametrize("role", ["scheduler", "worker"])
def test_dask_line_is_the_shared_command(role):
    spec = userdata.NodeSpec(role=role, cluster="c", cluster_id="d", software=userdata.Software(**SOFTWARE),
                             secret="s", scheduler_ip="10.0.0.5", idle_timeout=600)
    line = next(x for x in userdata.user_data(spec).splitlines() if x.startswith("$RUN $PY "))
    assert shlex.split(line) == ["$RUN", "$PY", *userdata.dask_argv(spec)]
    assert '--host "$IP"' in line


def _spec(**software):
    return userdata.NodeSpec(role="scheduler", cluster="c", cluster_id="d", secret="s", tls=False,
                             software=userdata.Software(**{**SOFTWARE, **software}))


@pytest.mark.parametrize("check", ["QUICK_CHECK", "VERSIONS_CHECK"])
def test_versions_are_checked_without_importing_dask(check):
    import sys
    from importlib.metadata import version

    code = getattr(userdata, check)
    assert code in userdata.user_data(_spec())
    here = {"WANT_PYTHON": f"{sys.version_info.major}.{sys.version_info.minor}", "WANT_DASK": version("dask"),
            "WANT_DISTRIBUTED": version("distributed"), "WANT_BOKEH": "1"}
    checked = subprocess.run([sys.executable, "-X", "importtime", "-c", code], env=here, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    imported = {line.split("|")[-1].strip() for line in checked.stderr.splitlines()}
    assert not {m for m in imported if m.split(".")[0] in ("dask", "distributed", "bokeh")}
    for wrong in ({"WANT_DASK": "0.0.1"}, {"WANT_DISTRIBUTED": "0.0.1"}, {"WANT_PYTHON": "2.7"}):
        assert subprocess.run([sys.executable, "-c", code], env={**here, **wrong}).returncode == 1


def test_nothing_is_installed_with_the_system_pip_and_paths_follow_the_root():
    script = userdata.user_data(_spec(pip=["pandas"]))
    assert "python3 -m pip" not in script  # a system pip may refuse (PEP 668): venvs only
    assert 'python3 -m venv "$D/tools" && "$D/tools/bin/python" -m pip install -q uv' in script
    assert 'python3 -m venv --system-site-packages "$D/env" && "$D/env/bin/python" -m pip install -q pandas' in script
    assert 'D="${SANDBOX_INSTANCE_ROOT:-}/opt/dask-aws-magic"' in script
    assert "/opt/dask-aws-magic" not in script.replace('D="${SANDBOX_INSTANCE_ROOT:-}/opt/dask-aws-magic"', "")
