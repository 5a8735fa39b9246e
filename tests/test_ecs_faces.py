"""The ``fargate`` and ``ecs`` backends through the magics, the Python API and the terminal command,
in the AWS sandbox."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from IPython.core.interactiveshell import InteractiveShell

import dask_aws_magic as dam
from dask_aws_magic import sandbox
from dask_aws_magic.core.errors import Interrupted

pytestmark = pytest.mark.sandbox

CELL = """\
backend: fargate
region: us-east-1
worker: {count: 2, spot: true}
ecs:
  worker: {cpu: 0.5, memory: 1GiB}
lifecycle: {idle_timeout: 30m}
"""


@pytest.fixture
def shell(home):
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "dask_aws_magic")
    yield shell
    try:
        sb = sandbox.current()
        if sb is not None:
            left = sb.resources()
            if left:
                dam.down(all=True)
            assert not left, f"left on AWS: {left}"
    finally:
        shell.run_line_magic("unload_ext", "dask_aws_magic")
        shell.user_ns.pop("client", None)
        sandbox.stop()


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dask_aws_magic.faces.cli", *args], capture_output=True, text=True,
                          env=os.environ, timeout=120)


def test_fargate_from_a_notebook_and_a_terminal(shell, capsys):
    shell.run_line_magic("dask_cluster", "sandbox start")
    sb = sandbox.current()
    shell.run_line_magic("dask_cluster", "plan fargate-small")
    out = capsys.readouterr().out
    assert "FARGATE_SPOT" in out and "Estimated cost" in out and "with spot" in out

    shell.run_cell_magic("dask_cluster", "up -n cells --wait-workers 2", CELL)
    client = shell.user_ns["client"]
    assert client.submit(sum, [1, 2]).result() == 3
    assert len(client.scheduler_info()["workers"]) == 2
    out = capsys.readouterr().out
    assert "ready" in out and "tls://" in out

    shell.run_line_magic("dask_cluster", "scale cells 3")
    client.wait_for_workers(3, timeout=60)
    shell.run_line_magic("dask_cluster", "logs cells")
    out = capsys.readouterr().out
    assert "scheduler task" in out and "starting the scheduler" in out

    client.close()
    listing = cli("list")
    assert "cells" in listing.stdout and "fargate" in listing.stdout and "running" in listing.stdout, listing.stderr
    os.remove(os.path.join(os.environ["DASK_AWS_MAGIC_HOME"], "clusters", "cells.json"))  # registry gone
    down = cli("down", "--all")
    assert down.returncode == 0 and "cells: stopped 4 task(s)" in down.stdout, down.stderr
    assert not sb.resources()


def test_api_operation_cancel_and_fargate_small(shell):
    shell.run_line_magic("dask_cluster", "sandbox start")
    sb = sandbox.current()
    operation = dam.up("fargate-small", wait=False)
    operation.cancel()
    with pytest.raises(Interrupted, match="torn down"):
        operation.result(timeout=120)
    assert not sb.resources()

    handle = dam.up("fargate-small", wait_workers=2, progress=False)
    assert handle.client.submit(lambda: 6 * 7).result() == 42
    assert handle.record.backend == "fargate" and handle.record.workers == 2
    assert dam.status("fargate-small")["workers"] == 2
    handle.down()
    assert not sb.resources()


def test_ecs_on_ec2_from_the_magic(shell, capsys):
    shell.run_line_magic("dask_cluster", "sandbox start")
    shell.run_cell_magic("dask_cluster", "up -n onec2 --wait-workers 1", "backend: ecs\nregion: us-east-1\n"
                         "worker: {count: 1}\n")
    assert shell.user_ns["client"].submit(sum, [4, 5]).result() == 9
    shell.user_ns["client"].close()
    shell.run_line_magic("dask_cluster", "down onec2")
    out = capsys.readouterr().out
    assert "deleted auto scaling group" in out and "terminated 1 container instance(s)" in out
