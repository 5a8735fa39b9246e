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

from .conftest import assert_private, cluster_processes


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
        assert_private(home)  # after every operation: folders 0700, files 0600, logs and keys included

        cluster.scale(3)
        cluster.client.wait_for_workers(3, timeout=30)
        cluster.scale(1)
        assert len(registry.read("local").resources["workers"]) == 1
        deadline = time.monotonic() + 15
        while len(cluster.client.scheduler_info()["workers"]) != 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(cluster.client.scheduler_info()["workers"]) == 1
        assert_private(home)

        before = set(cluster.client.scheduler_info()["workers"])
        dam.restart("local")
        assert set(cluster.client.scheduler_info()["workers"]) != before
        assert_private(home)

        status = dam.status("local")
        assert status["workers"] == 1 and status["threads"] >= 1
        logs = dam.logs("local")
        assert "scheduler" in logs and "Scheduler at" in logs["scheduler"]
        all_pids = pids("local")
        assert_private(home)
    assert gone(started + all_pids)
    assert dam.list_clusters() == []
    assert_private(home)


def test_adapt_scales_with_load(home):
    cluster = dam.up(workers=1, progress=False)
    try:
        dam.adapt("local", minimum=1, maximum=3)
        adaptor = registry.read("local").adaptor["pid"]
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


KILLED_UP = """
import os, signal
from dask_aws_magic.core import lifecycle

def die(event):
    if event.stage == {stage!r}:
        os.kill(os.getpid(), signal.SIGKILL)

lifecycle.start_up("local", name="killed", workers=1, subscriber=die).result(60)
"""


def test_up_killed_before_launch_stops_blocking_its_name(home):
    proc = subprocess.run([sys.executable, "-c", KILLED_UP.format(stage="launch")], timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert registry.read("killed").status == "starting"  # what the killed process left
    started = time.monotonic()
    [record] = dam.list_clusters()
    assert record.status == "dead" and time.monotonic() - started < 10  # at once, not after the timeout
    with dam.up(name="killed", workers=1, progress=False) as cluster:  # the name is free
        assert cluster.client.submit(sum, [1, 1]).result() == 2


def test_up_killed_after_launch_is_completed_from_discovery(home):
    proc = subprocess.run([sys.executable, "-c", KILLED_UP.format(stage="connect")], timeout=60)
    assert proc.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 30
    while True:
        [record] = dam.list_clusters()
        if record.status == "running" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert record.status == "running" and record.scheduler_address.startswith("tls://127.0.0.1:")
    assert "interrupted" in record.note
    cluster = dam.attach("killed")
    assert cluster.client.submit(sum, [2, 2]).result() == 4
    cluster.down()


def test_list_shows_the_workers_the_scheduler_reports(home):
    cluster = dam.up(workers=1, progress=False)
    security = cluster.cluster.security  # a worker from outside needs the cluster's TLS identity
    extra = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", cluster.scheduler_address,
                              "--nthreads", "1", "--no-dashboard", "--tls-ca-file", security.tls_ca_file,
                              "--tls-cert", security.tls_client_cert, "--tls-key", security.tls_client_key],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        cluster.client.wait_for_workers(2, timeout=30)
        [record] = dam.list_clusters()
        assert record.workers == 1 and record.reported_workers == 2  # planned 1, the scheduler has 2
        from dask_aws_magic.faces import render

        assert "local  local    running  2" in render.clusters([record])
    finally:
        extra.terminate()
        extra.wait(30)
        cluster.down()


def test_local_cluster_is_private_to_its_user(home):
    cluster = dam.up(workers=1, progress=False)
    try:
        assert cluster.scheduler_address.startswith("tls://127.0.0.1:")
        from distributed import Client

        with Client(timeout=10) as client:  # no arguments: the address and the key come from dask's config
            assert client.submit(sum, [3, 4]).result() == 7
        outsider = ("import sys\nfrom distributed import Client\n"
                    "try:\n    Client(sys.argv[1], timeout=3)\nexcept Exception as exc:\n"
                    "    print('refused', type(exc).__name__)\nelse:\n    print('CONNECTED')\n")
        for address in (cluster.scheduler_address, cluster.scheduler_address.replace("tls://", "tcp://")):
            out = subprocess.run([sys.executable, "-c", outsider, address], capture_output=True, text=True,
                                 timeout=60, env={k: v for k, v in os.environ.items() if not k.startswith("DASK_")})
            assert out.stdout.startswith("refused"), out.stdout + out.stderr
        dam.list_clusters()
        assert_private(home)
    finally:
        cluster.down()
    assert_private(home)
    assert not list(home.rglob("*.pem")) and not list(home.rglob("*.key")), "the TLS material outlived the cluster"


def test_home_owned_by_someone_else_is_refused(home, monkeypatch):
    from dask_aws_magic.core.errors import HomeNotWritable

    if os.getuid() == 0:  # root gives a folder of its own away
        home.mkdir(mode=0o700)
        os.chown(home, 65534, 65534)
    else:  # anyone else finds one: the root folder belongs to root (and is never written: refused first)
        monkeypatch.setenv("DASK_AWS_MAGIC_HOME", "/")
    with pytest.raises(HomeNotWritable, match="belongs to another user") as info:
        dam.up(workers=1, progress=False)
    assert "=/tmp" not in str(info.value)  # no advice to use a shared folder


@pytest.mark.parametrize(("name", "cluster_id", "owner"), [
    ("../../etc", "dam-0123456789ab", ""), ("ok-name", "x/../y", ""), ("a" * 300, "dam-0123456789ab", ""),
    ("zz\n", "dam-0123456789ab", ""), ("ok-name", "dam-0123456789ab\n", ""),  # `$` took a trailing newline
    ("ok-name", "dam-0123456789ab", "local:me\nfake   local    running"),  # an owner that fakes a line
])
def test_hostile_tags_are_reported_not_acted_on(home, name, cluster_id, owner):
    from dask_aws_magic.core import paths
    from dask_aws_magic.faces import render
    from dask_aws_magic.faces.cli import main

    env = {**os.environ, "DASK_AWS_MAGIC_CLUSTER": name, "DASK_AWS_MAGIC_CLUSTER_ID": cluster_id,
           "DASK_AWS_MAGIC_ROLE": "scheduler", "DASK_AWS_MAGIC_TAG_HOME": str(paths.home().resolve()),
           "DASK_AWS_MAGIC_OWNER": owner}
    # A process that carries our tags, as a scheduler would, but was not made by us.
    impostor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "distributed.cli"],
                                env=env, start_new_session=True)
    try:
        assert dam.list_clusters() == []
        assert main(["down", "--all"]) == 0
        assert impostor.poll() is None, "down --all touched a process it did not create"
        from dask_aws_magic.core import inventory

        found = inventory.survey("*")
        assert not found.clusters and any("never makes" in line for line in found.ignored)
        assert "fake" not in "\n".join(line for line in render.survey(found).splitlines()
                                       if not line.startswith("warning:"))  # only in the warning, escaped
        assert not (home / "clusters").exists() or not list((home / "clusters").glob("*.json"))
    finally:
        impostor.kill()
        impostor.wait(10)


def _planted(home, victim, **popen):
    """A process that looks like a scheduler of this home: our tags, and a command line naming ``victim``
    as its TLS folder (what `down` deletes with a cluster)."""
    from dask_aws_magic.backends.local import local_identity
    from dask_aws_magic.core import paths

    env = {"PATH": os.environ["PATH"], "DASK_AWS_MAGIC_CLUSTER": "planted", "DASK_AWS_MAGIC_ROLE": "scheduler",
           "DASK_AWS_MAGIC_CLUSTER_ID": "dam-0123456789ab", "DASK_AWS_MAGIC_TAG_HOME": str(paths.home().resolve()),
           "DASK_AWS_MAGIC_OWNER": local_identity(), "HOME": str(paths.home().parent)}
    return subprocess.Popen(["sh", "-c", "sleep 60; :", "distributed.cli", "--tls-ca-file", str(victim / "ca.pem")],
                            env=env, start_new_session=True, **popen)


@pytest.mark.skipif(os.geteuid() != 0, reason="planting another user's process needs root (runs as root in CI)")
def test_another_users_process_is_never_adopted(home, tmp_path):
    """Run as root, `list` read every user's processes: another user's planted process, whose environment
    named root's home, was listed, and `down --all` deleted the folder on its command line."""
    from dask_aws_magic.faces.cli import main

    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "ca.pem").write_text("precious")
    nobody = 65534
    impostor = _planted(home, victim, user=nobody, group=nobody, extra_groups=[])
    try:
        assert psutil.Process(impostor.pid).uids().real == nobody
        time.sleep(0.2)  # its command line and environment are in place
        from dask_aws_magic.core import inventory

        found = inventory.survey("*")
        assert found.clusters == [] and found.others == {}
        assert main(["down", "--all"]) == 0
        assert (victim / "ca.pem").read_text() == "precious" and impostor.poll() is None
    finally:
        impostor.kill()
        impostor.wait(10)


def test_down_deletes_only_inside_the_clusters_own_folder(home, tmp_path):
    """A process of this user that carries our tags is stopped by `down`, but the TLS folder its command
    line names is deleted only when it is inside the cluster's own folder of the home."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "ca.pem").write_text("precious")
    planted = _planted(home, victim)
    try:
        deadline = time.monotonic() + 10
        while [c.name for c in dam.list_clusters()] != ["planted"]:
            assert time.monotonic() < deadline, dam.list_clusters()
            time.sleep(0.1)
        assert dam.down(all=True) == ["planted: stopped 1 process(es) (0 of them workers)"]
        assert planted.wait(10) is not None
        assert (victim / "ca.pem").read_text() == "precious"
    finally:
        planted.kill()
        planted.wait(10)


def test_clusters_of_other_owners_are_shown_and_stopped_only_when_named(home):
    from dask_aws_magic.core import paths
    from dask_aws_magic.core.errors import ForeignCluster
    from dask_aws_magic.faces.cli import main

    mine = dam.up(name="mine", workers=1, progress=False)
    env = {**os.environ, "DASK_AWS_MAGIC_CLUSTER": "theirs", "DASK_AWS_MAGIC_CLUSTER_ID": "dam-0123456789ab",
           "DASK_AWS_MAGIC_ROLE": "scheduler", "DASK_AWS_MAGIC_TAG_HOME": str(paths.home().resolve()),
           "DASK_AWS_MAGIC_OWNER": "local:mallory"}
    theirs = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "distributed.cli"],
                              env=env, start_new_session=True)
    try:
        assert [c.name for c in dam.list_clusters()] == ["mine"]
        assert sorted(c.name for c in dam.list_clusters(owner="*")) == ["mine", "theirs"]
        assert [c.owner for c in dam.list_clusters(owner="local:mallory")] == ["local:mallory"]
        out = subprocess.run([sys.executable, "-m", "dask_aws_magic.faces.cli", "list"], capture_output=True,
                             text=True, timeout=60)
        assert "Not shown: clusters of other owners (1 of local:mallory)" in out.stdout, out.stdout
        mine.close()
        assert main(["down", "--all"]) == 0
        assert registry.get("mine") is None, "down --all did not stop your own cluster"
        assert theirs.poll() is None, "down --all stopped another owner's cluster"
        with pytest.raises(ForeignCluster, match="belongs to local:mallory.*--owner local:mallory"):
            dam.down("theirs")
        assert dam.down("theirs", owner="local:mallory")[0].startswith("theirs: stopped 1 process")
        assert theirs.wait(10) is not None
        assert registry.get("theirs") is None, "another owner's cluster was written to your registry"
    finally:
        theirs.kill()
        theirs.wait(10)


def test_down_all_with_an_owner_stops_every_cluster_of_that_owner_and_no_other(home, capsys):
    """`down --all --owner OWNER` ignored --owner: "No clusters to stop", exit 0, that owner's clusters running."""
    from dask_aws_magic.core import paths
    from dask_aws_magic.faces.cli import main

    mine = dam.up(name="mine", workers=1, progress=False)
    mine.close()
    theirs = []
    for index in range(2):
        env = {**os.environ, "DASK_AWS_MAGIC_CLUSTER": f"theirs-{index}", "DASK_AWS_MAGIC_ROLE": "scheduler",
               "DASK_AWS_MAGIC_CLUSTER_ID": f"dam-0123456789a{index}", "DASK_AWS_MAGIC_OWNER": "local:mallory",
               "DASK_AWS_MAGIC_TAG_HOME": str(paths.home().resolve())}
        theirs.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "distributed.cli"],
                                       env=env, start_new_session=True))
    try:
        deadline = time.monotonic() + 10
        while len(dam.list_clusters(owner="local:mallory")) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert main(["down", "--all", "--owner", "*"]) == 1  # one owner, never "everyone"
        assert "names one owner" in capsys.readouterr().err
        assert main(["down", "--all", "--owner", "local:mallory"]) == 0
        out = capsys.readouterr().out
        assert "theirs-0: stopped 1 process" in out and "theirs-1: stopped 1 process" in out and "mine" not in out
        assert all(proc.wait(10) is not None for proc in theirs)
        assert [(c.name, c.status) for c in dam.list_clusters()] == [("mine", "running")]
        assert main(["down", "--all", "--owner", "local:mallory"]) == 0
        assert "No clusters of local:mallory to stop." in capsys.readouterr().out
    finally:
        for proc in theirs:
            proc.kill()
            proc.wait(10)
        dam.down("mine")


def test_up_refuses_a_name_a_running_cluster_carries_even_without_its_record(home):
    first = dam.up(name="twin", workers=1, progress=False)
    try:
        (home / "clusters" / "twin.json").unlink()  # the record is gone (another machine, a cleanup)
        with pytest.raises(ClusterExists, match="'twin' is already running"):
            dam.up(name="twin", workers=1, progress=False)
        assert first.client.submit(sum, [1]).result() == 1  # the running one was left alone
    finally:
        first.down()


def test_readiness_probe_leaves_no_handshake_noise_in_the_scheduler_log(home):
    with dam.up(workers=1, progress=False):
        log = dam.logs("local")["scheduler"]
    assert "Scheduler at:" in log and "tls://" in log
    for noise in ("handshake", "Traceback", "closed before", "EOF occurred"):
        assert noise not in log, log


def test_two_live_clusters_with_one_name_are_both_listed_and_stopped(home):
    from dask_aws_magic.backends.local import local_identity
    from dask_aws_magic.core import paths
    from dask_aws_magic.faces.cli import main

    real = dam.up(name="same", workers=1, progress=False)
    real.close()
    # The other one was started from another machine's home sharing this one, say: same name, other id.
    env = {**os.environ, "DASK_AWS_MAGIC_CLUSTER": "same", "DASK_AWS_MAGIC_CLUSTER_ID": "dam-aaaaaaaaaaaa",
           "DASK_AWS_MAGIC_ROLE": "scheduler", "DASK_AWS_MAGIC_TAG_HOME": str(paths.home().resolve()),
           "DASK_AWS_MAGIC_OWNER": local_identity()}
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "distributed.cli"],
                             env=env, start_new_session=True)
    try:
        listed = dam.list_clusters()
        assert sorted((c.name, c.cluster_id == "dam-aaaaaaaaaaaa") for c in listed) == [("same", False),
                                                                                         ("same", True)]
        assert main(["down", "--all"]) == 0
        assert other.wait(10) is not None, "the second cluster named 'same' was not stopped"
        assert dam.list_clusters() == []
    finally:
        other.kill()
        other.wait(10)


def test_stopping_two_clusters_in_the_order_they_started_leaves_dask_working(home):
    import dask

    first = dam.up("local", name="first", workers=1, progress=False)
    second = dam.up("local", name="second", workers=1, progress=False)
    assert dask.delayed(sum)([1, 2]).compute() == 3  # on the second, the default client
    first.down()
    assert dask.delayed(sum)([1, 2]).compute() == 3
    second.down()
    # distributed alone leaves `scheduler: dask.distributed` here, with no client: every compute fails
    assert dask.config.get("scheduler", None) is None
    assert dask.delayed(sum)([1, 2]).compute() == 3


def test_down_goes_on_when_the_client_of_a_dead_scheduler_fails_to_close(home, monkeypatch):
    # A client whose scheduler died (max_lifetime, idle timeout, a reclaimed instance) keeps reconnecting,
    # and distributed's close() re-raises what its last attempt hit (seen: tornado's "IOStream is not idle;
    # cannot convert to SSL"). That must never stop `down` from removing the cluster.
    from distributed import Client

    handle = dam.up("local", name="dying", workers=1, progress=False)
    assert handle.client.submit(lambda: 1).result() == 1
    processes = pids("dying")
    os.kill(processes[0], signal.SIGKILL)  # the scheduler
    original = Client.close

    def failing_close(self, *args, **kwargs):
        original(self, *args, **kwargs)
        raise ValueError("IOStream is not idle; cannot convert to SSL")

    monkeypatch.setattr(Client, "close", failing_close)
    assert any("dying" in line for line in handle.down())
    assert registry.get("dying") is None
    assert gone(processes)
