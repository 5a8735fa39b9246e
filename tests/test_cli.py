"""The ``dask-aws-magic`` terminal command, run as a real subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import dask_aws_magic as dam


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dask_aws_magic.faces.cli", *args], capture_output=True, text=True,
                          env=os.environ, timeout=120)


def test_profiles_plan_list_status_down(home):
    assert "local" in cli("profiles").stdout
    plan = cli("plan", "--set", "worker.count=3")
    assert plan.returncode == 0 and re.search(r"^3\s+process\s+worker", plan.stdout, re.M)
    assert "No clusters" in cli("list").stdout

    cluster = dam.up(name="term", workers=1, progress=False)
    cluster.close()
    listing = cli("list")
    assert "term" in listing.stdout and "running" in listing.stdout
    status = cli("status", "term")
    assert "workers: 1" in status.stdout, status.stdout + status.stderr
    down = cli("down", "term")
    assert down.returncode == 0 and "term: stopped 2 process(es)" in down.stdout
    assert "No clusters" in cli("list").stdout


def test_errors_are_one_line_and_exit_nonzero(home):
    for args, code, text in [
        (("down", "ghost"), 1, "no cluster named 'ghost'"),
        (("plan", "nope"), 1, "no profile named 'nope'"),
        (("frob",), 2, "unknown command 'frob'"),
        ((), 2, "give a command"),
    ]:
        result = cli(*args)
        assert result.returncode == code, (args, result.stderr)
        assert text in result.stderr and "Traceback" not in result.stderr


def test_help(home):
    result = cli("--help")
    assert result.returncode == 0 and "profiles" in result.stdout and "plan" in result.stdout


def test_python_dash_m_runs_the_terminal_command(home):
    # a kernel's environment often has no console script on its PATH
    result = subprocess.run([sys.executable, "-m", "dask_aws_magic", "profiles"], capture_output=True, text=True,
                            env=os.environ, timeout=120)
    assert result.returncode == 0 and "local" in result.stdout, result.stderr
    result = subprocess.run([sys.executable, "-m", "dask_aws_magic", "status", "nothing-here"], capture_output=True,
                            text=True, env=os.environ, timeout=120)
    assert result.returncode != 0 and "nothing-here" in result.stderr and "Traceback" not in result.stderr
