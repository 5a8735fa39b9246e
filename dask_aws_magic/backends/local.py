"""The ``local`` backend: real ``dask scheduler`` and ``dask worker`` processes on this machine.

Each process runs in a session of its own, so the cluster outlives the kernel that started it.
The processes carry the cluster's tags in their environment (``DASK_AWS_MAGIC_*``): that is
how :meth:`LocalBackend.discover` finds a cluster whose registry record is gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core import paths
from ..core.processes import create_time, running, stop_groups
from ..core.profiles import parse_duration, parse_memory
from .base import Discovered, Plan, PlannedResource, Poll

if TYPE_CHECKING:
    from ..core.profiles import Profile
    from ..core.registry import ClusterRecord

TAG_CLUSTER = "DASK_AWS_MAGIC_CLUSTER"
TAG_CLUSTER_ID = "DASK_AWS_MAGIC_CLUSTER_ID"
TAG_ROLE = "DASK_AWS_MAGIC_ROLE"
TAG_HOME = "DASK_AWS_MAGIC_TAG_HOME"
HOST = "127.0.0.1"
# Going down, a nanny asks its forked worker to close and waits up to 8 s for it; nothing is
# left to save by then, so the processes get this long before SIGKILL.
STOP_GRACE = 1.0


def default_sizing(cores: int, total_memory: int) -> tuple[int, int, int]:
    """Workers, threads per worker and memory per worker for this machine (as LocalCluster does:
    one single-threaded worker per core on small machines, fewer fatter workers on large ones)."""
    if cores <= 4:
        workers, threads = cores, 1
    else:
        workers = max(1, round(cores**0.5))
        while cores % workers:
            workers -= 1
        threads = cores // workers
    return workers, threads, total_memory // workers


def run_dir(name: str) -> Path:
    """Where a local cluster's logs and scheduler file live."""
    return paths.logs_dir() / name


def _total_memory() -> int:
    import psutil

    return psutil.virtual_memory().total


class LocalBackend:
    """Processes on this machine."""

    name = "local"

    # -- plan / launch -------------------------------------------------------------------
    def plan(self, profile: Profile, name: str) -> Plan:
        cores = os.cpu_count() or 1
        workers, threads, memory = default_sizing(cores, _total_memory())
        spec = profile.data.get("worker", {})
        workers = spec.get("count", workers)
        threads = spec.get("nthreads", threads)
        memory = parse_memory(spec.get("memory")) or _total_memory() // workers
        idle = parse_duration(profile.data.get("lifecycle", {}).get("idle_timeout"))
        notes = [f"idle timeout {idle:g} s" if idle else "no idle timeout (stop it with `down`)"]
        if profile.data.get("instance") or profile.data.get("region"):
            notes.append("AWS fields (instance, region) are ignored by the local backend")
        return Plan(
            name=name,
            backend=self.name,
            profile=profile.name,
            workers=workers,
            threads_per_worker=threads,
            memory_per_worker=memory,
            resources=[
                PlannedResource("process", "scheduler", 1, f"dask scheduler on {HOST}"),
                PlannedResource(
                    "process", "worker", workers,
                    f"dask worker, {threads} thread(s), {memory / 2**30:.1f} GiB memory limit each",
                ),
            ],
            notes=notes,
            settings={
                "idle_timeout": idle,
                "env": profile.data.get("software", {}).get("env", {}),
                "port": profile.data.get("scheduler", {}).get("port", 0),
                "dashboard_port": profile.data.get("scheduler", {}).get("dashboard_port", 0),
            },
        )

    def _env(self, record: ClusterRecord, role: str) -> dict[str, str]:
        env = dict(os.environ)
        # The nanny has already imported distributed: forking its worker process skips a second
        # interpreter start (spawn, the default, costs ~0.5 s per worker here).
        env.setdefault("DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD", "fork")
        env.update(record.settings.get("env", {}))
        env.update({
            TAG_CLUSTER: record.name,
            TAG_CLUSTER_ID: record.cluster_id,
            TAG_ROLE: role,
            TAG_HOME: str(paths.home().resolve()),
            "PYTHONUNBUFFERED": "1",
        })
        return env

    def _spawn(self, record: ClusterRecord, role: str, label: str, argv: list[str]) -> dict[str, Any]:
        folder = run_dir(record.name)
        with open(folder / f"{label}.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, *argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env(record, role),
                cwd=folder,
                start_new_session=True,
                close_fds=True,
            )
        return {"pid": proc.pid, "started": create_time(proc.pid)}

    def _scheduler_file(self, record: ClusterRecord) -> Path:
        return run_dir(record.name) / "scheduler.json"

    def _spawn_worker(self, record: ClusterRecord, index: int) -> tuple[str, dict[str, Any]]:
        worker_name = f"{record.name}-{index}"
        settings = record.settings
        argv = [
            "-m", "distributed.cli.dask_worker",
            "--scheduler-file", str(self._scheduler_file(record)),
            "--name", worker_name,
            "--nworkers", "1",
            "--nthreads", str(settings["threads_per_worker"]),
            "--memory-limit", str(settings["memory_per_worker"]),
            "--host", HOST,
            "--no-dashboard",  # as LocalCluster's workers: saves each worker importing bokeh
            "--local-directory", str(run_dir(record.name) / "work"),
            "--death-timeout", "60",
        ]
        return worker_name, self._spawn(record, "worker", f"worker-{index}", argv)

    def launch(self, plan: Plan, record: ClusterRecord, save: Callable[[], None]) -> None:
        folder = run_dir(record.name)
        shutil.rmtree(folder, ignore_errors=True)
        (folder / "work").mkdir(parents=True)
        record.settings.update(plan.settings)
        record.settings.update({
            "threads_per_worker": plan.threads_per_worker,
            "memory_per_worker": plan.memory_per_worker,
        })
        record.resources = {"run_dir": str(folder), "scheduler": None, "workers": {}, "next_index": 0}
        scheduler_argv = [
            "-m", "distributed.cli.dask_scheduler",
            "--host", HOST,
            "--port", str(record.settings["port"]),
            "--dashboard-address", f"{HOST}:{record.settings['dashboard_port']}",
            "--scheduler-file", str(self._scheduler_file(record)),
        ]
        if record.settings.get("idle_timeout"):
            scheduler_argv += ["--preload", "dask_aws_magic.core.idle_preload",
                               "--idle-timeout-seconds", str(record.settings["idle_timeout"])]
        record.resources["scheduler"] = self._spawn(record, "scheduler", "scheduler", scheduler_argv)
        save()
        # Workers start at once: they wait for the scheduler file rather than for us.
        self._add_workers(record, plan.workers)
        save()

    def _add_workers(self, record: ClusterRecord, count: int) -> None:
        for _ in range(count):
            index = record.resources["next_index"]
            record.resources["next_index"] = index + 1
            worker_name, info = self._spawn_worker(record, index)
            record.resources["workers"][worker_name] = {**info, "index": index}

    # -- observe ---------------------------------------------------------------------------
    def _read_scheduler_file(self, record: ClusterRecord) -> tuple[str | None, str | None]:
        try:
            info = json.loads(self._scheduler_file(record).read_text())
        except (OSError, ValueError):
            return None, None
        port = info.get("services", {}).get("dashboard")
        return info.get("address"), (f"http://{HOST}:{port}/status" if port else None)

    def poll(self, record: ClusterRecord) -> Poll:
        scheduler = record.resources.get("scheduler")
        workers = record.resources.get("workers", {})
        if not scheduler or not running(scheduler):
            return Poll(failed=f"the scheduler process exited. Its log:\n{self._tail(record, 'scheduler')}")
        for worker_name, info in workers.items():
            if not running(info):
                log = self._tail(record, f"worker-{info['index']}")
                return Poll(failed=f"worker {worker_name} exited. Its log:\n{log}")
        address, dashboard = self._read_scheduler_file(record)
        message = "scheduler listening" if address else "scheduler starting"
        return Poll(address=address, dashboard=dashboard, message=message,
                    done=1 if address else 0, total=1)

    def security(self, record: ClusterRecord) -> None:
        return None

    def alive(self, record: ClusterRecord) -> bool:
        """The cluster lives as long as its scheduler (orphaned workers exit on their death timeout)."""
        scheduler = record.resources.get("scheduler")
        return bool(scheduler) and running(scheduler)

    def _processes(self, record: ClusterRecord) -> list[dict[str, Any]]:
        return self._processes_of(record.resources)

    @staticmethod
    def _processes_of(resources: dict[str, Any]) -> list[dict[str, Any]]:
        found = [resources.get("scheduler"), *resources.get("workers", {}).values(), resources.get("adaptor")]
        return [info for info in found if info]

    def discover(self) -> list[Discovered]:
        import psutil

        home = str(paths.home().resolve())
        clusters: dict[str, Discovered] = {}
        for proc in psutil.process_iter(["pid", "cmdline", "create_time"]):
            cmdline = proc.info["cmdline"] or []
            if not any("distributed.cli" in part or "dask_aws_magic.core.adaptive" in part for part in cmdline):
                continue
            try:
                if os.getpgid(proc.info["pid"]) != proc.info["pid"]:
                    continue  # a worker forked by its nanny: the nanny leads the group
                env = proc.environ()
            except (psutil.Error, OSError):
                continue
            if env.get(TAG_HOME) != home or TAG_CLUSTER_ID not in env:
                continue
            name, cluster_id, role = env[TAG_CLUSTER], env[TAG_CLUSTER_ID], env.get(TAG_ROLE, "")
            found = clusters.setdefault(cluster_id, Discovered(
                name=name, cluster_id=cluster_id, backend=self.name,
                resources={"run_dir": str(run_dir(name)), "scheduler": None, "workers": {}, "next_index": 0},
                created_at=proc.info["create_time"],
            ))
            info = {"pid": proc.info["pid"], "started": proc.info["create_time"]}
            if role == "scheduler":
                found.resources["scheduler"] = info
                if "--scheduler-file" in cmdline:
                    path = Path(cmdline[cmdline.index("--scheduler-file") + 1])
                    with contextlib.suppress(OSError, ValueError):
                        data = json.loads(path.read_text())
                        found.scheduler_address = data.get("address")
                        port = data.get("services", {}).get("dashboard")
                        found.dashboard_link = f"http://{HOST}:{port}/status" if port else None
            elif role == "adaptor":
                found.resources["adaptor"] = info
            else:
                worker_name = cmdline[cmdline.index("--name") + 1] if "--name" in cmdline else str(info["pid"])
                index = int(worker_name.rsplit("-", 1)[-1]) if worker_name.rsplit("-", 1)[-1].isdigit() else 0
                found.resources["workers"][worker_name] = {**info, "index": index}
                found.resources["next_index"] = max(found.resources["next_index"], index + 1)
            found.created_at = min(found.created_at or info["started"], info["started"])
        return list(clusters.values())

    # -- change ----------------------------------------------------------------------------
    def terminate(self, record: ClusterRecord) -> list[str]:
        # The tags, not only the record: a worker started by a scale that was cut short counts too.
        tagged = [d for d in self.discover() if d.cluster_id == record.cluster_id]
        found = [info for d in tagged for info in self._processes_of(d.resources)]
        processes = [info for info in self._processes(record) + found if running(info)]
        processes = list({info["pid"]: info for info in processes}.values())
        stop_groups(processes, grace=STOP_GRACE)
        worker_pids = {info["pid"] for res in [record.resources, *(d.resources for d in tagged)]
                       for info in res.get("workers", {}).values()}
        workers = sum(info["pid"] in worker_pids for info in processes)
        return [f"stopped {len(processes)} process(es) ({workers} of them workers)"]

    def scale(self, record: ClusterRecord, workers: int, retire: Callable[[list[str]], None]) -> None:
        current = {k: v for k, v in record.resources.get("workers", {}).items() if running(v)}
        record.resources["workers"] = current
        if workers > len(current):
            self._add_workers(record, workers - len(current))
            return
        surplus = sorted(current, key=lambda k: current[k]["index"], reverse=True)[: len(current) - workers]
        if not surplus:
            return
        retire(surplus)
        stop_groups([current[k] for k in surplus], grace=STOP_GRACE)
        for worker_name in surplus:
            del record.resources["workers"][worker_name]

    def logs(self, record: ClusterRecord) -> dict[str, str]:
        folder = run_dir(record.name)
        return {path.stem: self._tail(record, path.stem, lines=200) for path in sorted(folder.glob("*.log"))}

    def _tail(self, record: ClusterRecord, label: str, lines: int = 20) -> str:
        path = run_dir(record.name) / f"{label}.log"
        try:
            text = path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"
