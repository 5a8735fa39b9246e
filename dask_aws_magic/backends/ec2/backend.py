"""The ``ec2`` backend: a scheduler instance and worker instances, started together.

Stateless: every resource carries ``dask-aws-magic:cluster`` and ``dask-aws-magic:cluster-id``, so
``list`` and ``down`` find it from AWS alone, and the cluster's manifest (written first) proves it is
the cluster's: what only carries the tags is never touched. One RunInstances
call per role whatever the number of workers; the workers are launched right after the
scheduler, with its private address from the RunInstances answer, before it has booted.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any, ClassVar

from ...aws import iam, manifest, network, secrets
from ...aws.scopes import LIST_ATTEMPTS, LOOK_EVERY, Scope
from ...aws.session import aws, credentials_available
from ...aws.tags import tag_list, tagged_security_groups
from ...core.errors import AwsError
from .. import dask_commands, data_identity, keeper, software_sync
from ..base import BackendDefaults, Context, Discovery, Plan, Poll, Unverified
from ..dask_commands import endpoints
from ..proof import for_down as proof_for_down
from ..proof import made_here
from ..proof import read as read_manifest
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
                   "read the secret of the role it is given to")


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


def _token(record: ClusterRecord, role: str) -> str:
    """A new ClientToken base for one launch of ``role`` (retries within it share it; a later ``scale``
    gets its own)."""
    return f"{record.cluster_id}-{uuid.uuid4().hex[:8]}-{role}"


def _group_name(record: ClusterRecord) -> str:
    return f"dask-aws-magic-{record.name}-{record.cluster_id}"


def _new_manifest(record: ClusterRecord, protocol: str, tokens: list[str]) -> manifest.Manifest:
    """What the cluster will be made of, by the names and ClientToken bases it will carry."""
    made = manifest.Manifest(cluster=record.name, cluster_id=record.cluster_id, backend="ec2", owner=record.owner,
                             protocol=protocol, tokens=tokens)
    made.expect("security-group", _group_name(record))
    made.expect("secret", *secrets.node_secret_names(record.cluster_id, True).values(),
                secrets.client_secret_name(record.cluster_id))
    made.expect("role", *(iam.role_name(record.cluster_id, role) for role in secrets.NODE_ROLES))
    return made


class EC2Backend:
    """Plain EC2 instances."""

    name: ClassVar[str] = "ec2"
    defaults: ClassVar[BackendDefaults] = BackendDefaults(timeout=600.0, poll_interval=1.0, wait_for_workers=False,
                                                          boot_time=180.0, look_every=LOOK_EVERY)

    @classmethod
    def discoverable(cls) -> bool:
        return credentials_available()

    def plan(self, profile: Profile, name: str) -> Plan:
        return data_identity.with_data(planning.plan(profile, name, self.name), profile)

    node_credentials = staticmethod(data_identity.node_credentials)

    # -- create ----------------------------------------------------------------------------
    def launch(self, ctx: Context, plan: Plan, record: ClusterRecord) -> EC2Resources:
        s = record.settings
        model = EC2Resources(region=s["region"], aws_profile=s.get("aws_profile"), endpoint_url=s.get("endpoint_url"),
                             protocol="tls" if s["tls"] else "tcp")
        tags = tag_list(record.name, record.cluster_id, extra=s["roles"]["scheduler"].get("tags"), owner=record.owner)
        ec2 = _ec2(record)
        sm = discovery.scope_of(record).client("secretsmanager")
        env = dict(s["software"].get("env") or {})
        material = secrets.new_material(record.name, env, s["tls"])
        tokens = {role: _token(record, role) for role in secrets.NODE_ROLES}
        # The manifest first, naming everything that follows: whatever exists when this process dies is
        # proven its own cluster's (and only the owner can add to it).
        the_manifest = _new_manifest(record, model.protocol, list(tokens.values()))
        with aws(f"writing the manifest of {record.name} to Secrets Manager"):
            model.tls = material.client_secret() if material else None
            model.client_secret = manifest.secret_name(record.cluster_id)
            ctx.save(model)  # before: a teardown after a half-made manifest finds it by name
            model.client_secret = manifest.create(sm, the_manifest, model.tls, tags)
            ctx.save(model)
        ctx.check()
        # Then the security group: discovery finds a cluster by it, and `down` then deletes the secrets and
        # the roles by the names the manifest gives them, even if this process dies.
        with aws(f"creating the security group of {record.name}"):
            model.security_group = network.create_security_group(
                ec2, _group_name(record), f"dask-aws-magic cluster {record.name}", tags, s["vpc"],
            )
            ctx.save(model)
            ctx.check()
            network.authorize_ingress(ec2, model.security_group, s["ingress_cidr"], [planning.INGRESS],
                                      ssh=planning.wants_ssh(s["roles"]))
        ctx.check()
        with aws(f"storing the secrets of {record.name} in Secrets Manager"):
            model.node_secrets = secrets.create_node_secrets(sm, record.cluster_id, material, env, True, tags,
                                                            software_sync.node_files(record))
            ctx.save(model)
        ctx.check()
        software_sync.publish(record, discovery.scope_of(record))
        self._instance_roles(ctx, record, model, tags)
        scheduler = self._run(ctx, ec2, record, model, "scheduler", 1, tokens["scheduler"])[0]
        model.scheduler, model.scheduler_ip = scheduler["InstanceId"], scheduler.get("PrivateIpAddress")
        model.scheduler_subnet = scheduler.get("SubnetId")
        ctx.save(model)
        ctx.emit("launch", f"scheduler instance {model.scheduler} launched; launching {s['count']} worker(s)")
        model.add_workers(self._run(ctx, ec2, record, model, "worker", s["count"], tokens["worker"]))
        ctx.save(model)
        the_manifest.add_ids("security-group", [str(model.security_group)])
        the_manifest.add_ids("scheduler", [model.scheduler])
        the_manifest.add_ids("worker", list(model.workers))
        with aws(f"recording the instances of {record.name} in its manifest"):
            manifest.save(sm, the_manifest, model.tls)
        if s["roles"]["worker"].get("spot"):
            model.keeper = keeper.spawn(record)
            ctx.save(model)
        return model

    def _instance_roles(self, ctx: Context, record: ClusterRecord, model: EC2Resources,
                        tags: list[dict[str, str]]) -> None:
        """Who may read each role's secret: a role made for it, or the role of the instance profile the
        profile names for it (granted through that secret's resource policy). A worker's role cannot
        read the scheduler's secret, nor the scheduler's the workers'."""
        roles = record.settings["roles"]
        doing = f"giving the instances of {record.name} their roles"
        client = discovery.scope_of(record).client("iam")
        sm = discovery.scope_of(record).client("secretsmanager")
        for role in secrets.NODE_ROLES:
            secret = model.node_secrets[role]
            borrowed = roles[role].get("iam_instance_profile")
            if borrowed:
                with aws(doing):
                    secrets.allow_roles(sm, secret, [iam.role_of_instance_profile(client, borrowed)])
                continue
            name = iam.role_name(record.cluster_id, role)
            with aws(doing), iam.permission_needed(doing, PROFILE_OPTION, PROFILE_INSTEAD):
                policy = iam.secret_read_policy(secret)
                policy["Statement"] += software_sync.node_statements(record)
                iam.create_role(client, name, "ec2.amazonaws.com", policy, tags,
                                f"dask-aws-magic cluster {record.name}: its {role} reads its own secret")
                model.roles[role] = name
                ctx.save(model)
                iam.create_instance_profile(client, name, tags)
            ctx.check()

    def _run(self, ctx: Context, ec2: Any, record: ClusterRecord, model: EC2Resources, role: str,
             count: int, token: str) -> list[dict[str, Any]]:
        """``count`` instances of ``role``, launched with ClientTokens made from ``token`` (a base the
        manifest lists); the cancel exception if cancelled before any launched."""
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
                    if not (model.roles.get(role) and instances.profile_not_ready(exc)
                            and time.monotonic() < deadline):
                        raise
                    ctx.emit("launch", f"waiting for the new instance profile {model.roles[role]} to reach EC2")
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
        found = [i for i in self._describe(record) if i["InstanceId"] in model.instance_ids()]  # ours, not tags'
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
        found = self._describe(record)
        roles = self._roles(record, EC2Resources.from_json(record.resources), found)
        for inst in sorted((i for i in found if i["InstanceId"] in roles),
                           key=lambda i: (roles[i["InstanceId"]] != "scheduler", i["InstanceId"])):
            label = f"{roles[inst['InstanceId']]} {inst['InstanceId']} ({inst['State']['Name']})"
            out[label] = instances.console_output(ec2, inst["InstanceId"]) or "(no console output)"
        return out

    # -- change ----------------------------------------------------------------------------
    def _roles(self, record: ClusterRecord, model: EC2Resources, found: list[dict[str, Any]],
               proof: manifest.Manifest | None = None) -> dict[str, str]:
        """Instance id -> role of each instance a proof ties to the cluster: what a record made here
        lists, then what the manifest proves (read only when needed). Tags prove nothing."""
        roles = {w: "worker" for w in model.workers} if made_here(record) else {}
        if made_here(record) and model.scheduler:
            roles[model.scheduler] = "scheduler"
        doubtful = [i for i in found if i["InstanceId"] not in roles]
        if doubtful and proof is None:
            proof, _ = self._manifest(record)
        for inst in doubtful:
            role = discovery.instance_role(proof, inst) if proof is not None else None
            if role is not None:
                roles[inst["InstanceId"]] = role
        return roles

    def _manifest(self, record: ClusterRecord) -> tuple[manifest.Manifest | None, str]:
        """The cluster's manifest, or None and why there is none to read."""
        return read_manifest(discovery.scope_of(record), record.name, record.cluster_id)

    def terminate(self, ctx: Context, record: ClusterRecord) -> list[str]:
        if _sandbox_gone(record):
            return [f"nothing to remove: the sandbox it ran in ({record.settings.get('endpoint_url')}) has stopped, "
                    "and everything in it went with it"]
        model = EC2Resources.from_json(record.resources)
        scope, where = discovery.scope_of(record), _where(record)
        keeper.stop(record, model.keeper)
        ec2 = _ec2(record)
        proof, why = proof_for_down(scope, record, where)
        done = Teardown(record.name, where)
        unproven: list[str] = []  # carry this cluster's tags, but nothing proves them its own: left alone

        def ended() -> list[str]:
            ctx.emit("teardown", f"terminating the instances of {record.name}")
            # Those its tags name, those recorded here and those its manifest lists (their tags may be
            # rewritten; a query just after a launch may not list them yet).
            tagged = instances.describe(ec2, record.cluster_id)
            listed = [i for role in secrets.NODE_ROLES for i in (proof.ids.get(role, []) if proof else [])]
            unseen = sorted(set(model.instance_ids() + listed) - {i["InstanceId"] for i in tagged})
            found = tagged + (instances.by_id(ec2, unseen) if unseen else [])
            roles = self._roles(record, model, found, proof)
            live = {i["InstanceId"] for i in found if i["State"]["Name"] != "terminated"}
            not_yet_listed = set(unseen) - {i["InstanceId"] for i in found}
            unproven.extend(f"instance {i}" for i in sorted(live - set(roles)))
            gone = instances.terminate(ec2, sorted(set(roles) & (live | not_yet_listed)), ctx.sleep)
            return [f"terminated {len(gone)} instance(s)"] if gone else []

        def groups() -> list[str]:
            found = {g["GroupId"]: g for g in tagged_security_groups(ec2, record.cluster_id)}
            if model.security_group and model.security_group not in found:  # its tags may be gone
                found[model.security_group] = {"GroupId": model.security_group}
            lines = []
            for gid, group in sorted(found.items()):
                if not ((made_here(record) and gid == model.security_group) or (proof is not None and (
                        proof.has_id("security-group", gid) or proof.has_name("security-group",
                                                                               group.get("GroupName"))))):
                    unproven.append(f"security group {gid}")
                elif network.delete_security_group(ec2, gid, ctx.sleep):
                    lines.append(f"deleted security group {gid}")
            return lines

        role_names = (proof.names.get("role") if proof else None) or [
            iam.role_name(record.cluster_id, role) for role in ("", *secrets.NODE_ROLES)]

        def roles() -> list[str]:  # by the names the manifest gives them: found when the record was rebuilt
            iam_client = scope.client("iam")
            return [f"deleted IAM role and instance profile {name}" for name in role_names
                    if iam.delete_role(iam_client, name)]

        def secrets_() -> list[str]:  # the manifest last: while anything else is left, it still proves it
            deleted = secrets.delete_cluster_secrets(scope.client("secretsmanager"), record.cluster_id,
                                                     proof.names.get("secret") if proof else None)
            return [f"deleted {len(deleted)} secret(s)"] if deleted else []

        group = f"security group {model.security_group or '(found by its tags)'}"
        done.step("instances", ended)
        done.step(group, groups, after=["instances"])
        done.step(f"IAM roles and instance profiles {', '.join(role_names)}", roles)
        done.step(f"secrets of {record.cluster_id} (the manifest among them)", secrets_,
                  after=["instances", group, f"IAM roles and instance profiles {', '.join(role_names)}"])
        if unproven:
            reason = why or "its manifest does not list them: someone else put this cluster's tags on them"
            done.removed.append(f"left {', '.join(unproven)}: {reason}. If you know they are yours, remove them "
                                f"with `down --unverified {' '.join(x.split()[-1] for x in unproven)}`")
        return done.finish()

    def replace_reclaimed(self, ctx: Context, record: ClusterRecord) -> tuple[bool, list[str], dict[str, Any]]:
        """One look for the keeper: (scheduler alive, Spot workers EC2 took back, new workers launched in
        their place while fewer run than asked). One DescribeInstances, and RunInstances when needed (the
        new workers' ClientTokens in the manifest first, as for `scale`)."""
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
        token = _token(record, "worker")
        self._extend_manifest(record, token)
        model.add_workers(self._run(ctx, _ec2(record), record, model, "worker", missing, token))
        return True, reclaimed, {i: info for i, info in model.workers.items() if i not in before}

    def scale(self, ctx: Context, record: ClusterRecord, workers: int) -> EC2Resources:
        model = EC2Resources.from_json(record.resources)
        found = self._describe(record)
        roles = self._roles(record, model, found)
        live = [i for i in found if roles.get(i["InstanceId"]) == "worker" and i["State"]["Name"] in RUNNING]
        if workers > len(live):
            token = _token(record, "worker")
            proof = self._extend_manifest(record, token)
            launched = self._run(ctx, _ec2(record), record, model, "worker", workers - len(live), token)
            model.add_workers(launched)
            if proof is not None:
                proof.add_ids("worker", [i["InstanceId"] for i in launched])
                with aws(f"recording the new workers of {record.name} in its manifest"):
                    manifest.save(discovery.scope_of(record).client("secretsmanager"), proof, model.tls)
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

    def _extend_manifest(self, record: ClusterRecord, token: str) -> manifest.Manifest | None:
        """Add a launch's ClientToken base to the manifest before the launch (None: a cluster of an older
        version, which has none)."""
        proof, why = self._manifest(record)
        if proof is None:
            if "older version" in why:
                return None
            raise AwsError(f"Cannot add workers to {record.name}: {why}. New workers would be proven nobody's.")
        proof.tokens.append(token)
        model = EC2Resources.from_json(record.resources)
        with aws(f"adding the new workers of {record.name} to its manifest"):
            manifest.save(discovery.scope_of(record).client("secretsmanager"), proof, model.tls)
        return proof

    def remove_unverified(self, entry: Unverified, ids: list[str]) -> list[str]:
        """Terminate the instances and delete the security groups ``ids`` of an unverified entry."""
        scope = Scope(entry.location["region"], entry.location.get("aws_profile"), entry.location.get("endpoint_url"))
        ec2 = scope.client("ec2")
        lines = []
        with aws(f"removing unverified resources in {scope.describe()}"):
            ended = instances.terminate(ec2, [i for i in ids if i.startswith("i-")], lambda s: time.sleep(s))
            lines += [f"terminated instance {i}" for i in ended]
            for group in (i for i in ids if i.startswith("sg-")):
                if network.delete_security_group(ec2, group, lambda s: time.sleep(s)):
                    lines.append(f"deleted security group {group}")
        return lines
