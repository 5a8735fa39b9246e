"""Processes started in sessions of their own, identified by pid and start time."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Any

TAG_HOME = "DASK_AWS_MAGIC_TAG_HOME"  # the home of a cluster's companion processes, in their environment

GRACE = 5.0


def create_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def running(info: dict[str, Any]) -> bool:
    """True if the process recorded in ``info`` still runs (and is the same process)."""
    import psutil

    try:
        proc = psutil.Process(info["pid"])
        if info.get("started") and abs(proc.create_time() - info["started"]) > 1:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def listens(info: dict[str, Any], port: int) -> bool:
    """True if the process recorded in ``info`` (the same process) is the one listening on TCP ``port``."""
    import psutil

    if not running(info):
        return False
    try:
        connections = psutil.Process(info["pid"]).net_connections(kind="inet")
    except psutil.Error:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in connections)


def is_mine(proc: Any) -> bool:
    """True when the ``psutil.Process`` runs as this user (really and effectively): another user's
    environment and command line are claims, and root can read them all."""
    import psutil

    try:
        uids = proc.uids()
    except psutil.Error:
        return False
    return uids.real == os.getuid() and uids.effective == os.getuid()


def group_alive(pgid: int) -> bool:
    """True while any process of the group ``pgid`` is left (a forked worker outlives its nanny)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_groups(processes: list[dict[str, Any]], grace: float = GRACE) -> None:
    """Stop each process group: SIGTERM, a grace period for the leaders to close cleanly, then
    SIGKILL for whatever of the groups is left (a forked worker may not exit with its nanny)."""
    leaders = [info for info in processes if running(info)]
    groups = [info["pid"] for info in leaders]
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while leaders and time.monotonic() < deadline:
        reap(processes)
        leaders = [info for info in leaders if running(info)]
        time.sleep(0.05)
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + GRACE  # a killed process still takes a moment to go
    while groups and time.monotonic() < deadline:
        reap(processes)
        groups = [pgid for pgid in groups if group_alive(pgid)]
        time.sleep(0.02)


def reap(processes: list[dict[str, Any]]) -> None:
    """Collect our own exited children so they do not linger as zombies."""
    for info in processes:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(info["pid"], os.WNOHANG)


def spawn_companion(cluster_id: str, cluster: str, module: str, args: list[str], tag: str,
                    log_name: str) -> dict[str, Any]:
    """Start ``python -m module args`` detached beside a cluster (the adaptor, the Spot keeper):
    its environment carries ``tag`` = the cluster's id and this home, so it is found even when the
    record is gone; it logs privately into the cluster's log folder. Its process info for the record."""
    import subprocess
    import sys

    from . import paths

    env = dict(os.environ)
    env.update({tag: cluster_id, TAG_HOME: str(paths.home().resolve())})
    folder = paths.logs_dir() / cluster
    paths.ensure_home()
    folder.mkdir(mode=0o700, exist_ok=True)
    with paths.private_file(folder / log_name) as log:
        proc = subprocess.Popen([sys.executable, "-m", module, *args], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True, close_fds=True,
                                umask=0o077)
    return {"pid": proc.pid, "started": create_time(proc.pid)}


def find_companion(cluster_id: str, module: str, tag: str) -> dict[str, Any] | None:
    """The companion process (``python -m module``) of the cluster ``cluster_id`` started from this home
    by this user, if one runs: found by the tag in its environment, even when the record is gone."""
    import psutil

    from . import paths

    home = str(paths.home().resolve())
    for proc in psutil.process_iter(["pid", "cmdline", "create_time"]):
        if module not in " ".join(proc.info["cmdline"] or []) or not is_mine(proc):
            continue
        try:
            env = proc.environ()
        except psutil.Error:
            continue
        if env.get(tag) == cluster_id and env.get(TAG_HOME) == home:
            return {"pid": proc.info["pid"], "started": proc.info["create_time"]}
    return None
