"""Runs what gets started in moto's ECS: each task's container command as a local process group,
and the ECS agent of EC2 container instances.

As on ECS: a task is PENDING until its container starts (``start_delay``: the image pull and the
Fargate provisioning), then RUNNING; its image must be pullable (a public Dask image, an ECR
repository that exists, or one added with ``Sandbox.add_image``); its ``secrets`` are read from
Secrets Manager with its execution role and handed to the process as environment variables; its
output goes to the CloudWatch log stream its ``awslogs`` options name; the address moto gave its
network interface is its own (a loopback address) and is served by the task metadata endpoint. A
task whose process exits is STOPPED with ``EssentialContainerExited`` and the exit code; StopTask
kills the process group. The image's software is this host's Python (package managers refuse, as
on an emulated instance), and the process gets nothing secret but the task's own ``secrets``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ._patch import Patches
from .emulator import _write_shims
from .process import kill_groups, live_groups, signal_group, spawn
from .task_metadata import TaskMetadataServer
from .task_roles import StartFailure, task_role_environment
from .userdata import decode_user_data

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.05
KILL_GRACE = 2.0
EXIT_LINE = re.compile(rb"^\[sandbox\] user-data exited with status (-?\d+)$")
ECS_CLUSTER_LINE = re.compile(rb"ECS_CLUSTER=([A-Za-z0-9_-]+)")
PUBLIC_IMAGES = ("ghcr.io/dask/dask:", "daskdev/dask:", "docker.io/daskdev/dask:")
ECR_IMAGE = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com/([^:@]+)")
SPOT_REASON = "Your Spot Task was interrupted."


@dataclass
class EmulatedTask:
    """Book-keeping for one moto task."""

    task: Any
    backend: Any  # moto's ECS backend (account, region)
    directory: str
    start_at: float
    phase: str = "pending"  # pending -> running -> ended
    process: Any = None
    log_target: tuple[Any, str, str] | None = None  # (logs backend, group, stream)
    offset: int = 0
    stop: tuple[str, str] | None = None  # (code, reason) asked by the sandbox (a Spot reclaim)
    kill_at: float | None = None
    exit_code: int | None = None
    pending_text: bytes = b""

    @property
    def arn(self) -> str:
        return str(self.task.task_arn)

    @property
    def console_path(self) -> str:
        return os.path.join(self.directory, "console.log")


def _now() -> datetime:
    return datetime.now(timezone.utc)


class TaskEmulator:
    """Watches moto's ECS backends and runs every task's container; registers EC2 instances whose
    user-data names an ``ECS_CLUSTER`` as container instances of that cluster (the ECS agent)."""

    def __init__(self, root: str, start_delay: float = 0.0, extra_env: dict[str, str] | None = None,
                 python: str = sys.executable, index_url: str | None = None) -> None:
        self.root = os.path.join(root, "tasks")
        self.start_delay = start_delay
        self.extra_env = dict(extra_env or {})
        self.python = python  # the image's interpreter
        self.index_url = index_url  # the wheel index `uv` in a task installs from
        self.images: set[str] = set()
        self.metadata = TaskMetadataServer()
        self._records: dict[str, EmulatedTask] = {}
        self._agents: dict[str, str] = {}  # EC2 instance id -> container instance ARN
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._patches = Patches()
        self._thread = threading.Thread(target=self._run, name="sandbox-tasks", daemon=True)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        self._patch_moto()
        self.metadata.start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.metadata.stop()
        self._patches.restore()

    # -- queries and faults ----------------------------------------------------------------
    def processes(self) -> dict[str, int]:
        """Task ARN -> process-group id, for tasks whose processes are alive."""
        with self._lock:
            groups = {r.arn: r.process.pid for r in self._records.values() if r.process is not None}
        live = live_groups(set(groups.values()))
        return {arn: pgid for arn, pgid in groups.items() if pgid in live}

    def output(self, task_arn: str) -> str:
        record = self._records.get(task_arn)
        if record is None or not os.path.exists(record.console_path):
            return ""
        with open(record.console_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop_task(self, task_arn: str, reason: str = SPOT_REASON, code: str = "SpotInterruption") -> None:
        """Stop a task as AWS does (a Fargate Spot reclaim by default): its process is killed and it
        ends STOPPED with ``code`` and ``reason``."""
        with self._lock:
            record = self._records.get(task_arn)
            if record is None:
                raise KeyError(f"no emulated task {task_arn}")
            record.stop = (code, reason)

    # -- moto hooks ------------------------------------------------------------------------
    def _patch_moto(self) -> None:
        from moto.ecs.models import EC2ContainerServiceBackend

        original_run = EC2ContainerServiceBackend.run_task
        original_stop = EC2ContainerServiceBackend.stop_task
        emulator = self

        def run_task(backend: Any, *args: Any, **kwargs: Any) -> Any:
            tasks = original_run(backend, *args, **kwargs)
            for task in tasks:
                emulator._register(backend, task)
            return tasks

        def stop_task(backend: Any, *args: Any, **kwargs: Any) -> Any:
            with emulator._lock:  # never between a starting task's check and its RUNNING
                return original_stop(backend, *args, **kwargs)

        original_describe = EC2ContainerServiceBackend.describe_clusters

        def describe_clusters(backend: Any, *args: Any, **kwargs: Any) -> Any:
            # A cluster's task counts, as ECS gives them: its tasks by their last status right now.
            clusters, failures = original_describe(backend, *args, **kwargs)
            for cluster in clusters:
                statuses = [t.last_status for t in list(backend.tasks.get(cluster.name, {}).values())]
                cluster.running_tasks_count = statuses.count("RUNNING")
                cluster.pending_tasks_count = sum(s in ("PROVISIONING", "PENDING", "ACTIVATING") for s in statuses)
            return clusters, failures

        self._patches.set(EC2ContainerServiceBackend, "run_task", run_task)
        self._patches.set(EC2ContainerServiceBackend, "stop_task", stop_task)
        self._patches.set(EC2ContainerServiceBackend, "describe_clusters", describe_clusters)

    def _register(self, backend: Any, task: Any) -> None:
        with self._lock:
            if task.task_arn in self._records:
                return
            task.last_status = "PENDING"
            task.created_at = _now()
            for container in task.containers:
                container.last_status = "PENDING"
            _public_address(backend, task)
            directory = os.path.join(self.root, task.id)
            self._records[task.task_arn] = EmulatedTask(task, backend, directory, time.monotonic() + self.start_delay)

    # -- the loop --------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.wait(POLL_INTERVAL):
                try:
                    self._agent()
                    for record in list(self._records.values()):
                        self._step(record)
                except Exception:  # one bad tick must not end the emulation
                    log.exception("sandbox task emulator")
        finally:
            self._shutdown_all()

    def _step(self, record: EmulatedTask) -> None:
        task = record.task
        asked_to_stop = record.stop is not None or task.desired_status == "STOPPED" or task.last_status == "STOPPED"
        if record.phase == "pending":
            if asked_to_stop:
                self._end(record, *(record.stop or ("UserInitiated", task.stopped_reason or "Task stopped")))
            elif time.monotonic() >= record.start_at:
                try:
                    self._start_task(record)
                except StartFailure as failure:
                    self._end(record, failure.code, failure.reason)
        elif record.phase == "running":
            self._tail(record)
            if record.process is not None and record.process.poll() is not None:
                self._tail(record, final=True)
                code, reason = record.stop or ("EssentialContainerExited", "Essential container in task exited")
                if record.kill_at is not None and record.stop is None:
                    code, reason = "UserInitiated", task.stopped_reason or "Task stopped by user"
                self._end(record, code, reason)
            elif asked_to_stop and record.kill_at is None:
                signal_group(record.process.pid, signal.SIGTERM)
                record.kill_at = time.monotonic() + KILL_GRACE
            elif record.kill_at is not None and time.monotonic() >= record.kill_at:
                signal_group(record.process.pid, signal.SIGKILL)

    def _end(self, record: EmulatedTask, code: str, reason: str) -> None:
        task = record.task
        record.phase = "ended"
        if task.last_status != "STOPPED" and task.container_instance_arn:  # StopTask released it already
            with contextlib.suppress(Exception):
                instance = record.backend.container_instances[task.cluster_name][
                    task.container_instance_arn.split("/")[-1]]
                record.backend.update_container_instance_resources(instance, task.resource_requirements,
                                                                   removing=True)
        task.last_status = task.desired_status = "STOPPED"
        task.stop_code, task.stopped_reason = code, task.stopped_reason or reason
        if record.stop is not None:
            task.stopped_reason = reason
        task.stopped_at = task.execution_stopped_at = _now()
        for container in task.containers:
            container.last_status = "STOPPED"
            if record.exit_code is not None:
                container.exitCode = record.exit_code
            if code == "TaskFailedToStart":
                container.reason = reason
        self.metadata.remove(task.id)
        if record.process is not None:
            self._release_eni(record)

    def _release_eni(self, record: EmulatedTask) -> None:
        """Detach and delete the task's network interface, as ECS does once the task stopped."""
        from moto.ec2.models import ec2_backends

        ec2 = ec2_backends[record.backend.account_id][record.backend.region_name]
        for attachment in record.task.attachments:
            for detail in attachment.get("details", []):
                if detail.get("name") == "networkInterfaceId":
                    with contextlib.suppress(Exception):
                        ec2.delete_network_interface(detail["value"])

    def _shutdown_all(self) -> None:
        pgids = {r.process.pid for r in self._records.values() if r.process is not None}
        kill_groups(live_groups(pgids), KILL_GRACE)
        for record in self._records.values():
            if record.process is not None:
                with contextlib.suppress(Exception):
                    record.process.wait(timeout=1)

    # -- starting a task -------------------------------------------------------------------
    def _start_task(self, record: EmulatedTask) -> None:
        task, backend = record.task, record.backend
        definition = backend.describe_task_definition(task.task_definition_arn)
        container = definition.container_definitions[0]
        image = str(container.get("image", ""))
        if not self._pullable(image, backend):
            raise StartFailure("TaskFailedToStart", f"CannotPullContainerError: pull image manifest has been retried "
                                                    f"5 time(s): {image}: not found")
        override = next((o for o in (task.overrides or {}).get("containerOverrides", [])
                         if o.get("name") == container.get("name")), {})
        environment = {e["name"]: e["value"] for e in container.get("environment") or []}
        environment.update({e["name"]: e["value"] for e in override.get("environment") or []})
        environment.update(self._secrets(container, definition, backend))
        environment.update(task_role_environment(self.metadata, backend, definition, task))
        record.log_target = self._log_target(container, task, backend)
        ip = self._address(task, backend)
        home, bin_dir, tmp = (os.path.join(record.directory, d) for d in ("home", "bin", "tmp"))
        for folder in (home, bin_dir, tmp):
            os.makedirs(folder, mode=0o700, exist_ok=True)
        _write_shims(bin_dir, record.directory, self.python, self.index_url)
        refusing = _refusing_modules(record.directory)
        argv = [*(container.get("entryPoint") or []), *(override.get("command") or container.get("command") or [])]
        if not argv:
            raise StartFailure("TaskFailedToStart", "CannotStartContainerError: no command and the image has none")
        env = {
            "PATH": os.pathsep.join([bin_dir, os.path.dirname(self.python), "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": home, "TMPDIR": tmp, "LANG": "C.UTF-8", "HOSTNAME": f"ip-{ip.replace('.', '-')}",
            "AWS_REGION": backend.region_name, "AWS_DEFAULT_REGION": backend.region_name,
            "ECS_CONTAINER_METADATA_URI_V4": self.metadata.add(task.id, task.task_arn, task.cluster_arn,
                                                               str(container.get("name")), ip),
            "SANDBOX_TASK_IP": ip,
            "PYTHONPATH": refusing,  # `python -m pip` refuses too: the interpreter is this host's
        }
        if os.environ.get("LD_LIBRARY_PATH"):
            env["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH"]
        env.update(self.extra_env)
        env.update(environment)
        record.process = spawn(argv, home, env, record.console_path, container=True)
        record.phase = "running"
        with self._lock:  # StopTask holds it too (see _patch_moto)
            if task.desired_status == "STOPPED":
                return  # stopped while it started: as on ECS, a stopped task never reports RUNNING again
            task.last_status = "RUNNING"
            task.started_at = task.pull_started_at = task.pull_stopped_at = _now()
            for item in task.containers:
                item.last_status = "RUNNING"

    def _pullable(self, image: str, backend: Any) -> bool:
        if image in self.images or image.startswith(PUBLIC_IMAGES):
            return True
        match = ECR_IMAGE.match(image)
        if not match:
            return False
        from moto.ecr.models import ecr_backends

        account, region, repository = match.groups()
        try:
            return repository in ecr_backends[account][region].repositories
        except KeyError:
            return False

    def _secrets(self, container: dict[str, Any], definition: Any, backend: Any) -> dict[str, str]:
        """The container's ``secrets``, read as ECS reads them: with the task's execution role."""
        wanted = container.get("secrets") or []
        if not wanted:
            return {}
        role = getattr(definition, "execution_role_arn", None)
        if not role or not self._role_exists(backend.account_id, role):
            raise StartFailure("TaskFailedToStart", "ResourceInitializationError: unable to pull secrets or registry "
                                                    f"auth: the task execution role {role or '(none)'} does not exist")
        from moto.secretsmanager.models import secretsmanager_backends

        values = {}
        for item in wanted:
            parts = str(item["valueFrom"]).split(":")
            secret_id, extra = ":".join(parts[:7]), parts[7:] + ["", "", ""]
            json_key, stage, version = extra[:3]
            region = parts[3] if len(parts) > 3 and parts[0] == "arn" else backend.region_name
            try:
                answer = secretsmanager_backends[backend.account_id][region].get_secret_value(
                    secret_id, version or None, stage or None)
                text = answer["SecretString"]
                values[item["name"]] = str(json.loads(text)[json_key]) if json_key else text
            except Exception as exc:
                raise StartFailure("TaskFailedToStart", "ResourceInitializationError: unable to pull secrets or "
                                   f"registry auth: retrieving secret from {secret_id}: {type(exc).__name__}") from None
        return values

    @staticmethod
    def _role_exists(account: str, arn: str) -> bool:
        from moto.iam.models import iam_backends

        name = arn.rsplit("/", 1)[-1]
        try:
            iam_backends[account]["global"].get_role(name)
            return True
        except Exception:
            return False

    @staticmethod
    def _log_target(container: dict[str, Any], task: Any, backend: Any) -> tuple[Any, str, str] | None:
        config = container.get("logConfiguration") or {}
        if config.get("logDriver") != "awslogs":
            return None
        from moto.logs.models import logs_backends

        options = config.get("options") or {}
        group = options.get("awslogs-group", "")
        logs = logs_backends[backend.account_id][options.get("awslogs-region", backend.region_name)]
        if group not in logs.groups:
            if str(options.get("awslogs-create-group", "")).lower() != "true":
                raise StartFailure("TaskFailedToStart", "ResourceInitializationError: failed to validate logger args: "
                                   f"The specified log group does not exist: {group}")
            logs.create_log_group(group, {})
        prefix = options.get("awslogs-stream-prefix")
        stream = f"{prefix}/{container.get('name')}/{task.id}" if prefix else task.id
        with contextlib.suppress(Exception):
            logs.create_log_stream(group, stream)
        return logs, group, stream

    @staticmethod
    def _address(task: Any, backend: Any) -> str:
        for attachment in task.attachments:
            for detail in attachment.get("details", []):
                if detail.get("name") == "privateIPv4Address":
                    return str(detail["value"])
        if task.container_instance_arn:  # bridge or host networking: the container instance's address
            from moto.ec2.models import ec2_backends

            instance_id = backend.container_instances[task.cluster_name][
                task.container_instance_arn.split("/")[-1]].ec2_instance_id
            return str(ec2_backends[backend.account_id][backend.region_name].get_instance(instance_id).private_ip)
        raise StartFailure("TaskFailedToStart", "ResourceInitializationError: the task has no network interface")

    # -- logs ------------------------------------------------------------------------------
    def _tail(self, record: EmulatedTask, final: bool = False) -> None:
        """Ship the new complete lines of the task's output to its log stream."""
        try:
            with open(record.console_path, "rb") as f:
                f.seek(record.offset)
                chunk = f.read()
        except OSError:
            return
        record.offset += len(chunk)
        text = record.pending_text + chunk
        lines = text.split(b"\n")
        record.pending_text = b"" if final else lines.pop()
        events = []
        stamp = int(time.time() * 1000)
        for line in lines:
            exited = EXIT_LINE.match(line)
            if exited:
                record.exit_code = int(exited.group(1))
                continue
            if line or final:
                events.append({"timestamp": stamp, "message": line.decode("utf-8", "replace")})
        events = [e for e in events if e["message"]]
        if events and record.log_target is not None:
            logs, group, stream = record.log_target
            with contextlib.suppress(Exception):  # the group deleted under a running task: output is lost
                logs.put_log_events(group, stream, events)

    # -- the ECS agent of container instances ------------------------------------------------
    def _agent(self) -> None:
        """Register running EC2 instances whose user-data names an ECS cluster; deregister ended ones."""
        from moto.ec2.models import ec2_backends
        from moto.ecs.models import ecs_backends

        for account, regions in list(ec2_backends.items()):
            for region, ec2 in list(regions.items()):
                for reservation in list(ec2.reservations.values()):
                    for instance in list(reservation.instances):
                        self._agent_step(instance, ecs_backends[account][region])

    def _agent_step(self, instance: Any, ecs: Any) -> None:
        registered = self._agents.get(instance.id)
        if registered is None and instance.state == "running":
            match = ECS_CLUSTER_LINE.search(decode_user_data(instance.user_data) or b"")
            if match is None:
                self._agents[instance.id] = ""  # no ECS agent on it: never looked at again
            elif match.group(1).decode() in ecs.clusters:
                found = ecs.register_container_instance(match.group(1).decode(), instance.id)
                _size_from_instance_type(found, instance)
                self._agents[instance.id] = f"{match.group(1).decode()}|{found.container_instance_arn}"
        elif registered and registered != "gone" and instance.state in ("shutting-down", "terminated", "stopped"):
            cluster, arn = registered.split("|")
            self._agents[instance.id] = "gone"
            with contextlib.suppress(Exception):
                for record in list(self._records.values()):
                    if record.task.container_instance_arn == arn and record.phase != "ended":
                        record.stop = ("TerminationNotice", "Host EC2 instance terminated")
                ecs.deregister_container_instance(cluster, arn, True)


REFUSAL = ("import sys\nprint('[sandbox] pip: refused: the task shares this host\\'s Python, so packages are not "
           "installed here; use an image that has them', file=sys.stderr)\nsys.exit(1)\n")


def _refusing_modules(directory: str) -> str:
    """A folder first on the task's Python path whose ``pip`` and ``ensurepip`` refuse to run
    (``sys.executable -m pip`` bypasses the command shims)."""
    folder = os.path.join(directory, "refuse")
    for module in ("pip", "ensurepip"):
        package = os.path.join(folder, module)
        os.makedirs(package, exist_ok=True)
        with open(os.path.join(package, "__init__.py"), "w") as f:
            f.write("")
        with open(os.path.join(package, "__main__.py"), "w") as f:
            f.write(REFUSAL)
    return folder


def _public_address(backend: Any, task: Any) -> None:
    """With ``assignPublicIp: ENABLED`` the task's interface gets a public address (its loopback one)."""
    config = (getattr(task, "network_configuration", None) or {}).get("awsvpcConfiguration") or {}
    if config.get("assignPublicIp") != "ENABLED":
        return
    from moto.ec2.models import ec2_backends

    ec2 = ec2_backends[backend.account_id][backend.region_name]
    for attachment in task.attachments:
        for detail in attachment.get("details", []):
            if detail.get("name") == "networkInterfaceId":
                with contextlib.suppress(Exception):
                    eni = ec2.get_network_interface(detail["value"])
                    eni.public_ip = eni.private_ip_address


def _size_from_instance_type(container_instance: Any, instance: Any) -> None:
    """What the agent registers: the instance type's vCPUs x 1024 and its memory less ~6%."""
    from moto.ec2.models.instance_types import INSTANCE_TYPES

    info = INSTANCE_TYPES.get(instance.instance_type)
    if not info:
        return
    cpu = int(info["VCpuInfo"]["DefaultVCpus"]) * 1024
    memory = int(info["MemoryInfo"]["SizeInMiB"] * 0.94)
    for resources in (container_instance.registered_resources, container_instance.remaining_resources):
        for item in resources:
            if item["name"] == "CPU":
                item["integerValue"] = cpu
            elif item["name"] == "MEMORY":
                item["integerValue"] = memory
