"""The ``ec2`` backend: a scheduler instance and worker instances, started together.

Stateless and tag-driven: every resource carries ``dask-aws-magic:cluster`` and
``dask-aws-magic:cluster-id``, so ``list`` and ``down`` work from AWS alone. One RunInstances
call per role whatever the number of workers; the workers are launched right after the
scheduler, with its private address from the RunInstances answer, before it has booted.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any, ClassVar

from ...aws import iam, network, secrets
from ...aws.scopes import LIST_ATTEMPTS, LOOK_EVERY
from ...aws.session import aws, credentials_available
from ...aws.tags import TAG_ROLE, tag_list, tag_value, tagged_security_groups
from .. import dask_commands, keeper
from ..base import BackendDefaults, Context, Discovery, Plan, Poll
from ..dask_commands import endpoints
from ..teardown import Teardown
from . import discovery, instances, placement, planning
from .model import EC2Resources

if TYPE_CHECKING:
    from ...core.profiles import Profile
    from ...core.registry import ClusterRecord

RUNNING = ("pending", "running")
SPOT_RECLAIM = "Server.SpotInstanceTermination"  # the state reason of a Spot instance EC2 took back
PROFILE_PROPAGATION = 60.0  # seconds a new instance profile may take to be usable by RunInstances
PROFILE_OPTION = "instance.iam_instance_profile"
PROFILE_INSTEAD = ("an instance profile that already exists; no role is created, and that profile's role may "
                   "read the cluster's secret")


def _ec2(record: ClusterRecord) -> Any:
    """The EC2 client of the record's region, credentials profile and endpoint."""
    with aws(f"reaching the AWS account of {record.name}"):
        return discovery.scope_of(record).client("ec2")


def _where(record: ClusterRecord) -> str:
    """Where the record's cluster is, for messages: region, credentials, endpoint."""
    return discovery.scope_of(record).describe()


def _sandbox_gone(record: ClusterRecord) -> bool:
    """True when the cluster was made in an emulated AWS that has stopped (a kernel restart): it is gone."""
    return discovery.scope_of(record).stopped_sandbox


class EC2Backend:
    """Plain EC2 instances."""

    name: ClassVar[str] = "ec2"
    defaults: ClassVar[BackendDefaults] = BackendDefaults(timeout=600.0, poll_interval=1.0, wait_for_workers=False,
                                                          boot_time=180.0, look_every=LOOK_EVERY)

    @classmethod
    def discoverable(cls) -> bool:
        return credentials_available()

    def plan(self, profile: Profile, name: str) -> Plan:
        return planning.plan(profile, name, self.name)

    # -- create ----------------------------------------------------------------------------
    def launch(self, ctx: Context, plan: Plan, record: ClusterRecord) -> EC2Resources:
        s = record.settings
        model = EC2Resources(region=s["region"], aws_profile=s.get("aws_profile"), endpoint_url=s.get("endpoint_url"),
                             protocol="tls" if s["tls"] else "tcp")
        tags = tag_list(record.name, record.cluster_id, extra=s["roles"]["scheduler"].get("tags"), owner=record.owner)
        ec2 = _ec2(record)
        # The security group first: discovery finds a cluster by it, and `down` then deletes the
        # secrets and the role by the names the cluster id gives them, even if this process dies.
        with aws(f"creating the security group of {record.name}"):
            model.security_group = network.create_security_group(
                ec2, f"dask-aws-magic-{record.name}-{record.cluster_id}", f"dask-aws-magic cluster {record.name}",
                tags, s["vpc"],
            )
            ctx.save(model)
            ctx.check()
            network.authorize_ingress(ec2, model.security_group, s["ingress_cidr"], [planning.INGRESS],
                                      ssh=planning.wants_ssh(s["roles"]))
        ctx.check()
        self._secrets(ctx, record, model, tags)
        self._instance_role(ctx, record, model, tags)
        scheduler = self._run(ctx, ec2, record, model, "scheduler", 1)[0]
        model.scheduler, model.scheduler_ip = scheduler["InstanceId"], scheduler.get("PrivateIpAddress")
        model.scheduler_subnet = scheduler.get("SubnetId")
        ctx.save(model)
        ctx.emit("launch", f"scheduler instance {model.scheduler} launched; launching {s['count']} worker(s)")
        model.add_workers(self._run(ctx, ec2, record, model, "worker", s["count"]))
        ctx.save(model)
        if s["roles"]["worker"].get("spot"):
            model.keeper = keeper.spawn(record)
            ctx.save(model)
        return model

    def _secrets(self, ctx: Context, record: ClusterRecord, model: EC2Resources, tags: list[dict[str, str]]) -> None:
        """The nodes' secret (their TLS identities and software.env) and the client's."""
        s = record.settings
        sm = discovery.scope_of(record).client("secretsmanager")
        with aws(f"storing the secrets of {record.name} in Secrets Manager"):
            made = secrets.create_cluster_secrets(sm, record.name, record.cluster_id,
                                                  dict(s["software"].get("env") or {}), s["tls"], tags)
        model.node_secret, model.client_secret, model.tls = made.node_secret, made.client_secret, made.client_identity
        ctx.save(model)
        ctx.check()

    def _instance_role(self, ctx: Context, record: ClusterRecord, model: EC2Resources,
                       tags: list[dict[str, str]]) -> None:
        """Who may read the nodes' secret: a role made for the cluster, or the role of each instance
        profile the profile names (granted through the secret's resource policy)."""
        roles = record.settings["roles"]
        doing = f"giving the instances of {record.name} a role"
        client = discovery.scope_of(record).client("iam")
        borrowed = sorted({cfg["iam_instance_profile"] for cfg in roles.values() if cfg.get("iam_instance_profile")})
        if borrowed:
            with aws(doing):
                arns = [iam.role_of_instance_profile(client, name) for name in borrowed]
                sm = discovery.scope_of(record).client("secretsmanager")
                secrets.allow_roles(sm, str(model.node_secret), arns)
        if all(cfg.get("iam_instance_profile") for cfg in roles.values()):
            return
        name = iam.role_name(record.cluster_id)
        policy = iam.secret_read_policy(str(model.node_secret))
        with aws(doing), iam.permission_needed(doing, PROFILE_OPTION, PROFILE_INSTEAD):
            iam.create_role(client, name, "ec2.amazonaws.com", policy, tags,
                            f"dask-aws-magic cluster {record.name}: reads its node secret")
            model.role = name
            ctx.save(model)
            iam.create_instance_profile(client, name, tags)
        ctx.check()

    def _run(self, ctx: Context, ec2: Any, record: ClusterRecord, model: EC2Resources, role: str,
             count: int) -> list[dict[str, Any]]:
        """``count`` instances of ``role``; the cancel exception if cancelled before any launched."""
        s = record.settings
        cfg = s["roles"][role]
        where = s["subnets"][role] if "subnets" in s else placement.candidates(  # a record from an older version
            ec2, cfg, s.get("profile", {}).get("instance", {}).get("zones"))[1]
        if role == "worker":
            zone = next((x["zone"] for x in where if x["id"] == model.scheduler_subnet), None)
            where = placement.nearest_first(where, model.scheduler_subnet, zone)
        import botocore.exceptions

        call = instances.request(record, model, role)
        doing = f"launching the {role} instances of {record.name}"
        # Retries within this call share tokens; a later `scale` must not.
        token = f"{record.cluster_id}-{uuid.uuid4().hex[:8]}-{role}"
        deadline = time.monotonic() + PROFILE_PROPAGATION
        with aws(doing), iam.permission_needed(doing, PROFILE_OPTION, PROFILE_INSTEAD):  # iam:PassRole
            while True:
                try:
                    launched = instances.run(ec2, call, count, spot=bool(cfg.get("spot")) and role == "worker",
                                             where=where, security_group=str(model.security_group),
                                             want_public=not s.get("use_private_ip"), token=token, doing=doing,
                                             cancelled=lambda: ctx.cancelled)
                    break
                except botocore.exceptions.ClientError as exc:
                    # IAM is eventually consistent: a new instance profile may be unknown to EC2 for seconds.
                    if not (model.role and instances.profile_not_ready(exc) and time.monotonic() < deadline):
                        raise
                    ctx.emit("launch", f"waiting for the new instance profile {model.role} to reach EC2")
                    ctx.sleep(2.0)
        if not launched:
            ctx.check()
        return launched

    # -- observe ---------------------------------------------------------------------------
    def _describe(self, record: ClusterRecord, attempts: int | None = None) -> list[dict[str, Any]]:
        with aws(f"describing the instances of {record.name} in {_where(record)}"):
            ec2 = discovery.scope_of(record).client("ec2", attempts)
            return instances.describe(ec2, record.cluster_id)

    def poll(self, record: ClusterRecord) -> Poll:
        model = EC2Resources.from_json(record.resources)
        found = self._describe(record)
        total = 1 + len(model.workers)
        running = sum(i["State"]["Name"] == "running" for i in found)
        for inst in found:
            if inst["State"]["Name"] in instances.DEAD_STATES:
                role = "scheduler" if inst["InstanceId"] == model.scheduler else "worker"
                reason = inst.get("StateReason", {}).get("Message", inst["State"]["Name"])
                output = instances.console_output(_ec2(record), inst["InstanceId"]) or "(no console output yet)"
                return Poll(failed=f"the {role} instance {inst['InstanceId']} is {inst['State']['Name']} "
                                   f"({reason}). Its console output:\n{output[-3000:]}")
        scheduler = next((i for i in found if i["InstanceId"] == model.scheduler), None)
        address = dashboard = None
        if scheduler is not None:
            use_private = record.settings.get("use_private_ip")
            ip = scheduler.get("PrivateIpAddress") if use_private else scheduler.get("PublicIpAddress")
            if not ip and scheduler["State"]["Name"] == "running" and not use_private:
                return Poll(failed=f"the scheduler instance {model.scheduler} has no public IP address (its "
                                   "subnet does not assign one). Use a subnet that does (`instance.subnet_id`), "
                                   "or set `network.use_private_ip: true` from a notebook inside the VPC.")
            if ip:
                address, dashboard = endpoints(ip, model.protocol)
        return Poll(address=address, dashboard=dashboard, message=f"instances {running}/{total} running",
                    done=running, total=total)

    def security(self, record: ClusterRecord) -> Any | None:
        model = EC2Resources.from_json(record.resources)
        if model.tls is None and model.protocol == "tls":  # a record from elsewhere
            sm = discovery.scope_of(record).client("secretsmanager")
            model.tls = record.resources["tls"] = secrets.client_identity(
                sm, record.name, record.cluster_id, model.client_secret)
        return model.security()

    def alive(self, record: ClusterRecord) -> bool:
        scheduler = record.resources.get("scheduler")
        if not scheduler or _sandbox_gone(record):
            return False
        # A check that may say it cannot tell: it gives up as soon as a listing does.
        return any(i["InstanceId"] == scheduler and i["State"]["Name"] in RUNNING
                   for i in self._describe(record, LIST_ATTEMPTS))

    def discover(self) -> Discovery:
        return discovery.discover(self.name)

    def scope(self, record: ClusterRecord) -> str:
        return str(discovery.scope_of(record))

    def logs(self, record: ClusterRecord) -> dict[str, str]:
        ec2 = _ec2(record)
        out = {}
        for inst in sorted(self._describe(record), key=lambda i: (tag_value(i, TAG_ROLE) != "scheduler",
                                                                  i["InstanceId"])):
            label = f"{tag_value(inst, TAG_ROLE)} {inst['InstanceId']} ({inst['State']['Name']})"
            out[label] = instances.console_output(ec2, inst["InstanceId"]) or "(no console output)"
        return out

    # -- change ----------------------------------------------------------------------------
    def terminate(self, ctx: Context, record: ClusterRecord) -> list[str]:
        if _sandbox_gone(record):
            return [f"nothing to remove: the sandbox it ran in ({record.settings.get('endpoint_url')}) has stopped, "
                    "and everything in it went with it"]
        model = EC2Resources.from_json(record.resources)
        scope, where = discovery.scope_of(record), _where(record)
        keeper.stop(record, model.keeper)
        ec2 = _ec2(record)
        done = Teardown(record.name, where)

        def ended() -> list[str]:
            ctx.emit("teardown", f"terminating the instances of {record.name}")
            gone = instances.terminate(ec2, record.cluster_id, model.instance_ids(), ctx.sleep)
            return [f"terminated {len(gone)} instance(s)"] if gone else []

        def groups() -> list[str]:
            found = {g["GroupId"] for g in tagged_security_groups(ec2, record.cluster_id)}
            return [f"deleted security group {group}"
                    for group in sorted(found | ({model.security_group} if model.security_group else set()))
                    if network.delete_security_group(ec2, group, ctx.sleep)]

        def secrets_() -> list[str]:  # by the names the cluster id gives them: found without a record too
            deleted = secrets.delete_cluster_secrets(scope.client("secretsmanager"), record.cluster_id)
            return [f"deleted {len(deleted)} secret(s)"] if deleted else []

        def role() -> list[str]:
            name = iam.role_name(record.cluster_id)
            return [f"deleted IAM role and instance profile {name}"] if iam.delete_role(scope.client("iam"), name) \
                else []

        done.step("instances", ended)
        done.step(f"security group {model.security_group or '(found by its tags)'}", groups, after=["instances"])
        done.step(f"secrets {secrets.node_secret_name(record.cluster_id)} and .../client", secrets_)
        done.step(f"IAM role and instance profile {iam.role_name(record.cluster_id)}", role)
        return done.finish()

    def replace_reclaimed(self, ctx: Context, record: ClusterRecord) -> tuple[bool, list[str], dict[str, Any]]:
        """One look for the keeper: (scheduler alive, Spot workers EC2 took back, new workers launched in
        their place while fewer run than asked). One DescribeInstances, and RunInstances when needed."""
        model = EC2Resources.from_json(record.resources)
        found = {i["InstanceId"]: i for i in self._describe(record)}
        if found.get(str(model.scheduler), {}).get("State", {}).get("Name") not in RUNNING:
            return False, [], {}
        live = [i for i in model.workers if found.get(i, {}).get("State", {}).get("Name") in RUNNING]
        reclaimed = [i for i in model.workers if found.get(i, {}).get("StateReason", {}).get("Code") == SPOT_RECLAIM
                     and found[i]["State"]["Name"] in ("shutting-down", "terminated")]
        missing = min(len(reclaimed), record.workers - len(live))
        if missing <= 0:
            return True, reclaimed, {}
        ctx.emit("keeper", f"{len(reclaimed)} Spot worker(s) reclaimed by EC2; launching {missing}")
        before = set(model.workers)
        model.add_workers(self._run(ctx, _ec2(record), record, model, "worker", missing))
        return True, reclaimed, {i: info for i, info in model.workers.items() if i not in before}

    def scale(self, ctx: Context, record: ClusterRecord, workers: int) -> EC2Resources:
        model = EC2Resources.from_json(record.resources)
        live = [i for i in self._describe(record)
                if tag_value(i, TAG_ROLE) == "worker" and i["State"]["Name"] in RUNNING]
        if workers > len(live):
            model.add_workers(self._run(ctx, _ec2(record), record, model, "worker", workers - len(live)))
        elif workers < len(live):
            newest_first = sorted(live, key=lambda i: i["LaunchTime"], reverse=True)
            surplus = [i["InstanceId"] for i in newest_first[: len(live) - workers]]
            nprocs = record.settings.get("nprocs", record.processes_per_worker)
            ctx.retire([name for instance_id in surplus for name in dask_commands.worker_names(instance_id, nprocs)])
            with aws(f"terminating surplus workers of {record.name}"):
                _ec2(record).terminate_instances(InstanceIds=surplus)
            for instance_id in surplus:
                model.workers.pop(instance_id, None)
        return model
