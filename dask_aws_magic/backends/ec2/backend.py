"""The ``ec2`` backend: a scheduler instance and worker instances, started together.

Stateless and tag-driven: every resource carries ``dask-aws-magic:cluster`` and
``dask-aws-magic:cluster-id``, so ``list`` and ``down`` work from AWS alone. One RunInstances
call per role whatever the number of workers; the workers are launched right after the
scheduler, with its private address from the RunInstances answer, before it has booted.
"""

from __future__ import annotations

import base64
import contextlib
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ...aws import pricing
from ...aws.session import error_code, explain, session
from ...aws.tls import ClusterTLS, caller_cidr, check_cidr, new_cluster_tls
from ...core.errors import AwsError, LaunchError, ProfileError
from ...core.profiles import parse_duration, parse_memory
from ..base import Discovered, Plan, PlannedResource, Poll
from . import userdata

if TYPE_CHECKING:
    from ...core.profiles import Profile
    from ...core.registry import ClusterRecord

TAG_CLUSTER = "dask-aws-magic:cluster"
TAG_CLUSTER_ID = "dask-aws-magic:cluster-id"
TAG_ROLE = "dask-aws-magic:role"
TAG_PROTOCOL = "dask-aws-magic:protocol"  # tls or tcp, so a cluster found by its tags can be reached
DEFAULT_SCHEDULER_TYPE = "t3.medium"
DEFAULT_WORKER_TYPE = "m6i.large"
DEFAULT_WORKERS = 2
DEFAULT_IDLE_TIMEOUT = "1h"
AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch}"
LIVE_STATES = ["pending", "running", "stopping", "stopped"]
DEAD_STATES = ("shutting-down", "terminated", "stopping", "stopped")
# Errors after which another market (spot -> on-demand) or another subnet may succeed.
SPOT_FALLBACK = {"InsufficientInstanceCapacity", "SpotMaxPriceTooLow", "MaxSpotInstanceCountExceeded",
                 "InsufficientCapacity", "UnfulfillableCapacity"}
CAPACITY = {"InsufficientInstanceCapacity", "InsufficientCapacity", "Unsupported"}
TERMINATE_WAIT = 600.0

_clients: dict[tuple, Any] = {}


def client(service: str, region: str | None, aws_profile: str | None = None) -> Any:
    """A cached boto3 client (keyed by everything that changes where it points)."""
    key = (service, region, aws_profile, os.environ.get("AWS_ENDPOINT_URL"), os.environ.get("AWS_ACCESS_KEY_ID"))
    if key not in _clients:
        from botocore.config import Config

        config = Config(retries={"mode": "adaptive", "max_attempts": 8})
        _clients[key] = session(aws_profile, region).client(service, config=config)
    return _clients[key]


@contextlib.contextmanager
def aws(doing: str) -> Iterator[None]:
    """Turn any boto3 failure inside into one :class:`AwsError` paragraph."""
    import botocore.exceptions

    try:
        yield
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise explain(exc, doing) from None


def _tags(cluster: str, cluster_id: str, role: str | None, extra: dict[str, str]) -> list[dict[str, str]]:
    """The tags every resource of the cluster carries (the profile's own tags cannot override them)."""
    tags = {**extra, TAG_CLUSTER: cluster, TAG_CLUSTER_ID: cluster_id}
    if role:
        tags[TAG_ROLE] = role
        tags["Name"] = f"dask-{cluster}-{role}"
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _instances(reply: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for r in reply.get("Reservations", []) for i in r.get("Instances", [])]


def _tag(instance: dict[str, Any], key: str) -> str | None:
    return next((t["Value"] for t in instance.get("Tags", []) if t["Key"] == key), None)


class EC2Backend:
    """Plain EC2 instances."""

    name = "ec2"
    poll_interval = 1.0

    # -- plan ------------------------------------------------------------------------------
    def plan(self, profile: Profile, name: str) -> Plan:
        data = profile.data
        aws_profile = data.get("aws_profile")
        region = data.get("region") or session(aws_profile).region_name
        if not region:
            raise ProfileError("The profile has no `region` and AWS has no default one: add `region: us-east-1` "
                               "(say) to the profile or `--set region=...`.")
        ec2 = client("ec2", region, aws_profile)
        roles = {"scheduler": profile.role("scheduler"), "worker": profile.role("worker")}
        roles["scheduler"].setdefault("type", DEFAULT_SCHEDULER_TYPE)
        roles["worker"].setdefault("type", DEFAULT_WORKER_TYPE)
        types = self._instance_types(ec2, {cfg["type"] for cfg in roles.values()})
        worker = data.get("worker", {})
        count = worker.get("count", DEFAULT_WORKERS)
        wtype = types[roles["worker"]["type"]]
        nprocs = worker.get("nprocs", wtype["cores"])
        nthreads = worker.get("nthreads", wtype["threads_per_core"])
        memory = parse_memory(worker.get("memory")) or int(wtype["memory"] * 0.9 // nprocs)
        with aws("looking up the default AMI"):
            by_arch: dict[str, str] = {}
            amis = {}
            for role, cfg in roles.items():
                arch = types[cfg["type"]]["arch"]
                if not cfg.get("ami") and arch not in by_arch:
                    by_arch[arch] = self._default_ami(region, aws_profile, arch)
                amis[role] = cfg.get("ami") or by_arch[arch]
        network = data.get("network", {})
        lifecycle = data.get("lifecycle", {})
        idle = parse_duration(lifecycle.get("idle_timeout", DEFAULT_IDLE_TIMEOUT))
        lifetime = parse_duration(lifecycle.get("max_lifetime"))
        if network.get("ingress_cidr"):
            cidr = check_cidr(network["ingress_cidr"])
        else:
            cidr = caller_cidr(private=network.get("use_private_ip", False))
        resources, spot_prices = [], {}
        with aws("reading spot prices"):
            for itype in types:
                spot_prices[itype] = pricing.spot(ec2, itype)
        for role, cfg, n in (("scheduler", roles["scheduler"], 1), ("worker", roles["worker"], count)):
            itype = cfg["type"]
            price = pricing.on_demand(itype, region)
            spot = spot_prices.get(itype)
            detail = (f"{itype} ({types[itype]['vcpus']} vCPU, {types[itype]['memory'] / 2**30:.0f} GiB), "
                      f"{amis[role]}{', spot with on-demand fallback' if cfg.get('spot') else ''}")
            resources.append(PlannedResource(
                "instance", role, n, detail, hourly_cost=(price or 0.0) * n,
                spot_hourly_cost=None if spot is None else spot * n,
            ))
        resources.insert(0, PlannedResource(
            "security-group", "network", 1, f"ports {userdata.SCHEDULER_PORT}-{userdata.DASHBOARD_PORT} from "
            f"{cidr}{', 22 from it too' if roles['scheduler'].get('key_name') else ''}; all traffic inside"))
        tls = network.get("tls", True)
        notes = [
            f"region {region}; prices: {pricing.source_note()}",
            f"TLS {'on (a per-cluster certificate)' if tls else 'OFF: traffic is unencrypted'}",
            f"idle timeout {idle:g} s (no tasks and no clients), then every instance terminates itself"
            if idle else "no idle timeout: the cluster runs until `down` or max_lifetime",
            f"max lifetime {lifetime:g} s, enforced on the instances" if lifetime else "no max lifetime",
        ]
        for itype in types:
            if pricing.on_demand(itype, region) is None:
                notes.append(f"no list price known for {itype}; its cost shows as 0")
        if data.get("software", {}).get("image") and data.get("software", {}).get("pip"):
            notes.append("software.pip is ignored with software.image: put the packages in the image")
        if cidr.endswith("/0"):
            notes.append(f"WARNING: the scheduler is open to {cidr}, i.e. to anyone")
        import dask
        import distributed

        software = data.get("software", {})
        settings = {
            "region": region, "aws_profile": aws_profile, "count": count, "ingress_cidr": cidr, "tls": tls,
            "idle_timeout": idle, "max_lifetime": lifetime, "amis": amis, "roles": roles,
            "nprocs": nprocs, "nthreads": nthreads, "memory": memory,
            "use_private_ip": network.get("use_private_ip", False),
            "software": {
                "python": software.get("python", f"{sys.version_info.major}.{sys.version_info.minor}"),
                "dask": software.get("dask", dask.__version__),
                "distributed": software.get("dask", distributed.__version__),
                "pip": software.get("pip", []), "image": software.get("image"), "env": software.get("env", {}),
            },
        }
        return Plan(name=name, backend=self.name, profile=profile.name, workers=count,
                    threads_per_worker=nthreads, memory_per_worker=memory, resources=resources, notes=notes,
                    settings=settings)

    def _instance_types(self, ec2: Any, names: set[str]) -> dict[str, dict[str, Any]]:
        import botocore.exceptions

        try:
            reply = ec2.describe_instance_types(InstanceTypes=sorted(names))
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) in ("InvalidInstanceType", "InvalidParameterValue"):
                raise ProfileError(
                    f"An instance type in the profile is not offered in this region ({sorted(names)}): fix "
                    "`instance.type`, `scheduler.type` or `worker.type` (e.g. m6i.large)."
                ) from None
            raise explain(exc, "describing instance types") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise explain(exc, "describing instance types") from None
        found = {}
        for item in reply["InstanceTypes"]:
            vcpu = item["VCpuInfo"]
            found[item["InstanceType"]] = {
                "vcpus": vcpu["DefaultVCpus"],
                "cores": vcpu.get("DefaultCores", vcpu["DefaultVCpus"]),
                "threads_per_core": vcpu.get("DefaultThreadsPerCore", 1),
                "memory": item["MemoryInfo"]["SizeInMiB"] * 2**20,
                "arch": "arm64" if "arm64" in item["ProcessorInfo"]["SupportedArchitectures"] else "x86_64",
            }
        missing = names - set(found)
        if missing:
            raise ProfileError(f"Unknown instance type(s) {sorted(missing)}: fix `instance.type`, "
                               "`scheduler.type` or `worker.type` (e.g. m6i.large).")
        return found

    def _default_ami(self, region: str, aws_profile: str | None, arch: str) -> str:
        ssm = client("ssm", region, aws_profile)
        return ssm.get_parameter(Name=AMI_PARAMETER.format(arch=arch))["Parameter"]["Value"]

    # -- launch ----------------------------------------------------------------------------
    def _ec2(self, record: ClusterRecord) -> Any:
        region = record.settings.get("region") or record.resources.get("region")
        return client("ec2", region, record.settings.get("aws_profile"))

    def launch(self, plan: Plan, record: ClusterRecord, save: Callable[[], None]) -> None:
        record.settings.update(plan.settings)
        s = record.settings
        ec2 = self._ec2(record)
        record.resources = {"region": s["region"], "security_group": None, "scheduler": None, "workers": {}}
        extra_tags = s["roles"]["scheduler"].get("tags", {})
        with aws(f"creating the security group of {record.name}"):
            vpc_id = self._vpc(ec2, s["roles"]["worker"])
            group = ec2.create_security_group(
                GroupName=f"dask-aws-magic-{record.name}-{record.cluster_id}",
                Description=f"dask-aws-magic cluster {record.name}",
                TagSpecifications=[{"ResourceType": "security-group",
                                    "Tags": _tags(record.name, record.cluster_id, None, extra_tags)}],
                **({"VpcId": vpc_id} if vpc_id else {}),
            )["GroupId"]
            record.resources["security_group"] = group
            save()
            ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=self._ingress(group, s))
        if s["tls"]:
            tls = new_cluster_tls(record.name)
            record.resources["tls"] = {"cert": tls.cert, "key": tls.key}
        scheduler = self._run(ec2, record, "scheduler", 1, None)[0]
        record.resources["scheduler"] = scheduler["InstanceId"]
        record.resources["scheduler_ip"] = scheduler.get("PrivateIpAddress")
        save()
        workers = self._run(ec2, record, "worker", s["count"], scheduler.get("PrivateIpAddress"))
        record.resources["workers"] = {w["InstanceId"]: {"spot": w.get("InstanceLifecycle") == "spot"}
                                       for w in workers}
        save()

    def _vpc(self, ec2: Any, cfg: dict[str, Any]) -> str | None:
        if cfg.get("vpc_id"):
            return cfg["vpc_id"]
        if cfg.get("subnet_id"):
            return ec2.describe_subnets(SubnetIds=[cfg["subnet_id"]])["Subnets"][0]["VpcId"]
        return None  # the default VPC

    def _ingress(self, group: str, s: dict[str, Any]) -> list[dict[str, Any]]:
        rules = [
            {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": group, "Description": "inside the cluster"}]},
            {"IpProtocol": "tcp", "FromPort": userdata.SCHEDULER_PORT, "ToPort": userdata.DASHBOARD_PORT,
             "IpRanges": [{"CidrIp": s["ingress_cidr"], "Description": "scheduler and dashboard"}]},
        ]
        if s["roles"]["scheduler"].get("key_name") or s["roles"]["worker"].get("key_name"):
            rules.append({"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                          "IpRanges": [{"CidrIp": s["ingress_cidr"], "Description": "ssh"}]})
        return rules

    def _node(self, record: ClusterRecord, role: str, scheduler_ip: str | None) -> userdata.NodeSpec:
        s = record.settings
        tls = record.resources.get("tls")
        return userdata.NodeSpec(
            role=role, cluster=record.name, cluster_id=record.cluster_id,
            software=userdata.Software(**s["software"]), tls=ClusterTLS(**tls) if tls else None,
            scheduler_ip=scheduler_ip, nprocs=s["nprocs"], nthreads=s["nthreads"], memory=s["memory"],
            idle_timeout=s["idle_timeout"] if role == "scheduler" else 0.0, max_lifetime=s["max_lifetime"],
        )

    def _request(self, record: ClusterRecord, role: str, scheduler_ip: str | None) -> dict[str, Any]:
        s = record.settings
        cfg = s["roles"][role]
        tags = _tags(record.name, record.cluster_id, role, cfg.get("tags", {}))
        tags.append({"Key": TAG_PROTOCOL, "Value": "tls" if record.resources.get("tls") else "tcp"})
        request: dict[str, Any] = {
            "ImageId": s["amis"][role],
            "InstanceType": cfg["type"],
            "UserData": userdata.user_data(self._node(record, role, scheduler_ip)),
            "SecurityGroupIds": [record.resources["security_group"]],
            "InstanceInitiatedShutdownBehavior": "terminate",
            "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
            "TagSpecifications": [{"ResourceType": "instance", "Tags": tags},
                                  {"ResourceType": "volume", "Tags": tags}],
        }
        if cfg.get("key_name"):
            request["KeyName"] = cfg["key_name"]
        if cfg.get("iam_instance_profile"):
            request["IamInstanceProfile"] = {"Name": cfg["iam_instance_profile"]}
        if cfg.get("root_volume_gb"):
            request["BlockDeviceMappings"] = [{"DeviceName": "/dev/xvda", "Ebs": {
                "VolumeSize": cfg["root_volume_gb"], "VolumeType": "gp3", "DeleteOnTermination": True}}]
        return request

    def _subnets(self, ec2: Any, cfg: dict[str, Any]) -> Iterator[str | None]:
        """The pinned subnet (or AWS's default choice) first, then the VPC's other subnets."""
        first = cfg.get("subnet_id")
        vpc = self._vpc(ec2, cfg)
        if first or not vpc:
            yield first  # without a subnet, AWS picks one in the default VPC
        filters = [{"Name": "vpc-id", "Values": [vpc]}] if vpc else [{"Name": "default-for-az", "Values": ["true"]}]
        for subnet in ec2.describe_subnets(Filters=filters)["Subnets"]:
            if subnet["SubnetId"] != first:
                yield subnet["SubnetId"]

    def _run(self, ec2: Any, record: ClusterRecord, role: str, count: int,
             scheduler_ip: str | None) -> list[dict[str, Any]]:
        """Launch ``count`` instances of ``role`` in one call, falling back from spot to on-demand and
        across subnets on capacity errors."""
        import botocore.exceptions

        cfg = record.settings["roles"][role]
        request = self._request(record, role, scheduler_ip)
        markets = ["spot", "on-demand"] if cfg.get("spot") and role == "worker" else ["on-demand"]
        launched: list[dict[str, Any]] = []
        last_error: BaseException | None = None
        if len(request["UserData"].encode()) > userdata.EC2_USER_DATA_LIMIT:
            raise LaunchError(f"The {role} user-data is {len(request['UserData'].encode())} bytes, over EC2's "
                              "16 KB limit: shorten `software.env` or `software.pip`.")
        nonce = uuid.uuid4().hex[:8]  # retries within this call share tokens; a later `scale` must not
        with aws(f"launching the {role} instances of {record.name}"):
            for attempt, subnet in enumerate(self._subnets(ec2, cfg)):
                for market in markets:
                    call = dict(request, MinCount=1, MaxCount=count - len(launched))
                    call["ClientToken"] = f"{record.cluster_id}-{nonce}-{role}-{attempt}-{market}-{len(launched)}"
                    if subnet:
                        call["SubnetId"] = subnet
                    if market == "spot":
                        call["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": {
                            "SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}}
                    try:
                        launched += ec2.run_instances(**call)["Instances"]
                    except botocore.exceptions.ClientError as exc:
                        code = error_code(exc)
                        if not (code in CAPACITY or (market == "spot" and code in SPOT_FALLBACK)):
                            raise
                        last_error = exc
                        continue
                    if len(launched) >= count:
                        return launched
        if launched:
            return launched  # fewer than asked: AWS had no more capacity anywhere; poll shows the count
        raise explain(last_error, f"launching the {role} instances of {record.name} in every subnet tried")

    # -- observe ---------------------------------------------------------------------------
    def _describe(self, record: ClusterRecord) -> list[dict[str, Any]]:
        ec2 = self._ec2(record)
        with aws(f"describing the instances of {record.name}"):
            reply = ec2.describe_instances(Filters=[{"Name": f"tag:{TAG_CLUSTER_ID}", "Values": [record.cluster_id]}])
        return _instances(reply)

    def poll(self, record: ClusterRecord) -> Poll:
        instances = self._describe(record)
        scheduler_id = record.resources.get("scheduler")
        total = 1 + len(record.resources.get("workers", {}))
        running = sum(i["State"]["Name"] == "running" for i in instances)
        for inst in instances:
            if inst["State"]["Name"] in DEAD_STATES:
                role = "scheduler" if inst["InstanceId"] == scheduler_id else "worker"
                reason = inst.get("StateReason", {}).get("Message", inst["State"]["Name"])
                output = self._console(record, inst["InstanceId"]) or "(no console output yet)"
                return Poll(failed=f"the {role} instance {inst['InstanceId']} is {inst['State']['Name']} "
                                   f"({reason}). Its console output:\n{output[-3000:]}")
        scheduler = next((i for i in instances if i["InstanceId"] == scheduler_id), None)
        address = dashboard = None
        if scheduler is not None:
            use_private = record.settings.get("use_private_ip")
            ip = scheduler.get("PrivateIpAddress") if use_private else scheduler.get("PublicIpAddress")
            if not ip and scheduler["State"]["Name"] == "running" and not use_private:
                return Poll(failed=f"the scheduler instance {scheduler_id} has no public IP address (its subnet "
                                   "does not assign one). Use a subnet that does (`instance.subnet_id`), or set "
                                   "`network.use_private_ip: true` from a notebook inside the VPC.")
            if ip:
                protocol = "tls" if record.resources.get("tls") else "tcp"
                address = f"{protocol}://{ip}:{userdata.SCHEDULER_PORT}"
                dashboard = f"http://{ip}:{userdata.DASHBOARD_PORT}/status"
        return Poll(address=address, dashboard=dashboard, message=f"instances {running}/{total} running",
                    done=running, total=total)

    def security(self, record: ClusterRecord) -> Any | None:
        tls = record.resources.get("tls")
        if tls is None and record.resources.get("scheduler") and record.settings.get("tls", True):
            tls = self._recover_tls(record)
        return ClusterTLS(**tls).security() if tls else None

    def _recover_tls(self, record: ClusterRecord) -> dict[str, str] | None:
        """Read the certificate back from the scheduler's user-data (a registry from elsewhere)."""
        ec2 = self._ec2(record)
        with aws(f"reading the certificate of {record.name}"):
            reply = ec2.describe_instance_attribute(InstanceId=record.resources["scheduler"], Attribute="userData")
        text = base64.b64decode(reply.get("UserData", {}).get("Value", "") or b"").decode(errors="replace")
        tls = userdata.certificate_from_user_data(text)
        if tls is None:
            return None
        record.resources["tls"] = {"cert": tls.cert, "key": tls.key}
        return record.resources["tls"]

    def alive(self, record: ClusterRecord) -> bool:
        scheduler = record.resources.get("scheduler")
        if not scheduler:
            return False
        return any(i["InstanceId"] == scheduler and i["State"]["Name"] in ("pending", "running")
                   for i in self._describe(record))

    def discover(self) -> list[Discovered]:
        from ...core import registry

        records, _ = registry.scan()
        regions = {r.settings.get("region") for r in records if r.backend == self.name}
        regions.add(session().region_name)
        found: dict[str, Discovered] = {}
        for region in sorted(r for r in regions if r):
            ec2 = client("ec2", region)
            with aws(f"listing clusters in {region}"):
                instances = _instances(ec2.describe_instances(Filters=[
                    {"Name": "tag-key", "Values": [TAG_CLUSTER_ID]},
                    {"Name": "instance-state-name", "Values": LIVE_STATES}]))
                groups = ec2.describe_security_groups(Filters=[{"Name": "tag-key", "Values": [TAG_CLUSTER_ID]}])
            for inst in instances:
                item = self._discovered(found, region, inst.get("Tags", []), inst.get("LaunchTime"))
                if _tag(inst, TAG_ROLE) == "scheduler":
                    if inst["State"]["Name"] not in ("pending", "running"):
                        continue  # stopping or stopped: the cluster is dead, its tags still find it
                    item.resources["scheduler"] = inst["InstanceId"]
                    item.resources["scheduler_ip"] = inst.get("PrivateIpAddress")
                    ip = inst.get("PublicIpAddress") or inst.get("PrivateIpAddress")
                    if ip:
                        protocol = _tag(inst, TAG_PROTOCOL) or "tls"
                        item.scheduler_address = f"{protocol}://{ip}:{userdata.SCHEDULER_PORT}"
                        item.dashboard_link = f"http://{ip}:{userdata.DASHBOARD_PORT}/status"
                else:
                    item.resources["workers"][inst["InstanceId"]] = {"spot": inst.get("InstanceLifecycle") == "spot"}
            for group in groups.get("SecurityGroups", []):
                item = self._discovered(found, region, group.get("Tags", []), None)
                item.resources["security_group"] = group["GroupId"]
        return list(found.values())

    def _discovered(self, found: dict[str, Discovered], region: str, tags: list[dict[str, str]],
                    launched: Any) -> Discovered:
        values = {t["Key"]: t["Value"] for t in tags}
        cluster_id = values[TAG_CLUSTER_ID]
        if cluster_id not in found:
            found[cluster_id] = Discovered(
                name=values.get(TAG_CLUSTER, cluster_id), cluster_id=cluster_id, backend=self.name,
                resources={"region": region, "security_group": None, "scheduler": None, "workers": {}},
                created_at=launched.timestamp() if launched else None,
            )
        return found[cluster_id]

    # -- change ----------------------------------------------------------------------------
    def terminate(self, record: ClusterRecord) -> list[str]:
        ec2 = self._ec2(record)
        lines = []
        with aws(f"terminating {record.name}"):
            ids = {i["InstanceId"] for i in self._describe(record) if i["State"]["Name"] != "terminated"}
            if ids:
                ec2.terminate_instances(InstanceIds=sorted(ids))
                self._wait_terminated(ec2, sorted(ids))
                lines.append(f"terminated {len(ids)} instance(s)")
            groups = {g["GroupId"] for g in ec2.describe_security_groups(Filters=[
                {"Name": f"tag:{TAG_CLUSTER_ID}", "Values": [record.cluster_id]}])["SecurityGroups"]}
            for group in sorted(groups):
                self._delete_group(ec2, group)
                lines.append(f"deleted security group {group}")
        return lines or ["nothing left on AWS"]

    def _wait_terminated(self, ec2: Any, ids: list[str]) -> None:
        deadline = time.monotonic() + TERMINATE_WAIT
        while time.monotonic() < deadline:
            states = {i["State"]["Name"] for i in _instances(ec2.describe_instances(InstanceIds=ids))}
            if states <= {"terminated"}:
                return
            time.sleep(2.0)
        raise AwsError(f"Instances {ids} did not terminate within {TERMINATE_WAIT:g} s; run `down` again.")

    def _delete_group(self, ec2: Any, group: str) -> None:
        import botocore.exceptions

        deadline = time.monotonic() + 120
        while True:
            try:
                ec2.delete_security_group(GroupId=group)
                return
            except botocore.exceptions.ClientError as exc:
                if error_code(exc) == "InvalidGroup.NotFound":
                    return
                # Network interfaces of terminated instances take a moment to go away.
                if error_code(exc) != "DependencyViolation" or time.monotonic() > deadline:
                    raise
                time.sleep(3.0)

    def scale(self, record: ClusterRecord, workers: int, retire: Callable[[list[str]], None]) -> None:
        live = [i for i in self._describe(record)
                if _tag(i, TAG_ROLE) == "worker" and i["State"]["Name"] in ("pending", "running")]
        current = len(live)
        if workers > current:
            ec2 = self._ec2(record)
            added = self._run(ec2, record, "worker", workers - current, record.resources.get("scheduler_ip"))
            for inst in added:
                record.resources["workers"][inst["InstanceId"]] = {"spot": inst.get("InstanceLifecycle") == "spot"}
        elif workers < current:
            newest_first = sorted(live, key=lambda i: i["LaunchTime"], reverse=True)
            surplus = [i["InstanceId"] for i in newest_first[: current - workers]]
            retire(surplus)
            with aws(f"terminating surplus workers of {record.name}"):
                self._ec2(record).terminate_instances(InstanceIds=surplus)
            for instance_id in surplus:
                record.resources["workers"].pop(instance_id, None)

    def _console(self, record: ClusterRecord, instance_id: str) -> str:
        import botocore.exceptions

        try:
            reply = self._ec2(record).get_console_output(InstanceId=instance_id, Latest=True)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError):
            return ""
        return reply.get("Output") or ""  # botocore decodes the base64 itself

    def logs(self, record: ClusterRecord) -> dict[str, str]:
        out = {}
        for inst in sorted(self._describe(record), key=lambda i: (_tag(i, TAG_ROLE) != "scheduler", i["InstanceId"])):
            label = f"{_tag(inst, TAG_ROLE)} {inst['InstanceId']} ({inst['State']['Name']})"
            out[label] = self._console(record, inst["InstanceId"]) or "(no console output)"
        return out

