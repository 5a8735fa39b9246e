"""The local backend through the Python API: real scheduler and worker processes, checked by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

import dask_aws_magic as dam
from dask_aws_magic.core import registry
from dask_aws_magic.core.errors import (
    ClusterDead,
    ClusterExists,
    ClusterNotFound,
    Interrupted,
    LaunchError,
    WaitTimeout,
)
from dask_aws_magic.core.lifecycle import up as core_up

from .conftest import cluster_processes


def pids(name):
    resources = registry.read(name).resources
    return [resources["scheduler"]["pid"], *(w["pid"] for w in resources["workers"].values())]


def gone(pid_list, within=10.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                   for p in pid_list):
            return True
        time.sleep(0.1)
    return False


def test_up_compute_scale_restart_logs_down(home):
    with dam.up(workers=2, progress=False) as cluster:
        assert cluster.client.submit(sum, [1, 2]).result() == 3
        import dask

        assert dask.config.get("scheduler-address") == cluster.scheduler_address
        assert dask.delayed(sum)([4, 5]).compute() == 9  # collections use the cluster
        started = pids("local")
        assert len(started) == 3 and all(psutil.pid_exists(p) for p in started)
        assert cluster.dashboard_link.startswith("http://127.0.0.1:")
        assert "Dashboard" in cluster._repr_html_()

        cluster.scale(3)
        cluster.client.wait_for_workers(3, timeout=30)
        cluster.scale(1)
        assert len(registry.read("local").resources["workers"]) == 1
        deadline = time.monotonic() + 15
        while len(cluster.client.scheduler_info()["workers"]) != 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(cluster.client.scheduler_info()["workers"]) == 1

        before = set(cluster.client.scheduler_info()["workers"])
        dam.restart("local")
        assert set(cluster.client.scheduler_info()["workers"]) != before

        status = dam.status("local")
        assert status["workers"] == 1 and status["threads"] >= 1
        logs = dam.logs("local")
        assert "scheduler" in logs and "Scheduler at" in logs["scheduler"]
        all_pids = pids("local")
    assert gone(started + all_pids)
    assert dam.list_clusters() == []


def test_adapt_scales_with_load(home):
    cluster = dam.up(workers=1, progress=False)
    try:
        dam.adapt("local", minimum=1, maximum=3)
        adaptor = registry.read("local").resources["adaptor"]["pid"]
        futures = cluster.client.map(lambda x: __import__("time").sleep(0.5) or x, range(40), pure=False)
        deadline = time.monotonic() + 45
        while len(cluster.client.scheduler_info()["workers"]) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(cluster.client.scheduler_info()["workers"]) >= 2
        assert sum(cluster.client.gather(futures)) == sum(range(40))
    finally:
        cluster.down()
    assert gone([adaptor])


def test_duplicate_name_refused(home):
    cluster = dam.up(workers=1, progress=False)
    try:
        with pytest.raises(ClusterExists, match="attach local"):
            dam.up(workers=1, progress=False)
    finally:
        cluster.down()


def test_survives_its_process_and_is_found_without_registry(home):
    script = "import dask_aws_magic as d; d.up(name='orphan', workers=1, progress=False)"
    subprocess.run([sys.executable, "-c", script], check=True, env=os.environ, timeout=120)
    survivors = pids("orphan")
    assert all(psutil.pid_exists(p) for p in survivors)
    attached = dam.attach("orphan")
    assert attached.client.submit(lambda: 42).result() == 42
    attached.close()

    (home / "clusters" / "orphan.json").unlink()  # the registry entry is gone too
    found = dam.list_clusters()
    assert [c.name for c in found] == ["orphan"] and found[0].note.startswith("recovered")
    (home / "clusters" / "orphan.json").unlink()
    lines = dam.down(all=True)
    assert lines and "orphan" in lines[0]
    assert gone(survivors)


def test_attach_to_dead_cluster_marks_it_dead(home):
    cluster = dam.up(name="victim", workers=1, progress=False)
    cluster.close()
    victims = pids("victim")
    for pid in victims:
        os.killpg(pid, signal.SIGKILL)
    assert gone(victims)
    with pytest.raises(ClusterDead, match="marked dead"):
        dam.attach("victim")
    assert registry.read("victim").status == "dead"  # kept, not silently deleted
    assert [c.status for c in dam.list_clusters()] == ["dead"]
    dam.down("victim")
    assert registry.get("victim") is None


def test_unknown_cluster(home):
    with pytest.raises(ClusterNotFound, match="no cluster named 'nope'"):
        dam.down("nope")
    with pytest.raises(ClusterNotFound):
        dam.attach("nope")


def test_interrupt_during_wait_tears_down(home):
    seen = {}

    def interrupt(event):
        if event.stage == "boot" and registry.get("local") and registry.read("local").resources.get("workers"):
            seen["pids"] = pids("local")
            raise KeyboardInterrupt

    with pytest.raises(Interrupted, match="torn down"):
        core_up("local", workers=2, on_event=interrupt)
    assert len(seen["pids"]) == 3 and gone(seen["pids"])
    assert registry.get("local") is None


def test_timeout_tears_down_unless_kept(home):
    with pytest.raises(WaitTimeout, match="--timeout"):
        dam.up(workers=1, timeout=0.01, progress=False)
    assert not cluster_processes(str(home.resolve()))
    assert registry.get("local") is None

    with pytest.raises(WaitTimeout, match="kept"):
        dam.up(workers=1, timeout=0.01, keep_on_failure=True, progress=False)
    assert registry.read("local").status == "failed"
    assert cluster_processes(str(home.resolve()))
    dam.down("local")


def test_failed_scheduler_fails_fast_with_its_log(home):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(LaunchError, match="scheduler process exited. Its log"):
            dam.up(workers=1, overrides={"scheduler.port": port}, progress=False)
        assert time.monotonic() - started < 30
    assert registry.get("local") is None


def test_sigint_to_terminal_up_leaves_nothing(home):
    proc = subprocess.Popen([sys.executable, "-m", "dask_aws_magic.faces.cli", "up", "-w", "2"], env=os.environ,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not registry.get("local") or not registry.read("local").resources.get("workers"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    assert b"Interrupted" in out and b"torn down" in out
    assert not cluster_processes(str(home.resolve()))


def test_idle_timeout_waits_for_clients_to_leave(home):
    cluster = dam.up(workers=1, overrides={"lifecycle.idle_timeout": "2s"}, progress=False)
    scheduler = registry.read("local").resources["scheduler"]["pid"]
    time.sleep(4)  # idle, but a client is connected: stays up
    assert cluster.client.submit(lambda: 5).result() == 5
    cluster.close()
    assert gone([scheduler], within=20), "the idle scheduler did not stop after its client left"
    assert [c.status for c in dam.list_clusters()] == ["dead"]
    dam.down("local")
    assert not cluster_processes(str(home.resolve()))


def test_dashboard_link_serves_the_dashboard(home):
    import urllib.request

    with dam.up(workers=1, progress=False) as cluster, \
            urllib.request.urlopen(cluster.dashboard_link, timeout=30) as page:
        assert page.status == 200 and b"Dask" in page.read()
