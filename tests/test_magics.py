"""``%dask_cluster`` through a real IPython InteractiveShell."""

from __future__ import annotations

import re

import pytest
from IPython.core.error import UsageError

from dask_aws_magic.core import registry
from dask_aws_magic.faces.magics import DaskClusterMagics


def magic(shell, line, cell=None):
    if cell is None:
        return shell.run_line_magic("dask_cluster", line)
    return shell.run_cell_magic("dask_cluster", line, cell)


def test_up_injects_client_then_down(shell, capsys):
    magic(shell, "up -w 1")
    client = shell.user_ns["client"]
    assert client.submit(sum, [1, 2]).result() == 3
    result = shell.run_cell(
        "from distributed import Client\nwith Client() as c:\n    seven = c.submit(lambda: 7).result()\nseven")
    assert result.result == 7  # scheduler-address is set in the kernel
    out = capsys.readouterr().out
    assert "ready" in out and "Dashboard: http://127.0.0.1:" in out

    magic(shell, "list")
    magic(shell, "status")
    magic(shell, "dashboard")
    out = capsys.readouterr().out
    assert "local" in out and "running" in out and "workers: 1" in out

    magic(shell, "down local")
    assert "stopped 2 process(es)" in capsys.readouterr().out
    assert registry.get("local") is None


def test_cell_magic_profile_body_and_client_var(shell):
    magic(shell, "up -n celly --client-var c2", "worker:\n  count: 1\n  nthreads: 2\n")
    c2 = shell.user_ns["c2"]
    info = c2.scheduler_info()["workers"]
    assert [w["nthreads"] for w in info.values()] == [2]
    assert registry.read("celly").profile == "cell"


def test_plan_profiles_and_set(shell, capsys):
    magic(shell, "plan --set worker.count=3 --set worker.nthreads=2")
    magic(shell, "profiles")
    out = capsys.readouterr().out
    assert re.search(r"^3\s+process\s+worker", out, re.M) and "2 thread(s)" in out
    assert "Estimated cost" not in out and "$/H" not in out  # nothing to pay for locally
    assert re.search(r"^local\s+local\s+built-in", out, re.M)
    assert re.search(r"^ec2-small\s+ec2\s+built-in", out, re.M)


def test_attach_and_scale_from_magic(shell, capsys):
    import dask_aws_magic as dam

    other = dam.up(name="shared", workers=1, progress=False)
    other.close()
    magic(shell, "attach shared --client-var sc")
    assert shell.user_ns["sc"].submit(lambda: 1).result() == 1
    magic(shell, "scale shared 2")
    shell.user_ns["sc"].wait_for_workers(2, timeout=30)
    magic(shell, "logs shared")
    assert "==> scheduler <==" in capsys.readouterr().out


@pytest.mark.parametrize(("line", "cell", "message"), [
    ("frobnicate", None, "unknown command 'frobnicate'"),
    ("", None, "give a command"),
    ("up no-such-profile", None, "no profile named 'no-such-profile'"),
    ("up -w 0", None, "0 workers is too few"),
    ("up -w -2", None, "too few"),
    ("up --set worker.count=-1", None, "`worker.count` is -1, but must be at least 1"),
    ("up -n UPPER_case", None, "lowercase letters, digits and dashes"),
    ("down ghost", None, "no cluster named 'ghost'"),
    ("attach ghost", None, "no cluster named 'ghost'"),
    ("scale", None, "the following arguments are required"),
    ("up 'unbalanced", None, "check the quotes"),
    ("up", "worker: {count: [", "not valid YAML"),
    ("up", "worker:\n  count: lots\n", "must be of type integer"),
    ("list", "backend: local", "only with `up` or `plan`"),
])
def test_user_errors_are_short_usage_errors(shell, line, cell, message):
    with pytest.raises(UsageError, match=message) as info:
        magic(shell, line, cell)
    assert "Traceback" not in str(info.value)
    assert len(str(info.value)) < 600


def test_help_lists_every_subcommand(shell, capsys):
    doc = DaskClusterMagics.dask_cluster.__doc__
    for command in ("up", "down", "list", "status", "scale", "adapt", "attach", "plan", "profiles",
                    "dashboard", "logs", "restart", "--keep-on-failure", "--client-var", "--set"):
        assert command in doc
    magic(shell, "up --help")
    assert "--timeout" in capsys.readouterr().out
    shell.run_line_magic("pinfo", "%dask_cluster")


def test_configurable_client_var(shell):
    shell.run_line_magic("config", "DaskClusterMagics.client_var = 'dc'")
    try:
        magic(shell, "up -w 1")
        assert "dc" in shell.user_ns
    finally:
        shell.run_line_magic("config", "DaskClusterMagics.client_var = 'client'")


def test_subcommand_help_is_that_command_only_and_each_argument_is_explained_once(shell, capsys):
    magic(shell, "up --help")
    out = capsys.readouterr().out
    assert out.startswith("usage: %dask_cluster up") and "--wait-workers" in out
    assert "%dask_cluster down" not in out and "usage: %dask_cluster [-h]" not in out
    doc = DaskClusterMagics.dask_cluster.__doc__
    for option in ("--name", "--workers", "--set", "--client-var", "--wait-workers"):
        explained = [line for line in doc.splitlines() if line.strip().startswith(option)
                     or line.strip().startswith(f"-{option[2]}, {option}")]
        assert len(explained) == 1, (option, explained)
    assert "instances on AWS, processes locally" in doc


def test_up_then_attach_keeps_one_client(shell):
    magic(shell, "up -w 1")
    first = shell.user_ns["client"]
    magic(shell, "attach local")
    assert shell.user_ns["client"] is first and first.status == "running"
    from dask_aws_magic.faces.handle import _open

    assert len([h for h in _open if h._client is not None and h.name == "local"]) == 1
