"""The EC2 backend through the magics, the sandbox magic and the terminal command."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from IPython.core.interactiveshell import InteractiveShell

from dask_aws_magic import sandbox

pytestmark = pytest.mark.sandbox


@pytest.fixture
def shell(home):
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "dask_aws_magic")
    yield shell
    shell.run_line_magic("unload_ext", "dask_aws_magic")
    sandbox.stop()


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dask_aws_magic.faces.cli", *args], capture_output=True, text=True,
                          env=os.environ, timeout=120)


def test_notebook_flow_in_the_sandbox(shell, capsys):
    before = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    shell.run_line_magic("dask_cluster", "sandbox start")
    sb = sandbox.current()
    assert sb is not None and os.environ["AWS_ENDPOINT_URL"] == sb.endpoint_url
    shell.run_line_magic("dask_cluster", "plan ec2-small")
    shell.run_line_magic("dask_cluster", "up ec2-small --wait-workers 2")
    client = shell.user_ns["client"]
    assert client.submit(sum, [1, 2]).result() == 3
    assert len(client.scheduler_info()["workers"]) == 2
    out = capsys.readouterr().out
    assert "Estimated cost" in out and "spot" in out and "ready" in out

    client.close()  # the terminal below stops the cluster under it
    # A terminal on the same machine sees and stops the cluster through AWS alone.
    listing = cli("list")
    assert "ec2-small" in listing.stdout and "running" in listing.stdout, listing.stderr
    os.remove(os.path.join(os.environ["DASK_AWS_MAGIC_HOME"], "clusters", "ec2-small.json"))  # registry gone
    down = cli("down", "--all")
    assert down.returncode == 0 and "ec2-small: terminated 3 instance(s)" in down.stdout, down.stderr
    assert not sb.resources()

    shell.run_line_magic("dask_cluster", "sandbox stop")
    assert sandbox.current() is None
    assert {k: v for k, v in os.environ.items() if k.startswith("AWS_")} == before


def test_sandbox_after_a_kernel_restart_names_the_clusters_it_took_along(shell, capsys):
    import dask_aws_magic as dam

    shell.run_line_magic("dask_cluster", "sandbox start")
    shell.run_line_magic("dask_cluster", "up ec2-small -n before")
    shell.user_ns["client"].close()
    endpoint = sandbox.current().endpoint_url
    sandbox.stop()  # the kernel restarts: its sandbox, and every instance in it, is gone; the record stays
    capsys.readouterr()

    shell.run_line_magic("dask_cluster", "sandbox start")
    out = capsys.readouterr().out
    assert "before" in out and "`%dask_cluster down before`" in out and sandbox.current().endpoint_url != endpoint
    shell.run_line_magic("dask_cluster", "sandbox status")
    assert "`%dask_cluster down before`" in capsys.readouterr().out
    assert [(c.name, c.status) for c in dam.list_clusters()] == [("before", "dead")]  # never "running"
    shell.run_line_magic("dask_cluster", "down before")
    assert "sandbox it ran in" in capsys.readouterr().out
    assert dam.list_clusters() == [] and not sandbox.current().resources()
    shell.run_line_magic("dask_cluster", "sandbox status")
    assert "down before" not in capsys.readouterr().out
