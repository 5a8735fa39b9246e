"""The ``fargate`` and ``ecs`` backends: the scheduler and the workers as ECS tasks of a container
image, on Fargate or on EC2 container instances. One implementation; the two differ in where the
tasks run (capacity providers and sizes) and in what ``ecs`` creates for them (an auto scaling group).

Stateless, as ``ec2``: everything carries the cluster's tags (and ``dask-aws-magic:backend``), so
``list`` and ``down`` find it from AWS alone, and the cluster's manifest (written first) proves it.
The workers are started as soon as the scheduler task has an address (its network interface), not
once Dask answers; each worker is its own task (RunTask, 10 per call), so ``scale`` is exact.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

from ...aws import iam, manifest, network, secrets
from ...aws.scopes import LIST_ATTEMPTS, LOOK_EVERY, Scope
from ...aws.session import aws, credentials_available
from ...aws.tags import TAG_BACKEND, tag_list, tagged_security_groups
from ...core.errors import AwsError, LaunchError
from .. import dask_commands, data_identity, keeper, software_sync
from ..base import BackendDefaults, Context, Discovery, Plan, Poll, Unverified
from ..dask_commands import endpoints
from ..proof import for_down as proof_for_down
from ..proof import made_here
from ..proof import read as read_manifest
from ..teardown import Teardown
from . import container, discovery, infra, logs, planning, sizes, tasks
from .model import ECSResources, task_id

if TYPE_CHECKING:
    from ...core.registry import ClusterRecord

REGISTER_WAIT = 600.0  # seconds new container instances may take to join the cluster
SPOT_STOP = "SpotInterruption"
SHUTDOWN_WAIT = 20.0  # seconds `down` gives Dask to close its tasks before stopping them one by one
WORKERS_FOLLOW = 5.0  # seconds the workers get once their scheduler has stopped


def _group_name(record: ClusterRecord) -> str:
    return f"dask-aws-magic-{record.name}-{record.cluster_id}"


def _client(record: ClusterRecord, service: str, attempts: int | None = None) -> Any:
    with aws(f"reaching the AWS account of {record.name}"):
        return discovery.scope_of(record).client(service, attempts)


class _ECSTasks:
    """Scheduler and workers as ECS tasks; ``fargate`` says where they run."""

    name: ClassVar[str]
    fargate: ClassVar[bool]
    defaults: ClassVar[BackendDefaults] = BackendDefaults(timeout=600.0, poll_interval=1.0, wait_for_workers=False,
                                                          boot_time=90.0, look_every=LOOK_EVERY)

    @classmethod
    def discoverable(cls) -> bool:
        return credentials_available()

    @classmethod
    def check_profile(cls, data: dict[str, Any], source: str) -> None:
        sizes.check_profile(data, source)

    def plan(self, profile: Any, name: str) -> Plan:
        return data_identity.with_data(planning.plan(profile, name, self.name), profile)

    node_credentials = staticmethod(data_identity.node_credentials)

    def _tags(self, record: ClusterRecord, role: str | None = None) -> list[dict[str, str]]:
        extra = {**(record.settings.get("tags") or {}), TAG_BACKEND: self.name}
        protocol = "tls" if record.settings.get("tls", True) else "tcp"
        return tag_list(record.name, record.cluster_id, role, protocol, extra, owner=record.owner)

    # -- create ----------------------------------------------------------------------------
    def launch(self, ctx: Context, plan: Plan, record: ClusterRecord) -> ECSResources:
        s = record.settings
        model = ECSResources(region=s["region"], aws_profile=s.get("aws_profile"), endpoint_url=s.get("endpoint_url"),
                             protocol="tls" if s["tls"] else "tcp", keep_logs=s["keep_logs"])
        tags = self._tags(record)
        names = infra.names(record.name, record.cluster_id)
        self._secrets(ctx, record, model, tags, names)
        software_sync.publish(record, discovery.scope_of(record))
        with aws(f"creating the log group of {record.name}"):
            model.log_group = infra.create_log_group(_client(record, "logs"), names["log_group"], s["log_retention"],
                                                     tags)
            ctx.save(model)
        self._roles(ctx, record, model, tags)
        ecs = _client(record, "ecs")
        with aws(f"setting up the ECS cluster of {record.name}"):
            if s["cluster"]:
                infra.check_cluster(ecs, s["cluster"])
                model.ecs_cluster = s["cluster"]
            else:
                model.ecs_cluster = infra.create_cluster(ecs, names["cluster"], tags, self.fargate)
                model.created_cluster = True
            ctx.save(model)
        if self.fargate or s.get("instances"):  # on a cluster's own instances, their groups decide
            ec2 = _client(record, "ec2")
            with aws(f"creating the security group of {record.name}"):
                model.security_group = network.create_security_group(
                    ec2, _group_name(record), f"dask-aws-magic cluster {record.name}", tags, s["vpc"])
                ctx.save(model)
                ctx.check()
                network.authorize_ingress(ec2, model.security_group, s["ingress_cidr"], [planning.INGRESS])
        volumes = self._efs(ctx, record, model, tags)
        if s.get("instances"):
            self._container_instances(ctx, record, model, tags, names)
        ctx.check()
        with aws(f"registering the task definitions of {record.name}"):
            model.task_definitions["scheduler"] = self._register(record, model, "scheduler", None, volumes)
            ctx.save(model)
        scheduler = self._run(ctx, record, model, "scheduler", 1, s["subnets"])[0]
        model.scheduler = scheduler["taskArn"]
        ctx.save(model)
        scheduler = self._wait_for_address(ctx, record, model, scheduler)
        ctx.emit("launch", f"scheduler task {task_id(model.scheduler)} at {model.scheduler_ip}; starting "
                           f"{s['count']} worker task(s)")
        with aws(f"registering the task definitions of {record.name}"):
            model.task_definitions["worker"] = self._register(record, model, "worker", model.scheduler_ip, volumes)
            ctx.save(model)
        if self.fargate:  # the scheduler's subnet: no traffic across zones
            record.settings["worker_subnets"] = [tasks.subnet_id(scheduler) or s["subnets"][0]]
        self._add_workers(ctx, record, model, s["count"])
        if self._spot_workers(record):
            model.keeper = keeper.spawn(record)
            ctx.save(model)
        return model

    def _secrets(self, ctx: Context, record: ClusterRecord, model: ECSResources, tags: list[dict[str, str]],
                 names: dict[str, str]) -> None:
        """The manifest first (naming everything the cluster will be made of, so whatever exists when this
        process dies is proven its own), then the nodes' secret (TLS identities, software.env), which ECS
        resolves into each container: each role's own keys only."""
        s = record.settings
        sm = _client(record, "secretsmanager")
        env = dict(s["software"].get("env") or {})
        material = secrets.new_material(record.name, env, s["tls"])
        with aws(f"writing the manifest of {record.name} to Secrets Manager"):
            model.tls = material.client_secret() if material else None
            model.client_secret = manifest.secret_name(record.cluster_id)
            ctx.save(model)  # before: a teardown after a half-made manifest finds it by name
            model.client_secret = manifest.create(sm, self._new_manifest(record, names), model.tls, tags)
            ctx.save(model)
        ctx.check()
        with aws(f"storing the secrets of {record.name} in Secrets Manager"):
            model.node_secret = secrets.create_node_secrets(sm, record.cluster_id, material, env, False, tags)["nodes"]
            ctx.save(model)
        ctx.check()

    def _new_manifest(self, record: ClusterRecord, names: dict[str, str]) -> manifest.Manifest:
        """What the cluster will be made of, by the names it will carry (its tasks: ``startedBy`` its id,
        in its ECS cluster, of its task-definition families)."""
        s = record.settings
        made = manifest.Manifest(cluster=record.name, cluster_id=record.cluster_id, backend=self.name,
                                 owner=record.owner, protocol="tls" if s["tls"] else "tcp")
        made.expect("ecs-cluster", s["cluster"] or names["cluster"])
        made.expect("family", *(f"{names['family']}-{role}" for role in secrets.NODE_ROLES))
        made.expect("log-group", names["log_group"])
        made.expect("security-group", _group_name(record))
        made.expect("secret", secrets.node_secret_name(record.cluster_id),
                    secrets.client_secret_name(record.cluster_id))
        made.expect("role", *(iam.role_name(record.cluster_id, purpose) for purpose in ("execution", "instances")))
        made.expect("autoscaling-group", names["asg"])
        made.expect("launch-template", names["template"])
        made.expect("efs-token", record.cluster_id)
        return made

    def _roles(self, ctx: Context, record: ClusterRecord, model: ECSResources, tags: list[dict[str, str]]) -> None:
        """The task execution role (image pull, logs, the node secret): the profile's, or one made for
        the cluster and nothing else."""
        s = record.settings
        client = _client(record, "iam")
        policy = software_sync.node_policy(record)
        if policy and not s["task_role"]:  # the tasks read their environment with a role of the cluster's own
            doing = f"creating the task role of {record.name}"
            instead = ("a task role that already exists and may read the environment (or `software.sync: false`, "
                       "which needs no task role)")
            if not s["execution_role"]:
                instead += "; a task execution role is created next, so set `ecs.execution_role` too"
            with aws(doing), iam.permission_needed(doing, "ecs.task_role", instead):
                model.task_role = iam.create_role(
                    client, iam.role_name(record.cluster_id, "task"), "ecs-tasks.amazonaws.com", policy, tags,
                    f"dask-aws-magic cluster {record.name}: reads its software environment")
                ctx.save(model)
        doing = f"creating the task execution role of {record.name}"
        with aws(doing):
            if s["execution_role"]:
                model.execution_role = infra.role_arn(client, s["execution_role"], "ecs.execution_role")
                return
            account = (record.owner.split(":") + [""] * 5)[4] or "*"
            partition = infra.arn_partition(record.owner or "arn:aws")
            log_arn = f"arn:{partition}:logs:{s['region']}:{account}:log-group:{model.log_group}"
            policy = infra.execution_policy(log_arn, model.node_secret)
            with iam.permission_needed(doing, "ecs.execution_role", "a task execution role that already exists "
                                       "(name or ARN); no role is created"):
                model.execution_role = iam.create_role(
                    client, iam.role_name(record.cluster_id, "execution"), "ecs-tasks.amazonaws.com", policy, tags,
                    f"dask-aws-magic cluster {record.name}: ECS task execution (image, logs, its secret)")
            ctx.save(model)
        ctx.check()

    def _efs(self, ctx: Context, record: ClusterRecord, model: ECSResources,
             tags: list[dict[str, str]]) -> list[dict[str, Any]]:
        """The ``/data`` volume: the profile's file system or a new one (with mount targets)."""
        wanted = record.settings.get("efs")
        if not wanted:
            return []
        fs = wanted if isinstance(wanted, str) else None
        if fs is None:
            with aws(f"creating the EFS file system of {record.name}"):
                model.efs = fs = infra.create_file_system(
                    _client(record, "efs"), record.cluster_id, record.settings["subnets"][:1],
                    str(model.security_group), tags)
                ctx.save(model)
        return [{"name": "data", "efsVolumeConfiguration": {"fileSystemId": fs, "transitEncryption": "ENABLED"}}]

    def _container_instances(self, ctx: Context, record: ClusterRecord, model: ECSResources,
                             tags: list[dict[str, str]], names: dict[str, str]) -> None:
        """ECS on EC2: an auto scaling group of ECS-optimised instances, until they joined the cluster."""
        cfg = record.settings["instances"]
        iam_client = _client(record, "iam")
        role = iam.role_name(record.cluster_id, "instances")
        with aws(f"creating the container instances of {record.name}"):
            infra.create_instance_role(iam_client, role, tags)
            model.instance_role = role
            ctx.save(model)
            template, group = infra.create_container_instances(
                _client(record, "ec2"), _client(record, "autoscaling"), name=names["asg"],
                cluster=str(model.ecs_cluster), ami=cfg["ami"], itype=cfg["type"], count=cfg["count"],
                subnets=record.settings["subnets"], security_group=str(model.security_group),
                instance_profile=role, tags=tags)
            model.launch_template, model.autoscaling_group = template, group
            ctx.save(model)
        ecs = _client(record, "ecs")
        deadline = time.monotonic() + REGISTER_WAIT
        while True:
            with aws(f"waiting for the container instances of {record.name}"):
                joined = len(ecs.list_container_instances(cluster=model.ecs_cluster, status="ACTIVE")
                             .get("containerInstanceArns", []))
            ctx.emit("launch", f"container instances {joined}/{cfg['count']} joined the cluster", joined, cfg["count"])
            if joined >= cfg["count"]:
                return
            if time.monotonic() > deadline:
                raise LaunchError(f"Only {joined} of {cfg['count']} container instances joined the ECS cluster "
                                  f"within {REGISTER_WAIT:g} s. Check the instances' console output and that "
                                  "their subnets reach the ECS endpoint.")
            ctx.sleep(0.5)

    def _register(self, record: ClusterRecord, model: ECSResources, role: str, scheduler_ip: str | None,
                  volumes: list[dict[str, Any]]) -> str:
        s = record.settings
        size = s["sizes"][role]
        definition = container.definition(
            role, s, image=s["image"], scheduler_ip=scheduler_ip, node_secret=model.node_secret,
            log_group=str(model.log_group), region=s["region"], cpu=size["cpu"], memory=size["memory"],
            efs_volume="data" if volumes else None, host_network=not self.fargate)
        task_role = infra.role_arn(_client(record, "iam"), s["task_role"], "ecs.task_role") if s["task_role"] \
            else model.task_role
        family = f"{infra.names(record.name, record.cluster_id)['family']}-{role}"
        return tasks.register(_client(record, "ecs"), family, definition, fargate=self.fargate, cpu=size["cpu"],
                              memory=size["memory"], execution_role=model.execution_role, task_role=task_role,
                              tags=infra.ecs_tags(self._tags(record, role)), volumes=volumes)

    def _run(self, ctx: Context, record: ClusterRecord, model: ECSResources, role: str, count: int,
             subnets: list[str]) -> list[dict[str, Any]]:
        s = record.settings
        call: dict[str, Any] = {
            "cluster": model.ecs_cluster, "taskDefinition": model.task_definitions[role],
            "startedBy": record.cluster_id, "tags": infra.ecs_tags(self._tags(record, role)),
            "enableECSManagedTags": True,
        }
        if self.fargate:
            call["networkConfiguration"] = {"awsvpcConfiguration": {
                "subnets": subnets, "securityGroups": [str(model.security_group)],
                "assignPublicIp": "ENABLED" if s["assign_public_ip"] else "DISABLED"}}
        strategy = s["strategies"][role]
        if strategy:
            call["capacityProviderStrategy"] = strategy
        else:
            call["launchType"] = "FARGATE" if self.fargate else "EC2"
        if self.fargate and s.get("platform_version"):
            call["platformVersion"] = s["platform_version"]
        with aws(f"starting the {role} task(s) of {record.name}"):
            try:
                return tasks.run(_client(record, "ecs"), call, count, lambda: ctx.cancelled, ctx.sleep)
            except tasks.PlacementFailed as exc:
                if role == "worker":
                    model.workers.update({t["taskArn"]: {"spot": self._is_spot(t)} for t in exc.started})
                    ctx.save(model)
                hint = " Add container instances (`ecs.instances.count`) or use smaller tasks." \
                    if not self.fargate else " Try again later, or another region."
                raise LaunchError(f"Starting the {role} task(s) of {record.name} failed: {exc}{hint}") from None

    @staticmethod
    def _is_spot(task: dict[str, Any]) -> bool:
        return task.get("capacityProviderName") == "FARGATE_SPOT"

    def _spot_workers(self, record: ClusterRecord) -> bool:
        strategy = record.settings["strategies"]["worker"] or []
        return self.fargate and any(p["capacityProvider"] == "FARGATE_SPOT" for p in strategy)

    def _wait_for_address(self, ctx: Context, record: ClusterRecord, model: ECSResources,
                          task: dict[str, Any]) -> dict[str, Any]:
        """The scheduler task once it has an address: its network interface's on Fargate (seconds;
        often in RunTask's answer), its container instance's on EC2 (known once placed)."""
        ecs = _client(record, "ecs")
        while True:
            with aws(f"reading the address of the scheduler task of {record.name}"):
                if self.fargate:
                    model.scheduler_ip = tasks.private_ip(task)
                else:
                    model.scheduler_ip, model.scheduler_public_ip = tasks.instance_addresses(
                        ecs, _client(record, "ec2"), str(model.ecs_cluster), task)
            if model.scheduler_ip:
                ctx.save(model)
                return task
            ctx.sleep(0.5)
            with aws(f"describing the scheduler task of {record.name}"):
                task = tasks.describe(ecs, str(model.ecs_cluster), [str(model.scheduler)])[0]
            if task.get("lastStatus") == "STOPPED":
                raise LaunchError(self._stopped_message(record, model, "scheduler", task))

    def _add_workers(self, ctx: Context, record: ClusterRecord, model: ECSResources, count: int) -> None:
        where = record.settings.get("worker_subnets") or record.settings["subnets"]
        started = self._run(ctx, record, model, "worker", count, where)
        model.workers.update({t["taskArn"]: {"spot": self._is_spot(t)} for t in started})
        ctx.save(model)
        if len(started) < count:
            ctx.check()

    # -- observe ---------------------------------------------------------------------------
    def _describe(self, record: ClusterRecord, model: ECSResources,
                  attempts: int | None = None) -> list[dict[str, Any]]:
        if not model.ecs_cluster or not model.task_arns():
            return []
        with aws(f"describing the tasks of {record.name}"):
            return tasks.describe(_client(record, "ecs", attempts), model.ecs_cluster, model.task_arns())

    def _stopped_message(self, record: ClusterRecord, model: ECSResources, role: str, task: dict[str, Any]) -> str:
        lines: list[str] = []
        if model.log_group:
            try:
                lines = logs.tail(_client(record, "logs"), model.log_group, logs.stream_name(role, task["taskArn"]),
                                  20)
            except AwsError:
                lines = []
        output = "\n".join(lines) or "(no log lines)"
        return (f"the {role} task {task_id(task['taskArn'])} stopped ({tasks.stop_reason(task)}). Its last log "
                f"lines:\n{output}")

    def poll(self, record: ClusterRecord) -> Poll:
        model = ECSResources.from_json(record.resources)
        found = self._describe(record, model)
        total = 1 + len(model.workers)
        running = sum(t.get("lastStatus") == "RUNNING" for t in found)
        scheduler = next((t for t in found if t["taskArn"] == model.scheduler), None)
        for task in found:
            if task.get("lastStatus") != "STOPPED" or task.get("stopCode") == SPOT_STOP:
                continue  # a reclaimed Spot worker is replaced, not a failed start
            if task.get("stopCode") == "UserInitiated" and task["taskArn"] != model.scheduler:
                continue  # scaled down
            role = "scheduler" if task["taskArn"] == model.scheduler else "worker"
            return Poll(failed=self._stopped_message(record, model, role, task))
        address = dashboard = None
        if scheduler is not None and not self.fargate and model.scheduler_ip:
            ip = model.scheduler_ip if record.settings.get("use_private_ip") else model.scheduler_public_ip
            if not ip:
                return Poll(failed=f"the container instance of the scheduler task {task_id(scheduler['taskArn'])} has "
                                   "no public IP address. Use subnets that assign one, or set "
                                   "`network.use_private_ip: true` from a notebook inside the VPC.")
            address, dashboard = endpoints(ip, model.protocol)
        elif scheduler is not None and tasks.private_ip(scheduler):
            ip = tasks.private_ip(scheduler)
            if not record.settings.get("use_private_ip"):
                if record.scheduler_address:
                    ip = record.scheduler_address.split("://")[1].rsplit(":", 1)[0]
                else:
                    with aws(f"reading the public address of {record.name}'s scheduler"):
                        ip = tasks.public_ip(_client(record, "ec2"), scheduler)
                    if not ip and scheduler.get("lastStatus") == "RUNNING":
                        return Poll(failed=f"the scheduler task {task_id(scheduler['taskArn'])} has no public IP "
                                           "address. Set `ecs.assign_public_ip: true` (Fargate) or use subnets that "
                                           "assign one, or set `network.use_private_ip: true` from a notebook inside "
                                           "the VPC.")
            if ip:
                address, dashboard = endpoints(ip, model.protocol)
        return Poll(address=address, dashboard=dashboard, message=f"tasks {running}/{total} running",
                    done=running, total=total)

    def security(self, record: ClusterRecord) -> Any | None:
        model = ECSResources.from_json(record.resources)
        if model.tls is None and model.protocol == "tls":  # a record from elsewhere
            model.tls = record.resources["tls"] = secrets.client_identity(
                _client(record, "secretsmanager"), record.name, record.cluster_id, model.client_secret)
        return model.security()

    def alive(self, record: ClusterRecord) -> bool:
        model = ECSResources.from_json(record.resources)
        if not model.scheduler or discovery.scope_of(record).stopped_sandbox:
            return False
        with aws(f"describing the scheduler task of {record.name}"):
            found = tasks.describe(_client(record, "ecs", LIST_ATTEMPTS), str(model.ecs_cluster), [model.scheduler])
        return any(t.get("lastStatus") in tasks.LIVE for t in found)

    def discover(self) -> Discovery:
        return discovery.discover(self.name)

    def scope(self, record: ClusterRecord) -> str:
        return str(discovery.scope_of(record))

    def logs(self, record: ClusterRecord) -> dict[str, str]:
        model = ECSResources.from_json(record.resources)
        group = model.log_group or infra.names(record.name, record.cluster_id)["log_group"]
        client = _client(record, "logs")
        out = {}
        with aws(f"reading the logs of {record.name} from CloudWatch ({group})"):
            for stream in logs.streams(client, group):
                role = stream.split("/", 1)[0]
                out[f"{role} task {stream.rsplit('/', 1)[-1]}"] = "\n".join(logs.tail(client, group, stream)) \
                    or "(no output)"
        return out or {f"log group {group}": "(no log streams: no task has written anything yet)"}

    # -- change ----------------------------------------------------------------------------
    def terminate(self, ctx: Context, record: ClusterRecord) -> list[str]:
        scope = discovery.scope_of(record)
        if scope.stopped_sandbox:
            return [f"nothing to remove: the sandbox it ran in ({record.settings.get('endpoint_url')}) has stopped, "
                    "and everything in it went with it"]
        model = ECSResources.from_json(record.resources)
        names = infra.names(record.name, record.cluster_id)
        keeper.stop(record, model.keeper)
        unproven: list[str] = []  # carry this cluster's tags, but nothing proves them its own: left alone
        proof, why = proof_for_down(scope, record, scope.describe())
        with aws(f"reaching the AWS account of {record.name} in {scope.describe()}"):
            ecs, ec2 = scope.client("ecs"), scope.client("ec2")
        cluster = model.ecs_cluster or names["cluster"]
        done = Teardown(record.name, scope.describe())

        def stopped() -> list[str]:
            ctx.emit("teardown", f"stopping the tasks of {record.name}")
            known: list[dict[str, Any]] = []
            families = {f"{names['family']}-{role}" for role in secrets.NODE_ROLES}
            recorded = set(model.task_arns()) if made_here(record) else set()
            for task in self._cluster_tasks(ecs, cluster, record.cluster_id, model):
                family = task.get("taskDefinitionArn", "").rsplit("/", 1)[-1].rsplit(":", 1)[0]
                if task["taskArn"] in recorded or (task.get("startedBy") == record.cluster_id and family in families):
                    known.append(task)
                else:
                    unproven.append(task["taskArn"])
            live = [t["taskArn"] for t in known if t.get("lastStatus") != "STOPPED"]
            if not live:
                return []
            # Dask closes itself and every worker: their tasks end with no StopTask per task
            # (ECS has no batch stop); StopTask for whatever is still running after that.
            left = self._let_dask_exit(ctx, record, ecs, cluster, live) if len(live) > 1 else live
            if left:
                tasks.stop(ecs, cluster, left, f"dask-aws-magic down {record.name}")
            tasks.wait_stopped(ecs, cluster, live, ctx.sleep)  # their interfaces go, then the group can
            return [f"stopped {len(live)} task(s)"]

        def definitions() -> list[str]:
            removed = sum(tasks.deregister_family(ecs, f"{names['family']}-{role}") for role in ("scheduler", "worker"))
            return [f"deregistered {removed} task definition(s)"] if removed else []

        def hosts() -> list[str]:
            group = model.autoscaling_group or self._own_group(scope, names["asg"])
            return infra.delete_container_instances(ec2, scope.client("autoscaling"), group,
                                                    model.launch_template or names["template"], ctx.sleep)

        def cluster_() -> list[str]:
            # Only a cluster it made: recorded as made, or named with this cluster's id; never the profile's.
            mine = model.created_cluster or cluster == names["cluster"]
            return [f"deleted ECS cluster {cluster}"] if mine and infra.delete_cluster(ecs, cluster) else []

        def efs() -> list[str]:
            gone = model.efs and infra.delete_file_system(scope.client("efs"), model.efs, ctx.sleep)
            return [f"deleted EFS file system {model.efs}"] if gone else []

        def log_group() -> list[str]:
            group = model.log_group or names["log_group"]
            keep = model.keep_logs or record.settings.get("keep_logs")
            gone = not keep and infra.delete_log_group(scope.client("logs"), group)
            return [f"deleted log group {group}"] if gone else []

        def groups() -> list[str]:
            found = {g["GroupId"]: g for g in tagged_security_groups(ec2, record.cluster_id)}
            if model.security_group and made_here(record):  # its tags may be gone
                found.setdefault(model.security_group, {"GroupId": model.security_group})
            lines = []
            for gid, group in sorted(found.items()):
                if not ((made_here(record) and gid == model.security_group)
                        or group.get("GroupName") == _group_name(record)
                        or (proof is not None and proof.has_id("security-group", gid))):
                    unproven.append(gid)
                elif network.delete_security_group(ec2, gid, ctx.sleep):
                    lines.append(f"deleted security group {gid}")
            return lines

        def roles() -> list[str]:
            made = [iam.role_name(record.cluster_id, purpose) for purpose in ("execution", "instances", "task")]
            return [f"deleted IAM role {name}" for name in made if iam.delete_role(scope.client("iam"), name)]

        def secrets_() -> list[str]:  # the manifest last: while anything else is left, it still proves it
            deleted = secrets.delete_cluster_secrets(
                scope.client("secretsmanager"), record.cluster_id, proof.names.get("secret") if proof else [
                    secrets.node_secret_name(record.cluster_id), secrets.client_secret_name(record.cluster_id)])
            return [f"deleted {len(deleted)} secret(s)"] if deleted else []

        running = ["tasks"] if self.fargate else ["tasks", "container instances"]
        steps = [("tasks", stopped, []), ("task definitions", definitions, [])]
        if not self.fargate:
            steps.append(("container instances", hosts, []))
        steps.append((f"ECS cluster {cluster}", cluster_, running))
        if model.efs:
            steps.append((f"EFS file system {model.efs}", efs, running))
        steps += [(f"log group {model.log_group or names['log_group']}", log_group, []),
                  (f"security group {model.security_group or '(found by its tags)'}", groups, running),
                  (f"IAM roles {iam.role_name(record.cluster_id, '*')}", roles, [])]
        for what, remove, after in steps:
            done.step(what, remove, after=after)
        done.step(f"secrets of {record.cluster_id} (the manifest among them)", secrets_,
                  after=[what for what, _, _ in steps])
        if unproven:
            reason = why or "its manifest does not list them: someone else put this cluster's tags on them"
            done.removed.append(f"left {', '.join(unproven)}: {reason}. If you know they are yours, remove them "
                                f"with `down --unverified {' '.join(unproven)}`")
        return done.finish()

    def _manifest(self, record: ClusterRecord) -> tuple[manifest.Manifest | None, str]:
        """The cluster's manifest, or None and why there is none to read."""
        return read_manifest(discovery.scope_of(record), record.name, record.cluster_id)

    def remove_unverified(self, entry: Unverified, ids: list[str]) -> list[str]:
        """Stop the tasks and delete the security groups ``ids`` of an unverified entry."""
        scope = Scope(entry.location["region"], entry.location.get("aws_profile"), entry.location.get("endpoint_url"))
        lines = []
        with aws(f"removing unverified resources in {scope.describe()}"):
            for arn in (i for i in ids if ":task/" in i):
                cluster = arn.split("/")[1] if arn.count("/") >= 2 else "default"
                if tasks.stop(scope.client("ecs"), cluster, [arn], "dask-aws-magic down --unverified"):
                    tasks.wait_stopped(scope.client("ecs"), cluster, [arn], time.sleep)
                    lines.append(f"stopped task {arn}")
            for group in (i for i in ids if i.startswith("sg-")):
                if network.delete_security_group(scope.client("ec2"), group, time.sleep):
                    lines.append(f"deleted security group {group}")
            rest = [i for i in ids if ":task/" not in i and not i.startswith("sg-")]
            if rest:
                raise AwsError(f"{', '.join(rest)}: remove these yourself (the ECS console or the AWS CLI); this "
                               "command removes unverified tasks and security groups only.")
        return lines

    @staticmethod
    def _let_dask_exit(ctx: Context, record: ClusterRecord, ecs: Any, cluster: str, live: list[str]) -> list[str]:
        """Ask the scheduler to shut the cluster down and wait a little for the tasks to end; those left."""
        from ...core.connection import short_client

        if not record.scheduler_address:
            return live
        try:
            with short_client(record, timeout=5.0) as client:
                client.shutdown()
        except Exception:  # no answer, no identity: StopTask will do
            return live
        deadline = time.monotonic() + SHUTDOWN_WAIT
        scheduler = ECSResources.from_json(record.resources).scheduler
        while live and time.monotonic() < deadline:
            ctx.sleep(0.5)
            live = [t["taskArn"] for t in tasks.describe(ecs, cluster, live)
                    if t.get("lastStatus") in tasks.LIVE and t.get("desiredStatus") != "STOPPED"]  # not leaving
            if scheduler not in live:  # the workers it knew follow within seconds; others never will
                deadline = min(deadline, time.monotonic() + WORKERS_FOLLOW)
        return live

    @staticmethod
    def _own_group(scope: Any, name: str) -> str | None:
        """The auto scaling group named for the cluster, if it exists (a record rebuilt from tags)."""
        found = scope.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])
        return name if found.get("AutoScalingGroups") else None

    @staticmethod
    def _cluster_tasks(ecs: Any, cluster: str, cluster_id: str, model: ECSResources) -> list[dict[str, Any]]:
        """The cluster's tasks: those ECS lists for its id and those recorded."""
        from ...aws.errors import error_code

        try:
            arns = sorted(set(tasks.listed(ecs, cluster, cluster_id)) | set(model.task_arns()))
            return tasks.describe(ecs, cluster, arns) if arns else []
        except Exception as exc:
            if error_code(exc) == "ClusterNotFoundException":
                return []
            raise

    def replace_reclaimed(self, ctx: Context, record: ClusterRecord) -> tuple[bool, list[str], dict[str, Any]]:
        """One look for the keeper: (scheduler alive, reclaimed workers to forget, new workers started in
        their place while fewer run than asked)."""
        model = ECSResources.from_json(record.resources)
        found = self._describe(record, model)
        scheduler = next((t for t in found if t["taskArn"] == model.scheduler), None)
        if scheduler is None or scheduler.get("lastStatus") not in tasks.LIVE:
            return False, [], {}
        live = [t for t in found if t["taskArn"] in model.workers and t.get("lastStatus") in tasks.LIVE]
        reclaimed = [t["taskArn"] for t in found if t["taskArn"] in model.workers
                     and t.get("lastStatus") == "STOPPED" and t.get("stopCode") == SPOT_STOP]
        missing = min(len(reclaimed), record.workers - len(live))
        if missing <= 0:
            return True, reclaimed, {}
        ctx.emit("keeper", f"{len(reclaimed)} Spot worker(s) reclaimed; starting {missing}")
        before = set(model.workers)
        self._add_workers(ctx, record, model, missing)
        return True, reclaimed, {arn: info for arn, info in model.workers.items() if arn not in before}

    def scale(self, ctx: Context, record: ClusterRecord, workers: int) -> ECSResources:
        model = ECSResources.from_json(record.resources)
        found = self._describe(record, model)
        live = [t for t in found if t["taskArn"] in model.workers and t.get("lastStatus") in tasks.LIVE]
        for task in found:  # forget the workers that ended
            if task["taskArn"] in model.workers and task.get("lastStatus") not in tasks.LIVE:
                model.workers.pop(task["taskArn"], None)
        if workers > len(live):
            self._add_workers(ctx, record, model, workers - len(live))
        elif workers < len(live):
            newest_first = sorted(live, key=lambda t: str(t.get("createdAt", "")), reverse=True)
            surplus = [t["taskArn"] for t in newest_first[: len(live) - workers]]
            nprocs = record.settings.get("nprocs", record.processes_per_worker)
            ctx.retire([name for arn in surplus for name in dask_commands.worker_names(task_id(arn), nprocs)])
            with aws(f"stopping surplus workers of {record.name}"):
                tasks.stop(_client(record, "ecs"), str(model.ecs_cluster), surplus, "scaled down")
            for arn in surplus:
                model.workers.pop(arn, None)
        return model


class FargateBackend(_ECSTasks):
    """Tasks on AWS Fargate (FARGATE and FARGATE_SPOT)."""

    name: ClassVar[str] = "fargate"
    fargate: ClassVar[bool] = True


class ECSBackend(_ECSTasks):
    """Tasks on EC2 container instances: an existing ECS cluster's, or an auto scaling group it creates."""

    name: ClassVar[str] = "ecs"
    fargate: ClassVar[bool] = False
    defaults: ClassVar[BackendDefaults] = BackendDefaults(timeout=900.0, poll_interval=1.0, wait_for_workers=False,
                                                          boot_time=60.0, look_every=LOOK_EVERY)


__all__ = ["ECSBackend", "FargateBackend"]
