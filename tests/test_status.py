"""Issue 16, items 11 and 17: what `list` and `status` say is what was seen. A scheduler that does not
answer is `unreachable`, never `dead`; `dead` is what the backend confirms; the figures are the
scheduler's own. Local clusters here; the same on EC2 in test_truth_aws.py."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

import dask_aws_magic as dam
from dask_aws_magic.core import inventory, lifecycle, registry
from dask_aws_magic.core.errors import ClusterStarting, ClusterUnreachable
from dask_aws_magic.faces import render


def _frozen(pid: int):
    """Stop the process (SIGSTOP) as a scheduler busy with a large graph would seem; give it back after."""

    class Frozen:
        def __enter__(self):
            os.kill(pid, signal.SIGSTOP)
            return self

        def __exit__(self, *exc):
            os.kill(pid, signal.SIGCONT)

    return Frozen()


def test_a_frozen_scheduler_is_unreachable_and_never_marked_dead(home):
    cluster = dam.up(name="busy", workers=1, progress=False)
    cluster.close()
    scheduler = registry.read("busy").resources["scheduler"]["pid"]
    try:
        with _frozen(scheduler):
            info = dam.status("busy")  # took 6 s and wrote `dead` before
            assert info["status"] == "unreachable" and "busy (a large graph) or paused" in info["note"]
            assert "workers" not in info  # nothing reported is shown as if it were
            [listed] = dam.list_clusters()
            assert listed.status == "unreachable" and listed.reported_workers is None
            assert render.workers(listed) == "?/1"
            with pytest.raises(ClusterUnreachable, match="did not answer within 5 s.*still runs"):
                dam.scale("busy", 2)
            assert registry.read("busy").status == "running"  # nothing was written
        [listed] = dam.list_clusters()
        assert (listed.status, listed.reported_workers) == ("running", 1)
        assert dam.status("busy")["workers"] == 1
    finally:
        dam.down("busy")


def test_a_record_marked_dead_is_looked_at_again(home):
    """A record once marked dead (by an older version, or a look that missed a fresh launch) is checked
    again by every list: its cluster runs, so it is running again."""
    cluster = dam.up(name="again", workers=1, progress=False)
    cluster.close()
    registry.update("again", lambda r: setattr(r, "status", "dead"))
    try:
        [listed] = dam.list_clusters()
        assert (listed.status, listed.reported_workers) == ("running", 1)
        assert registry.read("again").status == "running" and "found running again" in registry.read("again").note
        registry.update("again", lambda r: setattr(r, "status", "dead"))
        assert dam.attach("again").client.submit(sum, [1, 2]).result() == 3  # attach revives it too
        assert registry.read("again").status == "running"
    finally:
        dam.down("again")


def test_dead_is_what_the_backend_confirms_and_costs_nothing(home):
    cluster = dam.up(name="gone", workers=1, progress=False)
    cluster.close()
    record = registry.read("gone")
    registry.update("gone", lambda r: r.settings.update(cost={"base": 1.0, "per_worker": 0.5}))
    assert registry.read("gone").hourly_cost == 1.5
    for info in [record.resources["scheduler"], *record.resources["workers"].values()]:
        os.killpg(info["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while (listed := dam.list_clusters())[0].status != "dead":
        assert time.monotonic() < deadline, listed
        time.sleep(0.1)
    assert listed[0].hourly_cost == 0 and render.workers(listed[0]) == "0"
    assert "$" not in render.clusters(listed).splitlines()[2]
    assert dam.status("gone")["status"] == "dead" and dam.status("gone")["cost"] == 0
    dam.down("gone")


def test_scale_while_up_runs_is_refused_and_marks_nothing_dead(home):
    reached, released = threading.Event(), threading.Event()

    def hold(event):
        if event.stage == "boot" and not reached.is_set():
            reached.set()
            released.wait(30)

    operation = lifecycle.start_up(name="early", workers=1, subscriber=hold)
    try:
        assert reached.wait(60)
        with pytest.raises(ClusterStarting, match="still starting"):
            lifecycle.start_scale("early", 2)
        assert registry.read("early").status == "starting"
        [listed] = inventory.survey().clusters
        assert listed.status == "starting"
    finally:
        released.set()
    record = operation.result(timeout=120)
    assert record.status == "running" and registry.read("early").status == "running"
    assert lifecycle.scale("early", 2).workers == 2
    dam.down("early")
