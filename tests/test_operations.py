"""Operations as objects: cancel from another thread at every stage of ``up``, followers through
``events_since``, progress in the registry, and the background forms of the API.

Cancels are made deterministic by holding the operation's thread at the stage under test (a
subscriber that waits) while the test's own thread calls ``cancel()``.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

import pytest

import dask_aws_magic as dam
from dask_aws_magic.core import lifecycle, registry
from dask_aws_magic.core.errors import LaunchError
from dask_aws_magic.core.operation import Operation

from .conftest import cancel_at, cluster_processes


@pytest.mark.parametrize("stage", ["plan", "launch", "boot", "connect", "workers"])
def test_cancel_local_up_at_every_stage(home, stage):
    operation, stages = cancel_at(lambda hold: lifecycle.start_up("local", workers=2, subscriber=hold), stage)
    assert stages[-1] == "cancelled" and "teardown" in stages and "ready" not in stages
    assert stages[stages.index(stage) + 1] == "teardown", "nothing more happened after the cancel"
    assert registry.get("local") is None
    assert not cluster_processes(str(home.resolve())), "processes left after a cancel"
    # The name is free again at once.
    with dam.up(workers=1, progress=False) as cluster:
        assert cluster.client.submit(sum, [1, 2]).result() == 3


def test_second_thread_follows_with_events_since(home):
    operation = lifecycle.start_up("local", workers=1)
    seen: list = []

    def follow():
        last = 0
        while True:
            done = operation.wait(0.02)
            for event in operation.events_since(last):
                seen.append(event)
                last = event.seq
            if done:
                return

    follower = threading.Thread(target=follow)
    follower.start()
    record = operation.result(timeout=60)
    follower.join(10)
    assert [e.seq for e in seen] == list(range(1, len(seen) + 1)), "sequence numbers are 1, 2, 3..."
    assert seen == operation.events_since(0)
    assert operation.events_since(len(seen) - 1) == seen[-1:]
    assert seen[-1].stage == "succeeded" and operation.state == "succeeded"
    assert [e.stage for e in seen][:2] == ["plan", "launch"] and "ready" in [e.stage for e in seen]
    assert operation.to_json()["last_event"]["stage"] == "succeeded"
    assert record.status == "running" and record.progress == {}
    # Provisioning opened no client and left dask's config alone: connecting is the faces' step.
    import dask

    assert dask.config.get("scheduler-address", None) is None
    lifecycle.down(["local"])


def test_progress_of_a_starting_cluster_is_in_the_registry_for_other_processes(home):
    listed: list[str] = []

    def list_from_another_process():
        out = subprocess.run([sys.executable, "-m", "dask_aws_magic.faces.cli", "list"], capture_output=True,
                             text=True, timeout=60)
        listed.append(out.stdout + out.stderr)

    cancel_at(lambda hold: lifecycle.start_up("local", workers=1, subscriber=hold), "boot",
              during=list_from_another_process)
    assert "local" in listed[0] and "starting: " in listed[0], listed[0]


def test_api_returns_operations_with_wait_false(home):
    operation = dam.up(workers=1, wait=False)
    assert isinstance(operation, Operation)
    record = operation.result(timeout=60)
    handle = dam.attach(operation.cluster)
    assert handle.client.submit(sum, [2, 3]).result() == 5
    scaling = dam.scale(record.name, 2, wait=False)
    assert scaling.result(timeout=60).workers == 2
    handle.client.wait_for_workers(2, timeout=30)
    stopping = dam.down(record.name, wait=False)
    assert stopping.result(timeout=60)[0].startswith("local: stopped")
    assert [e.stage for e in stopping.events_since(0)][-1] == "succeeded"


def test_cancel_after_the_end_is_refused(home):
    operation = lifecycle.start_up("local", workers=1)
    operation.result(timeout=60)
    assert operation.cancel() is False and operation.state == "succeeded"
    lifecycle.down(["local"])


def test_failed_operation_reports_failed(home):
    with socket.socket() as busy:  # the scheduler cannot bind its port: it exits at once
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        operation = lifecycle.start_up("local", workers=1, overrides={"scheduler.port": busy.getsockname()[1]})
        with pytest.raises(LaunchError, match="(?s)scheduler process exited.*torn down"):
            operation.result(timeout=60)
    assert operation.state == "failed" and operation.events_since(0)[-1].stage == "failed"
    assert isinstance(operation.error, LaunchError)
    assert registry.get("local") is None
