"""The cluster registry: one JSON record per cluster under ``clusters/``.

Records are a cache of what the backends can rediscover from tags; they are shared by the
JupyterLab server, every kernel and the terminal command, so each write is atomic (temp file
and rename) and read-modify-write cycles hold an exclusive lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import paths
from .errors import ClusterNotFound

LIVE = ("starting", "running")


@dataclass
class ClusterRecord:
    """What we know about one cluster."""

    name: str
    cluster_id: str
    backend: str
    profile: str
    status: str = "starting"  # starting | running | stopping | stopped | dead | failed
    scheduler_address: str | None = None
    dashboard_link: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # the resolved profile
    resources: dict[str, Any] = field(default_factory=dict)  # backend-specific: pids, instance ids...
    workers: int = 0
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClusterRecord:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def live(self) -> bool:
        return self.status in LIVE

    @property
    def hourly_cost(self) -> float:
        """Estimated USD per hour at the current number of workers (on-demand prices)."""
        cost = self.settings.get("cost", {})
        return cost.get("base", 0.0) + cost.get("per_worker", 0.0) * self.workers


def _path(name: str) -> Path:
    return paths.clusters_dir() / f"{name}.json"


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """Hold the registry's exclusive lock (between processes)."""
    paths.ensure_home()
    with open(paths.clusters_dir() / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write(record: ClusterRecord) -> None:
    """Write ``record`` atomically."""
    paths.ensure_home()
    record.updated_at = time.time()
    target = _path(record.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{record.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(record.to_json(), out, indent=2, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read(name: str) -> ClusterRecord:
    """The record of ``name``; :class:`ClusterNotFound` if none (or unreadable)."""
    path = _path(name)
    try:
        return ClusterRecord.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        raise ClusterNotFound(f"No cluster named {name!r} is registered.") from None
    except (ValueError, TypeError) as exc:
        raise ClusterNotFound(f"The record {path} is corrupt ({exc}); delete it or run `down {name}`.") from None


def get(name: str) -> ClusterRecord | None:
    """The record of ``name``, or None."""
    try:
        return read(name)
    except ClusterNotFound:
        return None


def update(name: str, change: Callable[[ClusterRecord], None]) -> ClusterRecord:
    """Apply ``change`` to the record of ``name`` under the lock and write it back."""
    with locked():
        record = read(name)
        change(record)
        write(record)
        return record


def remove(name: str, cluster_id: str | None = None) -> None:
    """Forget ``name`` (no error if already gone). With ``cluster_id``, only if the record is still
    that cluster's: another ``up`` may have reused the name meanwhile."""
    with locked():
        if cluster_id is not None:
            current = get(name)
            if current is not None and current.cluster_id != cluster_id:
                return
        with contextlib.suppress(FileNotFoundError):
            _path(name).unlink()


def scan() -> tuple[list[ClusterRecord], list[str]]:
    """Every readable record, and one message per corrupt file (which is skipped, not deleted)."""
    folder = paths.clusters_dir()
    records: list[ClusterRecord] = []
    problems: list[str] = []
    if not folder.is_dir():
        return records, problems
    for path in sorted(folder.glob("*.json")):
        try:
            records.append(ClusterRecord.from_json(json.loads(path.read_text())))
        except FileNotFoundError:
            continue  # removed while we listed
        except (ValueError, TypeError, OSError) as exc:
            problems.append(f"skipped the corrupt cluster record {path} ({exc}); delete it if it is stale")
    return records, problems
