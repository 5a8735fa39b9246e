"""The `Sandbox`: moto server + instance emulator + environment, started and stopped together."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .emulator import InstanceEmulator
    from .env import AwsEnvironment
    from .faults import Delay, Delays, Fault, Rules
    from .server import CallCounter, SandboxServer
    from .software import MachineImage, WheelIndex
    from .spot import SpotPrices
    from .sts import Session, TemporaryCredentials
    from .tasks import TaskEmulator

_active: Sandbox | None = None
_active_lock = threading.Lock()


class Sandbox:
    """An emulated AWS account on this machine. Only one can run at a time in a process.

    boot_delay: seconds a new instance stays `pending` before its user-data runs, and an ECS task
        `PENDING` before its container starts.
    instance_env: extra environment variables for every instance's user-data.
    credential_lifetime: seconds every temporary credential lives at most (STS sessions, instance and
        task roles), whatever was asked: short lifetimes test renewal. None: as asked (AWS's limits).
    workdir: where per-instance directories (home, root, console.log, user-data) go; once an instance
        has ended only its console.log is kept. By default a temporary directory, removed on stop.
    wheels: a folder of wheels served as the nodes' package index (``uv`` on a node installs from it
        only); without it nodes can install only the wheels they are given.
    image: the nodes' Python: "host" (default: this host's, with all it has), the path of another
        interpreter, or a :class:`~.software.MachineImage` (a Python with only the packages it names,
        built once and cached).
    """

    def __init__(
        self,
        boot_delay: float = 0.0,
        region: str = "us-east-1",
        *,
        instance_env: dict[str, str] | None = None,
        workdir: str | None = None,
        credential_lifetime: float | None = None,
        wheels: str | None = None,
        image: MachineImage | str | None = None,
    ) -> None:
        self._boot_delay = boot_delay
        self._credential_lifetime = credential_lifetime
        self.wheels = wheels
        self.image = image
        self._index: WheelIndex | None = None
        self.region = region
        self.instance_env = dict(instance_env or {})
        self.workdir = workdir
        self._root: str | None = None
        self._server: SandboxServer | None = None
        self._emulator: InstanceEmulator | None = None
        self._tasks: TaskEmulator | None = None
        self._env: AwsEnvironment | None = None
        self._calls: CallCounter | None = None
        self._faults: Rules[Fault] | None = None
        self._delays: Delays | None = None
        self._spot: SpotPrices | None = None
        self._sts: TemporaryCredentials | None = None
        self._accounts = 0
        self._undo: list[Any] = []

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> Sandbox:
        global _active
        with _active_lock:
            if self.running:
                return self
            if _active is not None:
                raise RuntimeError("another Sandbox is running in this process; stop it first")
            _active = self
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        from .env import AwsEnvironment

        if self.workdir:
            os.makedirs(self.workdir, exist_ok=True)
        self._root = self.workdir or tempfile.mkdtemp(prefix="dask-aws-sandbox-")
        self._env = AwsEnvironment(self.region, self._root)
        self._env.apply()
        self._undo.append(self._env.restore)

        from moto.moto_api import state_manager
        from moto.moto_api._internal.models import moto_api_backend

        from ._patch import Patches
        from .emulator import InstanceEmulator
        from .faults import Delays, Rules
        from .iam import (
            patch_empty_body_signatures,
            patch_managed_policies,
            patch_secret_policies,
            patch_secret_resources,
            patch_tagging_actions,
        )
        from .ips import patch_moto_ips
        from .policies import patch_policy_evaluation
        from .server import CallCounter, SandboxServer
        from .spot import SpotPrices, patch_spot_prices
        from .sts import TemporaryCredentials

        patches = Patches()
        self._undo.append(patches.restore)
        patch_moto_ips(patches)
        patch_managed_policies(patches)
        patch_secret_resources(patches)
        patch_secret_policies(patches)
        patch_tagging_actions(patches)
        patch_empty_body_signatures(patches)
        self._sts = TemporaryCredentials(self._credential_lifetime)
        self._sts.patch(patches)
        patch_policy_evaluation(patches, self._sts)
        from .s3 import patch_expected_owner
        from .software import WheelIndex, image_python

        patch_expected_owner(patches)
        python = image_python(self.image)
        if self.wheels:
            self._index = WheelIndex(self.wheels).start()
            self._undo.append(self._index.stop)
        index_url = self._index.url if self._index else None
        self._spot = SpotPrices()
        patch_spot_prices(patches, self._spot)
        moto_api_backend.reset()
        # moto otherwise moves ECS tasks towards STOPPED on every DescribeTasks.
        state_manager.set_transition("ecs::task", {"progression": "manual", "times": 10**9})
        self._undo.append(lambda: state_manager.unset_transition("ecs::task"))

        self._calls, self._faults, self._delays = CallCounter(), Rules(), Delays()
        self._server = SandboxServer(self._calls, self._faults, self._delays)
        self._server.start()
        self._undo.append(self._server.stop)
        self._undo.append(self._delays.release)  # held requests answer before the server stops
        self._env.set_endpoint(self._server.endpoint_url)
        # The instances and tasks reach this AWS (S3 included) as they reach AWS's regional endpoints.
        instance_env = {"AWS_ENDPOINT_URL": self._server.endpoint_url, **self.instance_env}
        self._emulator = InstanceEmulator(self._root, self._boot_delay, instance_env, python, index_url)
        self._emulator.start()
        self._undo.append(self._emulator.stop)
        from .tasks import TaskEmulator

        self._tasks = TaskEmulator(self._root, self._boot_delay, instance_env, python, index_url)
        self._tasks.start()
        self._undo.append(self._tasks.stop)

    def stop(self) -> None:
        """Kill every instance process, stop the servers, restore moto and os.environ."""
        global _active
        error: BaseException | None = None
        while self._undo:
            try:
                self._undo.pop()()
            except BaseException as exc:  # keep undoing the rest
                error = error or exc
        self._server = self._emulator = self._env = self._spot = self._tasks = self._sts = self._index = None
        if self._root and not self.workdir:
            shutil.rmtree(self._root, ignore_errors=True)
        self._root = None
        with _active_lock:
            if _active is self:
                _active = None
        if error is not None:
            raise error

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- properties ------------------------------------------------------------------------
    @property
    def endpoint_url(self) -> str:
        return self._need(self._server).endpoint_url

    @property
    def boot_delay(self) -> float:
        return self._boot_delay

    @boot_delay.setter
    def boot_delay(self, seconds: float) -> None:
        """Applies to instances launched from now on."""
        self._boot_delay = seconds
        if self._emulator is not None:
            self._emulator.boot_delay = seconds
        if self._tasks is not None:
            self._tasks.start_delay = seconds

    @property
    def credential_lifetime(self) -> float | None:
        return self._credential_lifetime

    @credential_lifetime.setter
    def credential_lifetime(self, seconds: float | None) -> None:
        """Applies to credentials issued from now on."""
        self._credential_lifetime = seconds
        if self._sts is not None:
            self._sts.lifetime = seconds

    @property
    def metadata_url(self) -> str:
        """Base URL of the metadata service; an instance's endpoint is `<this><instance-id>/`."""
        return self._need(self._emulator).metadata.url

    # -- inspection ------------------------------------------------------------------------
    def resources(self) -> dict[str, list[str]]:
        """Ids per kind of what is left; only non-empty kinds, so `not sb.resources()` means clean. The
        software-sync buckets (`down` leaves them: a cache of environments) are in `caches()` instead."""
        from .inventory import resources

        self._need(self._server)
        return resources()

    def caches(self) -> dict[str, list[str]]:
        """What is left on purpose: the software-sync buckets (tagged, private, expiring), by kind."""
        from .inventory import caches

        self._need(self._server)
        return caches()

    def remove_environment_buckets(self) -> list[str]:
        """Delete the software-sync buckets (``dask-aws-magic-envs-*``) of every account and region, with
        their objects: the cache ``down`` rightly leaves, removed between tests. Their names."""
        from moto.s3.models import s3_backends

        from .inventory import _backends

        removed = []
        for backend in _backends(s3_backends):
            for name in [n for n in list(backend.buckets) if n.startswith("dask-aws-magic-envs-")]:
                for key in list(backend.buckets[name].keys.keys()):
                    backend.delete_object(name, key)
                backend.delete_bucket(name)
                removed.append(name)
        return sorted(removed)

    def calls(self) -> Counter[str]:
        """AWS API calls served since start or `reset_calls()`, keyed "service:Action"."""
        return self._need(self._calls).snapshot()

    def requests(self, action: str) -> list[dict[str, str]]:
        """The parameters of the last requests of `action` ("ec2:RunInstances"), oldest first, with
        query-protocol names ("NetworkInterface.1.AssociatePublicIpAddress"); "@region" is where it went."""
        return self._need(self._calls).requests(action)

    def reset_calls(self) -> None:
        self._need(self._calls).reset()

    def console_output(self, instance_id: str) -> str:
        """What the instance's user-data printed so far (stdout and stderr)."""
        return self._need(self._emulator).console_output(instance_id)

    def processes(self) -> dict[str, int]:
        """Instance id -> process-group id, for instances whose processes are alive."""
        return self._need(self._emulator).processes()

    def task_output(self, task_arn: str) -> str:
        """What an ECS task's container printed so far (stdout and stderr)."""
        return self._need(self._tasks).output(task_arn)

    def task_processes(self) -> dict[str, int]:
        """ECS task ARN -> process-group id, for tasks whose processes are alive."""
        return self._need(self._tasks).processes()

    def issued_credentials(self) -> list[Session]:
        """Every temporary credential STS issued so far (federation tokens, assumed-role sessions, the
        instances' and tasks' role credentials), with its secret key, token and expiration."""
        return self._need(self._sts).issued()

    def add_image(self, image: str) -> None:
        """Let ECS tasks pull `image` (public Dask images and existing ECR repositories always can)."""
        self._need(self._tasks).images.add(image)

    def stop_task(self, task_arn: str, reason: str = "Your Spot Task was interrupted.",
                  code: str = "SpotInterruption") -> None:
        """Stop an ECS task as AWS would (by default a Fargate Spot reclaim): its processes are
        killed and it ends STOPPED with `code` and `reason`."""
        self._need(self._tasks).stop_task(task_arn, reason, code)

    # -- fault injection -------------------------------------------------------------------
    def inject_fault(
        self,
        action: str,
        code: str,
        message: str = "",
        times: int | None = 1,
        match: dict[str, Any] | None = None,
        status: int = 400,
        region: str | None = None,
    ) -> Fault:
        """Fail the next `times` requests of `action` ("ec2:RunInstances") with an AWS error.

        `match`: request parameters that must be equal, with query-protocol names
        (e.g. {"InstanceMarketOptions.MarketType": "spot"}); JSON bodies are flattened the same way.
        `region`: only requests made to that region. `times=None` fails until `clear_faults()`.
        The returned Fault's `remaining` counts down.
        """
        from .faults import Fault

        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None")
        fault = Fault(action, times, dict(match or {}), region, code=code, message=message or code, status=status)
        return self._need(self._faults).add(fault)

    def clear_faults(self) -> None:
        self._need(self._faults).clear()

    def delay(self, action: str, seconds: float, times: int | None = 1, match: dict[str, Any] | None = None) -> Delay:
        """Hold the next `times` requests of `action` ("ec2:RunInstances") `seconds` before AWS
        answers them as usual: a slow AWS, to act (cancel, say) while a call is in flight.

        `match` and `times=None` as for `inject_fault`; the request is counted when it arrives.
        Keep `seconds` under the client's read timeout, or the client retries the call.
        """
        from .faults import Delay

        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None")
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        return self._need(self._delays).add(Delay(action, times, dict(match or {}), seconds=seconds))

    def clear_delays(self) -> None:
        """Forget every delay and answer the requests held now."""
        self._need(self._delays).release()

    def set_spot_price(self, instance_type: str, price: float | None, zone: str | None = None) -> None:
        """The spot price DescribeSpotPriceHistory gives `instance_type` (in `zone`, or every zone);
        None: no spot price at all. By default a third of the on-demand list price."""
        self._need(self._spot).set(instance_type, price, zone)

    def add_credentials_profile(self, name: str, region: str | None = None, account_id: str | None = None, *,
                                root: bool = False) -> str:
        """A credentials profile `name` (as `aws configure --profile NAME` makes), with `region`, whose
        calls land in `account_id` (by default an account of its own, which the default credentials
        cannot see): the keys of an IAM user `sandbox-NAME`, or with `root` of the account's root user
        (who may do anything). Returns the account id."""
        from .accounts import FIRST_ACCOUNT, add_profile

        self._need(self._server)
        if account_id is None:
            account_id, self._accounts = str(FIRST_ACCOUNT + self._accounts), self._accounts + 1
        add_profile(os.environ["AWS_CONFIG_FILE"], os.environ["AWS_SHARED_CREDENTIALS_FILE"], name,
                    region or self.region, account_id, self._need(self._sts).roots if root else None)
        return account_id

    @contextlib.contextmanager
    def enforce_iam(self) -> Iterator[None]:
        """Within the block, every call is authenticated and checked against its caller's IAM policies,
        as AWS does (outside it moto allows everything). The default credentials are no IAM identity:
        use a profile from `add_credentials_profile` with policies attached, or an instance's role."""
        from moto import settings

        self._need(self._server)
        saved = settings.INITIAL_NO_AUTH_ACTION_COUNT
        settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        try:
            yield
        finally:
            settings.INITIAL_NO_AUTH_ACTION_COUNT = saved

    def interrupt_spot(self, instance_id: str, action: str = "terminate", notice: float = 2.0) -> None:
        """Emulate a spot interruption: metadata spot/instance-action appears, then after `notice`
        seconds the instance is terminated (or stopped) and its processes killed."""
        self._need(self._emulator).interrupt_spot(instance_id, action, notice)

    @staticmethod
    def _need(value: Any) -> Any:
        if value is None:
            raise RuntimeError("the Sandbox is not running; call start() first")
        return value


def current() -> Sandbox | None:
    """The running Sandbox of this process, if any."""
    return _active
