"""The ``local`` backend: real ``dask scheduler`` and ``dask worker`` processes on this machine.

Each process runs in a session of its own, so the cluster outlives the kernel that started it.
The processes carry the cluster's tags in their environment (``DASK_AWS_MAGIC_*``): that is
how :meth:`LocalBackend.discover` finds a cluster whose registry record is gone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..core import paths
from ..core.processes import TAG_HOME, create_time, is_mine, listens, running, stop_groups
from ..core.units import parse_duration, parse_memory
from . import dask_commands
from .base import BackendDefaults, Context, Discovered, Discovery, Plan, PlannedResource, Poll

if TYPE_CHECKING:
    from ..core.profiles import Profile
    from ..core.registry import ClusterRecord

TAG_CLUSTER = "DASK_AWS_MAGIC_CLUSTER"
TAG_CLUSTER_ID = "DASK_AWS_MAGIC_CLUSTER_ID"
TAG_ROLE = "DASK_AWS_MAGIC_ROLE"
TAG_OWNER = "DASK_AWS_MAGIC_OWNER"


def local_identity() -> str:
    """Who runs this process, as an owner tag: ``local:USER``."""
    import getpass

    return f"local:{getpass.getuser()}"
HOST = "127.0.0.1"
# Going down, a nanny asks its forked worker to close and waits up to 8 s for it; nothing is
# left to save by then, so the processes get this long before SIGKILL.
STOP_GRACE = 1.0


@dataclass
class LocalResources:
    """The processes of one local cluster: ``{"pid", "started"}`` each, workers by Dask name."""

    run_dir: str
    tls_dir: str | None = None  # the cluster's TLS material (0600 files in a 0700 folder), None without TLS
    scheduler: dict[str, Any] | None = None
    workers: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> pid, started, index
    next_index: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LocalResources:
        return cls(run_dir=data.get("run_dir", ""), tls_dir=data.get("tls_dir"), scheduler=data.get("scheduler"),
                   workers=dict(data.get("workers") or {}), next_index=data.get("next_index", 0))

    def tls_files(self, role: str) -> dask_commands.TLSFiles | None:
        """The CA and ``role``'s certificate and key (role: scheduler, worker or client)."""
        if not self.tls_dir:
            return None
        folder = Path(self.tls_dir)
        return dask_commands.TLSFiles(ca=str(folder / "ca.pem"), cert=str(folder / f"{role}.pem"),
                                      key=str(folder / f"{role}.key"))

    def processes(self) -> list[dict[str, Any]]:
        return [info for info in (self.scheduler, *self.workers.values()) if info]


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


def _inside(path: Path, folder: Path) -> bool:
    """True when ``path`` is below ``folder``, links resolved (what ``down`` may delete)."""
    try:
        resolved, top = path.resolve(), folder.resolve()
    except (OSError, RuntimeError):  # a link loop
        return False
    return resolved != top and resolved.is_relative_to(top)


def _total_memory() -> int:
    import psutil

    return psutil.virtual_memory().total


class LocalBackend:
    """Processes on this machine."""

    name: ClassVar[str] = "local"
    defaults: ClassVar[BackendDefaults] = BackendDefaults(timeout=60.0, poll_interval=0.05, wait_for_workers=True,
                                                          boot_time=5.0)

    @classmethod
    def discoverable(cls) -> bool:
        return True

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
        if profile.data.get("network", {}).get("tls", True):
            notes.append("TLS on: other users of this machine cannot connect (the keys stay in your home)")
        else:
            notes.append("TLS OFF: any user of this machine can connect to the scheduler and run code as you")
        if profile.data.get("instance") or profile.data.get("region"):
            notes.append("AWS fields (instance, region) are ignored by the local backend")
        return Plan(
            name=name, backend=self.name, profile=profile.name, workers=workers, owner=local_identity(),
            threads_per_worker=threads, memory_per_worker=memory,
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
                "threads_per_worker": threads,
                "memory_per_worker": memory,
                "tls": profile.data.get("network", {}).get("tls", True),
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
            TAG_OWNER: record.owner,
            "PYTHONUNBUFFERED": "1",
        })
        return env

    def _spawn(self, record: ClusterRecord, role: str, label: str, argv: list[str]) -> dict[str, Any]:
        folder = run_dir(record.name)
        with paths.private_file(folder / f"{label}.log") as log:
            proc = subprocess.Popen(
                [sys.executable, *argv], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self._env(record, role), cwd=folder, start_new_session=True, close_fds=True,
                umask=0o077,  # the scheduler file and the workers' spill: this user's only
            )
        return {"pid": proc.pid, "started": create_time(proc.pid)}

    def _scheduler_file(self, record: ClusterRecord) -> Path:
        return run_dir(record.name) / "scheduler.json"

    def launch(self, ctx: Context, plan: Plan, record: ClusterRecord) -> LocalResources:
        folder = run_dir(record.name)
        shutil.rmtree(folder, ignore_errors=True)
        paths.ensure_home()
        folder.mkdir(mode=0o700)
        (folder / "work").mkdir(mode=0o700)
        s = record.settings
        model = LocalResources(run_dir=str(folder))
        if s.get("tls", True):
            model.tls_dir = str(self._write_tls(record, folder / "tls"))
        argv = dask_commands.scheduler(
            host=HOST, port=s["port"], dashboard_address=f"{HOST}:{s['dashboard_port']}",
            protocol="tls" if model.tls_dir else "tcp", tls=model.tls_files("scheduler"),
            scheduler_file=str(self._scheduler_file(record)), idle_timeout=s.get("idle_timeout") or 0.0,
        )
        model.scheduler = self._spawn(record, "scheduler", "scheduler", argv)
        ctx.save(model)
        # Workers start at once: they wait for the scheduler file rather than for us.
        self._add_workers(ctx, record, model, plan.workers)
        return model

    def _add_workers(self, ctx: Context, record: ClusterRecord, model: LocalResources, count: int) -> None:
        for _ in range(count):
            ctx.check()
            index = model.next_index
            model.next_index = index + 1
            worker_name = f"{record.name}-{index}"
            argv = dask_commands.worker(
                scheduler_file=str(self._scheduler_file(record)), host=HOST, name=worker_name,
                nthreads=record.settings["threads_per_worker"], memory_limit=record.settings["memory_per_worker"],
                local_directory=str(run_dir(record.name) / "work"), death_timeout=60, tls=model.tls_files("worker"),
            )
            info = self._spawn(record, "worker", f"worker-{index}", argv)
            model.workers[worker_name] = {**info, "index": index}
            ctx.save(model)

    def _write_tls(self, record: ClusterRecord, folder: Path) -> Path:
        """The cluster's CA certificate and its three identities, readable by this user only."""
        from ..aws.tls import new_cluster_material

        material = new_cluster_material(record.name)
        folder.mkdir(mode=0o700)
        files = {"ca.pem": material.ca}
        for role in ("scheduler", "worker", "client"):
            pair = getattr(material, role)
            files[f"{role}.pem"], files[f"{role}.key"] = pair.cert, pair.key
        for filename, text in files.items():
            with paths.private_file(folder / filename, "w") as out:
                out.write(text)
        return folder

    # -- observe ---------------------------------------------------------------------------
    def _read_scheduler_file(self, path: Path) -> tuple[str | None, str | None]:
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            return None, None
        port = info.get("services", {}).get("dashboard")
        return info.get("address"), (f"http://{HOST}:{port}/status" if port else None)

    def poll(self, record: ClusterRecord) -> Poll:
        model = LocalResources.from_json(record.resources)
        if not model.scheduler or not running(model.scheduler):
            return Poll(failed=f"the scheduler process exited. Its log:\n{self._tail(record, 'scheduler')}")
        for worker_name, info in model.workers.items():
            if not running(info):
                log = self._tail(record, f"worker-{info['index']}")
                return Poll(failed=f"worker {worker_name} exited. Its log:\n{log}")
        address, dashboard = self._read_scheduler_file(self._scheduler_file(record))
        message = "scheduler listening" if address else "scheduler starting"
        return Poll(address=address, dashboard=dashboard, message=message, done=1 if address else 0, total=1)

    def dashboard_is_its_own(self, record: ClusterRecord) -> bool:
        """True when the dashboard's port is held by the cluster's own scheduler process (the record's pid
        and start time): its plain-HTTP dashboard on this machine is then proven the cluster's."""
        from urllib.parse import urlsplit

        scheduler = LocalResources.from_json(record.resources).scheduler
        port = urlsplit(record.dashboard_link or "").port
        return bool(scheduler and port) and listens(scheduler, int(port or 0))

    def security(self, record: ClusterRecord) -> Any | None:
        files = LocalResources.from_json(record.resources).tls_files("client")
        if files is None:
            return None
        from ..aws.tls import client_security

        return client_security(files.ca, files.cert, files.key)

    def alive(self, record: ClusterRecord) -> bool:
        """The cluster lives as long as its scheduler (orphaned workers exit on their death timeout)."""
        scheduler = LocalResources.from_json(record.resources).scheduler
        return bool(scheduler) and running(scheduler)

    def scope(self, record: ClusterRecord) -> str:
        return "this machine"

    def discover(self) -> Discovery:
        import psutil

        home = str(paths.home().resolve())
        clusters: dict[str, tuple[Discovered, LocalResources]] = {}
        for proc in psutil.process_iter(["pid", "cmdline", "create_time"]):
            cmdline = proc.info["cmdline"] or []
            if not any("distributed.cli" in part for part in cmdline) or not is_mine(proc):
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
            found, model = clusters.setdefault(cluster_id, (
                Discovered(name=name, cluster_id=cluster_id, backend=self.name, resources={}, running=False,
                           created_at=proc.info["create_time"], owner=env.get(TAG_OWNER, "")),
                LocalResources(run_dir=str(run_dir(name))),
            ))
            info = {"pid": proc.info["pid"], "started": proc.info["create_time"]}
            if role == "scheduler":
                model.scheduler, found.running = info, True
                if "--tls-ca-file" in cmdline:
                    folder = Path(cmdline[cmdline.index("--tls-ca-file") + 1]).parent
                    model.tls_dir = str(folder) if _inside(folder, run_dir(name)) else None
                if "--scheduler-file" in cmdline:
                    path = Path(cmdline[cmdline.index("--scheduler-file") + 1])
                    found.scheduler_address, found.dashboard_link = self._read_scheduler_file(path)
            else:
                worker_name = cmdline[cmdline.index("--name") + 1] if "--name" in cmdline else str(info["pid"])
                suffix = worker_name.rsplit("-", 1)[-1]
                index = int(suffix) if suffix.isdigit() else 0
                model.workers[worker_name] = {**info, "index": index}
                model.next_index = max(model.next_index, index + 1)
            found.created_at = min(found.created_at or info["started"], info["started"])
        for found, model in clusters.values():
            found.resources = model.to_json()
        return Discovery([found for found, _ in clusters.values()], searched=["this machine"], me=[local_identity()])

    # -- change ----------------------------------------------------------------------------
    def terminate(self, ctx: Context, record: ClusterRecord) -> list[str]:
        # The tags, not only the record: a worker started by a scale that was cut short counts too.
        models = [LocalResources.from_json(record.resources)]
        models += [LocalResources.from_json(d.resources) for d in self.discover().clusters
                   if d.cluster_id == record.cluster_id]
        processes = [info for model in models for info in model.processes() if running(info)]
        processes = list({info["pid"]: info for info in processes}.values())
        ctx.emit("teardown", f"stopping {len(processes)} process(es) of {record.name}")
        stop_groups(processes, grace=STOP_GRACE)
        for model in models:
            # Only inside the cluster's own folder of the home: a record or a command line may name any path.
            if model.tls_dir and _inside(Path(model.tls_dir), run_dir(record.name)):
                shutil.rmtree(model.tls_dir, ignore_errors=True)  # temporary: gone with the cluster
        worker_pids = {info["pid"] for model in models for info in model.workers.values()}
        workers = sum(info["pid"] in worker_pids for info in processes)
        return [f"stopped {len(processes)} process(es) ({workers} of them workers)"]

    def scale(self, ctx: Context, record: ClusterRecord, workers: int) -> LocalResources:
        model = LocalResources.from_json(record.resources)
        model.workers = {k: v for k, v in model.workers.items() if running(v)}
        if workers > len(model.workers):
            self._add_workers(ctx, record, model, workers - len(model.workers))
            return model
        surplus = sorted(model.workers, key=lambda k: model.workers[k]["index"], reverse=True)
        surplus = surplus[: len(model.workers) - workers]
        if surplus:
            ctx.retire(surplus)
            stop_groups([model.workers[k] for k in surplus], grace=STOP_GRACE)
            for worker_name in surplus:
                del model.workers[worker_name]
        return model

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

