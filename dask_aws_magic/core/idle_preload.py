"""Scheduler preload: close the scheduler once it has had no tasks and no clients for a while.

distributed's own ``idle-timeout`` ignores clients, so it would close a cluster under a notebook
that is connected but between computations; this one waits until the client is gone too.
Self-contained (distributed, click and the standard library only), because the EC2 bootstrap
copies its text onto the scheduler instance.

Use: ``dask scheduler --preload PATH_OR_MODULE --idle-timeout-seconds 1800``.
"""

from __future__ import annotations

import logging
import time

import click

logger = logging.getLogger("dask_aws_magic.idle")
CHECK_EVERY = 5.0
ADAPTOR_CLIENT = "dask-aws-magic-adaptor"  # the name adaptor.py gives its client


def busy(scheduler) -> bool:
    """True while the scheduler has work or a user's client is connected."""
    if scheduler.queued or scheduler.unrunnable:
        return True
    if any(ws.processing for ws in scheduler.workers.values()):
        return True
    # Neither the scheduler's own client nor dask-aws-magic's adaptor is a user.
    return any(name != "fire-and-forget" and ADAPTOR_CLIENT not in name for name in scheduler.clients)


@click.command()
@click.option("--idle-timeout-seconds", type=float, default=0.0, help="0 disables")
def dask_setup(scheduler, idle_timeout_seconds: float) -> None:
    if idle_timeout_seconds <= 0:
        return
    from tornado.ioloop import PeriodicCallback

    state = {"since": time.monotonic()}

    def check() -> None:
        if busy(scheduler):
            state["since"] = time.monotonic()
            return
        idle = time.monotonic() - state["since"]
        if idle > idle_timeout_seconds:
            logger.warning("closing: no tasks and no clients for %.0f s", idle)
            scheduler._ongoing_background_tasks.call_soon(scheduler.close, reason="dask-aws-magic-idle")

    callback = PeriodicCallback(check, min(CHECK_EVERY, idle_timeout_seconds / 2) * 1000)
    scheduler.periodic_callbacks["dask-aws-magic-idle"] = callback
    if not callback.is_running():
        callback.start()
