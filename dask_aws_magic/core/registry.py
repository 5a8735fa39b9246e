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
from .errors import ClusterNotFound, InvalidName
from .naming import check_name, is_owner

LIVE = ("starting", "running")
RECOVERED = "(recovered)"  # the profile of a record rebuilt from what discovery proved, not made by `up` here
GONE = ("dead", "stopped")  # what the backend confirmed runs no more


@dataclass
class ClusterRecord:
    """What we know about one cluster."""

    name: str
    cluster_id: str
    backend: str
    profile: str
    status: str = "starting"  # starting | running | dead | failed; shown only: unreachable | unknown
    scheduler_address: str | None = None
    dashboard_link: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # the resolved profile
    resources: dict[str, Any] = field(default_factory=dict)  # the backend's model of what it created
    workers: int = 0
    processes_per_worker: int = 1  # Dask worker processes on each worker
    adaptor: dict[str, Any] | None = None  # the adaptive-scaling process, whatever the backend
    progress: dict[str, Any] = field(default_factory=dict)  # while starting: stage, message, done, total
    owner: str = ""  # the identity that started it (its owner tag): "local:alice", an AWS ARN...
    up_process: dict[str, Any] | None = None  # while starting: the process running ``up`` (pid, started)
    reported_workers: int | None = None  # Dask workers the scheduler last reported (set by ``list``)
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> ClusterRecord:
        """The record in ``data``; ValueError if it is not one (wrong shape, wrong types, a bad name)."""
        if not isinstance(data, dict):
            raise ValueError(f"a record is a JSON object, not {type(data).__name__}")
        for key, kinds in _SHAPE.items():
            value = data.get(key)
            if key in data and (isinstance(value, bool) or not isinstance(value, kinds)):  # no field is a bool
                raise ValueError(f"field {key!r} is {type(value).__name__}, not {kinds[0].__name__}")
        missing = [k for k in ("name", "cluster_id", "backend", "profile") if k not in data]
        if missing:
            raise ValueError(f"fields missing: {', '.join(missing)}")
        try:
            check_name(data["name"])
        except InvalidName:
            raise ValueError(f"the name {data['name']!r} is not a valid cluster name") from None
        if not is_owner(data.get("owner", "")):
            raise ValueError(f"the owner {data['owner']!r} is not printable text")
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def live(self) -> bool:
        return self.status in LIVE

    @property
    def display_status(self) -> str:
        """The status with the latest progress of a starting cluster, e.g. "starting: instances 2/3 running"."""
        message = self.progress.get("message") if self.status == "starting" else None
        return f"{self.status}: {message}" if message else self.status

    @property
    def hourly_cost(self) -> float:
        """Estimated USD per hour at the current number of workers (on-demand prices); nothing once
        its backend confirmed nothing runs."""
        if self.status in GONE:
            return 0.0
        cost = self.settings.get("cost", {})
        return cost.get("base", 0.0) + cost.get("per_worker", 0.0) * self.workers


_SHAPE: dict[str, tuple[type, ...]] = {
    "name": (str,), "cluster_id": (str,), "backend": (str,), "profile": (str,), "status": (str,),
    "scheduler_address": (str, type(None)), "dashboard_link": (str, type(None)), "settings": (dict,),
    "resources": (dict,), "workers": (int,), "processes_per_worker": (int,), "adaptor": (dict, type(None)),
    "owner": (str,), "progress": (dict,), "up_process": (dict, type(None)), "reported_workers": (int, type(None)),
    "created_at": (int, float), "updated_at": (int, float),
    "note": (str,),
}


def _path(name: str) -> Path:
    """The record file of ``name``; the name is checked first, so no path can leave the folder."""
    return paths.clusters_dir() / f"{check_name(name)}.json"


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """Hold the registry's exclusive lock (between processes)."""
    paths.ensure_home()
    with paths.private_file(paths.clusters_dir() / ".lock") as handle:
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
        record = ClusterRecord.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        raise ClusterNotFound(f"No cluster named {name!r} is registered.") from None
    except (ValueError, TypeError) as exc:
        raise ClusterNotFound(f"The record {path} is corrupt ({exc}); delete it or run `down {name}`.") from None
    if record.name != name:
        raise ClusterNotFound(f"The record {path} is corrupt (it names {record.name!r}); delete it.")
    return record


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
            record = ClusterRecord.from_json(json.loads(path.read_text()))
            if record.name != path.stem:
                raise ValueError(f"it names {record.name!r}")
            records.append(record)
        except FileNotFoundError:
            continue  # removed while we listed
        except (ValueError, TypeError, OSError) as exc:
            problems.append(f"skipped the corrupt cluster record {path} ({exc}); delete it if it is stale")
    return records, problems
