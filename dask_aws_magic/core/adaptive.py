"""Adaptive scaling: starting, finding and stopping the adaptor process (:mod:`.adaptor`) that runs
beside the cluster, whatever its backend, and the rule it scales by.

The process lives outside the kernel so that the cluster keeps adapting after the kernel that asked
for it is gone; ``scale`` and ``down`` stop it. It carries its cluster's id in its environment, so it
is found even when the record is gone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .processes import find_companion, spawn_companion, stop_groups

if TYPE_CHECKING:
    from .registry import ClusterRecord

TAG_ADAPTS = "DASK_AWS_MAGIC_ADAPTS_CLUSTER_ID"
MODULE = "dask_aws_magic.core.adaptor"
# Scale down only after the target has stayed lower for this many checks (avoids flapping).
DOWN_AFTER = 3


def spawn(record: ClusterRecord, minimum: int, maximum: int) -> dict[str, Any]:
    """Start the adaptor process of ``record``; return its process info for the record."""
    return spawn_companion(record.cluster_id, record.name, MODULE, [record.name, str(minimum), str(maximum)],
                           TAG_ADAPTS, "adaptor.log")


def find(cluster_id: str) -> dict[str, Any] | None:
    """The adaptor process of the cluster ``cluster_id`` started from this home, if one runs."""
    return find_companion(cluster_id, MODULE, TAG_ADAPTS)


def stop(record: ClusterRecord) -> bool:
    """Stop the adaptor of ``record`` (the recorded one and any found by its tag); True if one ran."""
    found = [info for info in (record.adaptor, find(record.cluster_id)) if info]
    stop_groups(found)
    return bool(found)


def target(current: int, wanted: int, minimum: int, maximum: int, lower_streak: int,
           booting: bool = False) -> tuple[int, int]:
    """The worker count to ask for now, and the updated count of checks that wanted fewer.
    While workers added by the last scale-up may still be booting, nothing is removed: the load
    they were added for has not met them yet (on EC2 that is minutes)."""
    wanted = max(minimum, min(maximum, wanted))
    if wanted >= current:
        return wanted, 0
    if booting:
        return current, 0
    lower_streak += 1
    return (wanted, 0) if lower_streak >= DOWN_AFTER else (current, lower_streak)
