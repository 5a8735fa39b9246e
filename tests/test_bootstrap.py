"""The user-data scripts: valid bash in every variant, small, and with no AWS credential."""

from __future__ import annotations

import subprocess

import pytest

from dask_aws_magic.aws.tls import new_cluster_tls
from dask_aws_magic.backends.ec2 import userdata

SOFTWARE = dict(python="3.11", dask="2026.8.0", distributed="2026.8.0")


@pytest.mark.parametrize("role", ["scheduler", "worker"])
@pytest.mark.parametrize("variant", [
    {},
    {"pip": ["pandas>=2", "pyarrow"], "env": {"MY_VAR": "it's \"quoted\" $HOME"}},
    {"image": "ghcr.io/dask/dask:2026.8.0", "env": {"A": "1"}},
])
@pytest.mark.parametrize("tls", [True, False])
def test_every_variant_is_valid_bash(role, variant, tls):
    spec = userdata.NodeSpec(
        role=role, cluster="c1", cluster_id="dam-1", software=userdata.Software(**SOFTWARE, **variant),
        tls=new_cluster_tls("c1") if tls else None, scheduler_ip="10.0.0.5", nprocs=2, nthreads=2,
        memory=4 * 2**30, idle_timeout=600, max_lifetime=3600,
    )
    script = userdata.user_data(spec)
    checked = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert checked.returncode == 0, checked.stderr
    assert len(script.encode()) < userdata.EC2_USER_DATA_LIMIT / 2
    assert "AWS_SECRET_ACCESS_KEY" not in script and "AWS_ACCESS_KEY_ID" not in script
    if variant.get("image"):
        assert "-e A " in script and "docker run" in script
    if tls:
        assert "--protocol tls" in script or "tls://10.0.0.5:8786" in script


def test_env_names_are_refused_if_not_shell_names():
    spec = userdata.NodeSpec(role="worker", cluster="c", cluster_id="d",
                              software=userdata.Software(**SOFTWARE, env={"A;id": "x"}), tls=None)
    with pytest.raises(ValueError, match="not an environment variable name"):
        userdata.user_data(spec)
