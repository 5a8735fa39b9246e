"""``%dask_cluster sandbox start|stop|status``: the emulated AWS in this kernel (a plugin command).

A sandbox lives in its kernel: after a restart, the clusters registered in an earlier sandbox are
gone with it. ``start`` and ``status`` name them, and ``%dask_cluster down NAME`` forgets them.
"""

from __future__ import annotations

import argparse
from typing import ClassVar


def stale_clusters() -> list[str]:
    """The registered clusters made in an emulated AWS that has stopped (another kernel's, or this
    one's before a restart): nothing of them exists any more."""
    from ..aws.scopes import Scope
    from ..core import registry

    records, _ = registry.scan()
    return sorted(r.name for r in records if r.settings.get("endpoint_url") and Scope(
        r.settings.get("region") or "", endpoint_url=r.settings["endpoint_url"]).stopped_sandbox)


def _stale_note() -> str:
    names = stale_clusters()
    if not names:
        return ""
    downs = "; ".join(f"`%dask_cluster down {name}`" for name in names)
    return (f" The cluster(s) {', '.join(names)} were made in a sandbox that has stopped (a kernel restart "
            f"ends its sandbox), so they no longer exist; forget them with {downs}.")


class SandboxCommand:
    name: ClassVar[str] = "sandbox"
    help: ClassVar[str] = "start or stop the emulated AWS (moto) in this kernel"
    kernel_only: ClassVar[bool] = True  # it lives in the process that uses it

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("action", choices=["start", "stop", "status"])
        parser.add_argument("--boot-delay", type=float, default=0.0, help="seconds each instance boots")

    def run(self, args: argparse.Namespace) -> str:
        from . import current, start, stop

        if args.action == "start":
            sb = start(boot_delay=args.boot_delay)
            return (f"AWS sandbox running at {sb.endpoint_url} (region {sb.region}); this kernel's AWS calls "
                    f"now go to it. Stop it with `%dask_cluster sandbox stop`.{_stale_note()}")
        if args.action == "stop":
            stop()
            return "AWS sandbox stopped; AWS settings restored."
        sb = current()
        state = f"AWS sandbox running at {sb.endpoint_url}." if sb else "No AWS sandbox is running."
        return state + _stale_note()
