"""Runs what gets launched in moto: each instance's user-data as a local process group.

Each instance is a separate machine as far as this host allows: its own folder (home, console,
and a root under which user-data writes what it would write at ``/``, named by
``SANDBOX_INSTANCE_ROOT``), its own loopback address, package managers that refuse to run (they
would change this host), and nothing of it left but its console output once it has ended.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from ._patch import Patches
from .metadata import MetadataServer, Tree, instance_tree
from .process import kill_groups, live_groups, signal_group, spawn
from .userdata import decode_user_data, script_argv

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.05
KILL_GRACE = 2.0
CONSOLE_LIMIT = 64 * 1024  # GetConsoleOutput returns the last 64 KB, as on AWS
ROOT_VARIABLE = "SANDBOX_INSTANCE_ROOT"  # where the instance's "/" is; user-data may prefix its paths with it
_POWER_OFF_FILE = "power-off"
_KEPT = ("console.log",)  # what stays of an ended instance (GetConsoleOutput still answers)
PACKAGE_MANAGERS = ("dnf", "yum", "apt-get", "apt", "rpm", "dpkg", "pip", "pip3",
                    f"pip{sys.version_info.major}.{sys.version_info.minor}", "conda", "mamba", "docker")


@dataclass
class EmulatedInstance:
    """Book-keeping for one moto instance."""

    instance: Any
    directory: str
    boot_at: float
    phase: str = "booting"  # booting -> running <-> stopped -> ended
    process: subprocess.Popen[bytes] | None = None
    user_data: bytes | None = None
    extra_metadata: Tree = field(default_factory=dict)
    interrupt: tuple[float, str] | None = None
    cleaned: bool = False  # its files (keys included) removed once it ended

    @property
    def id(self) -> str:
        return str(self.instance.id)

    @property
    def console_path(self) -> str:
        return os.path.join(self.directory, "console.log")

    @property
    def root(self) -> str:
        return os.path.join(self.directory, "root")

    @property
    def pgid(self) -> int | None:
        return self.process.pid if self.process else None

    def clean(self) -> None:
        """Remove everything the instance had but its console output (user-data and its root hold keys)."""
        self.cleaned = True
        with contextlib.suppress(FileNotFoundError):
            for entry in os.listdir(self.directory):
                if entry not in _KEPT:
                    path = os.path.join(self.directory, entry)
                    if os.path.isdir(path) and not os.path.islink(path):
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        with contextlib.suppress(OSError):
                            os.unlink(path)


class InstanceEmulator:
    """Watches moto's EC2 backends and emulates the life of every instance.

    `boot_delay` (seconds) is how long a new instance stays `pending` before its user-data runs.
    """

    def __init__(self, root: str, boot_delay: float = 0.0, extra_env: dict[str, str] | None = None,
                 python: str = sys.executable, index_url: str | None = None) -> None:
        self.root = root
        self.boot_delay = boot_delay
        self.extra_env = dict(extra_env or {})
        self.python = python  # the machine image's interpreter
        self.index_url = index_url  # the wheel index `uv` on a node installs from
        self.metadata = MetadataServer(self._resolve)
        self._records: dict[str, EmulatedInstance] = {}
        self._lock = threading.RLock()
        self._kills: dict[int, float] = {}
        self._stop = threading.Event()
        self._patches = Patches()
        self._thread = threading.Thread(target=self._run, name="sandbox-emulator", daemon=True)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._patch_moto()
        self.metadata.start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.metadata.stop()
        self._patches.restore()

    # -- queries ---------------------------------------------------------------------------
    def console_output(self, instance_id: str) -> str:
        record = self._records.get(instance_id)
        if record is None or not os.path.exists(record.console_path):
            return ""
        with open(record.console_path, "rb") as f:
            f.seek(max(0, os.path.getsize(record.console_path) - CONSOLE_LIMIT))
            return f.read().decode("utf-8", "replace")

    def processes(self) -> dict[str, int]:
        with self._lock:
            groups = {r.id: r.pgid for r in self._records.values() if r.pgid is not None}
        live = live_groups(set(groups.values()))
        return {iid: pgid for iid, pgid in groups.items() if pgid in live}

    def interrupt_spot(self, instance_id: str, action: str = "terminate", notice: float = 2.0) -> None:
        """Announce a spot interruption in the metadata, then `action` the instance after `notice` s."""
        when = datetime.now(timezone.utc) + timedelta(seconds=notice)
        stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        with self._lock:
            record = self._records[instance_id]
            record.extra_metadata["spot"] = {
                "instance-action": json.dumps({"action": action, "time": stamp}),
                "termination-time": stamp,
            }
            record.interrupt = (time.monotonic() + notice, action)

    # -- moto hooks ------------------------------------------------------------------------
    def _patch_moto(self) -> None:
        from moto.core.responses import ActionResult
        from moto.core.types import Base64EncodedString
        from moto.core.utils import utcnow
        from moto.ec2.models.instances import InstanceBackend
        from moto.ec2.responses.general import General

        original_run = InstanceBackend.run_instances
        emulator = self

        def run_instances(backend: Any, *args: Any, **kwargs: Any) -> Any:
            reservation = original_run(backend, *args, **kwargs)
            profile = {k: kwargs[k] for k in ("iam_instance_profile_name", "iam_instance_profile_arn") if kwargs.get(k)}
            for index, instance in enumerate(reservation.instances):
                _apply_template_settings(backend, instance, kwargs)
                if index and profile:  # moto gives the profile to the first instance only; AWS, to each
                    backend.associate_iam_instance_profile(instance_id=instance.id, **profile)
                emulator._register(instance)
            return reservation

        def get_console_output(response: Any) -> ActionResult:
            instance = response.ec2_backend.get_instance(response._get_param("InstanceId"))
            result: dict[str, Any] = {"InstanceId": instance.id, "Timestamp": utcnow()}
            text = emulator.console_output(instance.id)
            if text:
                result["Output"] = Base64EncodedString.from_raw_string(text)
            return ActionResult(result)

        from moto import settings
        from moto.ec2.responses.instances import InstanceResponse

        original_response = InstanceResponse.run_instances

        def run_instances_up_to_max(response: Any) -> Any:
            # AWS launches MaxCount instances when it has the capacity; moto launches MinCount.
            params = getattr(response, "params", None) if response.automated_parameter_parsing else None
            if isinstance(params, dict) and "MaxCount" in params:
                params["MinCount"] = params["MaxCount"]
            elif "MaxCount" in response.querystring:
                response.querystring["MinCount"] = response.querystring["MaxCount"]
            return original_response(response)

        self._patches.set(InstanceBackend, "run_instances", run_instances)
        self._patches.set(InstanceResponse, "run_instances", run_instances_up_to_max)
        self._patches.set(General, "get_console_output", get_console_output)
        # Refuse unknown AMIs, instance types and key pairs, as AWS does.
        for flag in ("ENABLE_AMI_VALIDATION", "EC2_ENABLE_INSTANCE_TYPE_VALIDATION", "ENABLE_KEYPAIR_VALIDATION"):
            self._patches.set(settings, flag, True)

    def _register(self, instance: Any) -> None:
        with self._lock:
            if instance.id in self._records:
                return
            instance._state.name, instance._state.code = "pending", 0
            directory = os.path.join(self.root, instance.id)
            self._records[instance.id] = EmulatedInstance(instance, directory, time.monotonic() + self.boot_delay)

    def _resolve(self, instance_id: str) -> tuple[Tree, bytes | None] | None:
        record = self._records.get(instance_id)
        if record is None:
            return None
        tree = instance_tree(record.instance, record.extra_metadata)
        return tree, decode_user_data(record.instance.user_data)

    # -- the loop --------------------------------------------------------------------------
    def _run(self) -> None:
        # Children die with this thread (PR_SET_PDEATHSIG), so it lives as long as the sandbox.
        try:
            while not self._stop.wait(POLL_INTERVAL):
                try:
                    self._discover()
                    for record in list(self._records.values()):
                        self._step(record)
                    self._reap()
                except Exception:  # one bad tick must not end the emulation
                    log.exception("sandbox instance emulator")
        finally:
            self._shutdown_all()

    def _discover(self) -> None:
        """Pick up instances created without RunInstances (e.g. by CloudFormation)."""
        from moto.ec2.models import ec2_backends

        for account in list(ec2_backends.values()):
            for backend in list(account.values()):
                for reservation in list(backend.reservations.values()):
                    for instance in list(reservation.instances):
                        if instance.id not in self._records and instance.state in ("pending", "running"):
                            self._register(instance)

    def _step(self, record: EmulatedInstance) -> None:
        state = record.instance.state
        now = time.monotonic()
        if record.phase == "booting":
            if state in ("shutting-down", "terminated"):
                record.phase = "ended"
            elif state == "running" or (state == "pending" and now >= record.boot_at):
                record.instance._state.name, record.instance._state.code = "running", 16
                record.phase = "running"
                self._boot(record)
        elif record.phase == "running":
            if state in ("shutting-down", "terminated"):
                self._halt(record, "ended")
            elif state in ("stopping", "stopped"):
                self._halt(record, "stopped")
            elif os.path.exists(os.path.join(record.directory, _POWER_OFF_FILE)):
                os.unlink(os.path.join(record.directory, _POWER_OFF_FILE))
                self._power_off(
                    record,
                    record.instance.instance_initiated_shutdown_behavior,
                    "Client.InstanceInitiatedShutdown",
                )
            elif record.interrupt and now >= record.interrupt[0]:
                self._power_off(record, record.interrupt[1], "Server.SpotInstanceTermination")
        elif record.phase == "stopped":
            if state in ("shutting-down", "terminated"):
                record.phase = "ended"
            elif state == "running":
                record.phase = "running"  # user-data runs on first boot only, as on EC2

    def _power_off(self, record: EmulatedInstance, behaviour: str, reason: str) -> None:
        instance = record.instance
        if behaviour == "terminate":
            instance.terminate()
        else:
            instance.stop()
        instance.state_reason = type(instance.state_reason)(f"{reason}: {reason.split('.')[-1]}", reason)
        self._halt(record, "ended" if behaviour == "terminate" else "stopped")

    def _halt(self, record: EmulatedInstance, phase: str) -> None:
        record.phase = phase
        if record.pgid is not None:
            signal_group(record.pgid, signal.SIGTERM)
            self._kills[record.pgid] = time.monotonic() + KILL_GRACE

    def _reap(self) -> None:
        for record in list(self._records.values()):
            if record.process is not None:
                record.process.poll()
            if record.phase == "ended" and not record.cleaned and (
                    record.pgid is None or not live_groups({record.pgid})):
                record.clean()
        if self._kills:
            live = live_groups(set(self._kills))
            now = time.monotonic()
            for pgid, deadline in list(self._kills.items()):
                if pgid not in live:
                    del self._kills[pgid]
                elif now >= deadline:
                    signal_group(pgid, signal.SIGKILL)
                    del self._kills[pgid]

    def _shutdown_all(self) -> None:
        pgids = {r.pgid for r in self._records.values() if r.pgid is not None}
        kill_groups(live_groups(pgids), KILL_GRACE)
        for record in self._records.values():
            if record.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    record.process.wait(timeout=1)
            record.clean()  # the machines are gone with the sandbox, even if their folders are kept

    # -- booting ---------------------------------------------------------------------------
    def _boot(self, record: EmulatedInstance) -> None:
        home = os.path.join(record.directory, "home")
        bin_dir = os.path.join(record.directory, "bin")
        for folder in (home, bin_dir, record.root):
            os.makedirs(folder, mode=0o700, exist_ok=True)
        _write_shims(bin_dir, record.directory, self.python, self.index_url)
        data = record.user_data = decode_user_data(record.instance.user_data)
        instance = record.instance
        with open(record.console_path, "a") as console:
            console.write(f"[sandbox] {instance.id} running ({instance.instance_type}, {instance.private_ip})\n")
            if not data:
                console.write("[sandbox] no user-data\n")
                return
            script = os.path.join(record.directory, "user-data")
            with open(script, "wb") as f:
                f.write(data)
            os.chmod(script, 0o755)
            argv = script_argv(data, script)
            if argv is None:
                console.write("[sandbox] user-data is not a script; not run\n")
                return
        env = self._environment(record, home, bin_dir)
        record.process = spawn(argv, home, env, record.console_path)

    def _environment(self, record: EmulatedInstance, home: str, bin_dir: str) -> dict[str, str]:
        python_dir = os.path.dirname(self.python)
        user = getpass.getuser()
        env = {
            "PATH": os.pathsep.join([bin_dir, python_dir, "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": home,
            "PWD": home,
            "USER": user,
            "LOGNAME": user,
            "SHELL": "/bin/bash",
            "LANG": "C.UTF-8",
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": self.metadata.endpoint_for(record.id),
            ROOT_VARIABLE: record.root,
        }
        if os.environ.get("LD_LIBRARY_PATH"):  # what this host's Python, run as the instance's, may need to start
            env["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH"]
        env.update(self.extra_env)
        return env


def _apply_template_settings(backend: Any, instance: Any, kwargs: dict[str, Any]) -> None:
    """Launch-template settings moto ignores: shutdown behaviour and spot market type."""
    if not kwargs.get("launch_template"):
        return
    data = backend._get_template_from_args(kwargs["launch_template"]).data
    behaviour = data.get("InstanceInitiatedShutdownBehavior")
    if behaviour and not kwargs.get("instance_initiated_shutdown_behavior"):
        instance.instance_initiated_shutdown_behavior = behaviour
    market = data.get("InstanceMarketOptions") or {}
    if market.get("MarketType") == "spot" and not kwargs.get("instance_market_options"):
        instance.lifecycle = "spot"


def _write_shims(bin_dir: str, instance_dir: str, python_path: str = sys.executable,
                 index_url: str | None = None) -> None:
    """Commands the instance finds first on its PATH: power-off commands that ask the emulator to shut
    the instance down; package managers that refuse (they would change this host, not the instance);
    python3/python, the machine image's interpreter, refusing to pip-install into it; and uv, allowed
    only into a folder under the instance's own directory, from the sandbox's wheel index."""
    from .software import uv_shim

    marker = shlex.quote(os.path.join(instance_dir, _POWER_OFF_FILE))
    power_off = f': > {marker}\necho "[sandbox] $(basename "$0") $*: instance-initiated shutdown"\n'
    shims = {
        "shutdown": (
            'case " $* " in *" -r "*|*" --reboot "*|*" -c "*)\n'
            '  echo "[sandbox] shutdown $*: ignored"; exit 0;;\nesac\n' + power_off
        ),
        "poweroff": power_off,
        "halt": power_off,
        "reboot": 'echo "[sandbox] reboot: not emulated, ignored"\n',
        "systemctl": (
            'case "$1" in\n'
            f'  poweroff|halt) : > {marker}; echo "[sandbox] systemctl $*: instance-initiated shutdown";;\n'
            '  *) echo "[sandbox] systemctl $*: ignored";;\n'
            "esac\n"
        ),
    }
    refuse = ('echo "[sandbox] $(basename "$0") $*: refused: the instance shares this host\'s software, so '
              'package managers do not run here; use an image (or a Python) that already has what it needs, '
              'or a venv under the instance\'s root" >&2\nexit 1\n')
    shims.update(dict.fromkeys(PACKAGE_MANAGERS, refuse))
    shims["uv"] = uv_shim(instance_dir, index_url)
    python = shlex.quote(python_path)
    for name in ("python3", "python"):
        shims[name] = f'case " $* " in *" -m pip "*|*" -m ensurepip "*)\n{refuse};;\nesac\nexec {python} "$@"\n'
    for name, body in shims.items():
        path = os.path.join(bin_dir, name)
        with open(path, "w") as f:
            f.write("#!/bin/sh\n" + body)
        os.chmod(path, 0o755)
