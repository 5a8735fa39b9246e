"""Shared fixtures: an isolated home per test, and a check that no cluster process outlives a test."""

from __future__ import annotations

import contextlib
import os
import signal

import psutil
import pytest

TAG = "DASK_AWS_MAGIC_CLUSTER_ID"


def cluster_processes(home: str) -> list[psutil.Process]:
    """Every live process tagged as part of a dask-aws-magic cluster whose home is under ``home``."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "distributed.cli" not in cmdline and "dask_aws_magic.core.adaptive" not in cmdline:
            continue
        try:
            env = proc.environ()
            ours = TAG in env and env.get("DASK_AWS_MAGIC_TAG_HOME", "").startswith(home)
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
