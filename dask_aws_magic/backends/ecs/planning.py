"""What an ECS or Fargate cluster would be: task sizes, image, capacity providers, network, prices,
and the settings :mod:`.backend` launches from. Planning creates nothing."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ...aws import identity, pricing, secrets
from ...aws.network import PortRange, caller_cidr, check_cidr
from ...aws.scopes import current_endpoint
from ...aws.session import aws, client
from ...core.errors import ProfileError
from ...core.units import parse_duration, parse_memory
from .. import dask_commands, software_sync
from ..base import Plan, PlannedResource
from ..ec2 import placement
from ..ec2.planning import _software, _where  # the same region and software rules as EC2
from . import images, sizes

if TYPE_CHECKING:
    from ...core.profiles import Profile

DEFAULT_WORKERS = 2
DEFAULT_IDLE_TIMEOUT = "1h"
DEFAULT_RETENTION = 7  # days CloudWatch keeps the logs
DEFAULT_INSTANCE_TYPE = "m6i.large"  # ecs: the container instances it creates
ECS_AMI_PARAMETER = "/aws/service/ecs/optimized-ami/amazon-linux-2023/{arch}recommended/image_id"
INGRESS = PortRange(dask_commands.SCHEDULER_PORT, dask_commands.DASHBOARD_PORT, "scheduler and dashboard")
FARGATE_PROVIDERS = ("FARGATE", "FARGATE_SPOT")
ECS_DEFAULT_SIZES = {"scheduler": (0.5, 1536), "worker": (1.0, 3584)}  # vCPU, MiB: two workers per m6i.large


def _strategy(ecs: dict[str, Any], role: str, spot: bool, fargate: bool) -> list[dict[str, Any]] | None:
    """The capacity-provider strategy of ``role``'s tasks (None: the EC2 launch type)."""
    given = (ecs.get(role) or {}).get("capacity_providers")
    if given:
        strategy = [{"capacityProvider": p["name"], "weight": p.get("weight", 1), "base": p.get("base", 0)}
                    for p in given]
        if fargate:
            wrong = [p["capacityProvider"] for p in strategy if p["capacityProvider"] not in FARGATE_PROVIDERS]
            if wrong:
                raise ProfileError(f"`ecs.{role}.capacity_providers` names {', '.join(wrong)}: Fargate tasks run on "
                                   f"FARGATE or FARGATE_SPOT only. Use those, or `backend: ecs` for your own.")
        return strategy
    if fargate:
        return [{"capacityProvider": "FARGATE_SPOT" if spot else "FARGATE", "weight": 1, "base": 0}]
    return None


def _instances_needed(tasks: list[tuple[float, int]], cpu: int, memory: int) -> int:
    """Container instances of ``cpu`` units and ``memory`` MiB that hold ``tasks`` (first fit, largest first)."""
    free: list[list[float]] = []
    for vcpus, mib in sorted(tasks, reverse=True):
        need = (vcpus * 1024, mib)
        if need[0] > cpu or need[1] > memory:
            raise ProfileError(f"A task of {vcpus:g} vCPU and {mib} MiB does not fit one container instance "
                               f"({cpu // 1024} vCPU, {memory} MiB for tasks): lower `ecs.scheduler`/`ecs.worker` "
                               "sizes, or pick a bigger `ecs.instances.type`.")
        slot = next((f for f in free if f[0] >= need[0] and f[1] >= need[1]), None)
        if slot is None:
            slot = [float(cpu), float(memory)]
            free.append(slot)
        slot[0] -= need[0]
        slot[1] -= need[1]
    return max(1, len(free))


def plan(profile: Profile, name: str, backend: str) -> Plan:
    """The plan of cluster ``name`` from ``profile`` for ``backend`` ("fargate" or "ecs")."""
    fargate = backend == "fargate"
    data = profile.data
    region, aws_profile = _where(profile)
    ecs = data.get("ecs", {})
    network = data.get("network", {})
    worker = data.get("worker", {})
    count = worker.get("count", DEFAULT_WORKERS)
    software = _software(data.get("software", {}))
    image = software["image"] or images.default_image(software["python"], software["dask"], software["distributed"])
    task_sizes = {}
    for role in ("scheduler", "worker"):
        section = dict(ecs.get(role) or {})
        if not fargate:
            section.setdefault("cpu", ECS_DEFAULT_SIZES[role][0])
            section.setdefault("memory", f"{ECS_DEFAULT_SIZES[role][1]}MiB")
        task_sizes[role] = sizes.task_size(section, role, fargate)
    strategies = {role: _strategy(ecs, role, bool(worker.get("spot")) and role == "worker", fargate)
                  for role in ("scheduler", "worker")}
    vcpus, memory_mib = task_sizes["worker"]
    nprocs = worker.get("nprocs", 1)
    nthreads = worker.get("nthreads", max(1, math.ceil(vcpus)))
    memory = parse_memory(worker.get("memory")) or int(memory_mib * 2**20 * 0.9 // nprocs)
    lifecycle = data.get("lifecycle", {})
    idle = parse_duration(lifecycle.get("idle_timeout", DEFAULT_IDLE_TIMEOUT))
    lifetime = parse_duration(lifecycle.get("max_lifetime"))
    instance = profile.role("scheduler")
    instances_cfg = dict(ecs.get("instances") or {})
    creates_instances = not fargate and not ecs.get("cluster")
    ec2 = client("ec2", region, aws_profile)

    with ThreadPoolExecutor(max_workers=5) as pool:
        owner = pool.submit(identity.owner, region, aws_profile)
        cidr = pool.submit(lambda: check_cidr(network["ingress_cidr"]) if network.get("ingress_cidr")
                           else caller_cidr(private=network.get("use_private_ip", False)))

        def subnets() -> tuple[str, list[placement.Subnet]]:
            with aws("looking up the subnets"):
                return placement.candidates(ec2, instance, data.get("instance", {}).get("zones"))

        where = pool.submit(subnets)
        types = ami = None
        if creates_instances:
            from ..ec2.lookups import instance_types

            itype = instances_cfg.get("type") or instance.get("type") or DEFAULT_INSTANCE_TYPE
            instances_cfg["type"] = itype
            types = pool.submit(instance_types, ec2, [itype])
            if not (instances_cfg.get("ami") or instance.get("ami")):
                ami = pool.submit(_ecs_ami, region, aws_profile, itype, ec2)
        vpc, subnet_list = where.result()
        found_owner, found_cidr = owner.result(), cidr.result()
        if creates_instances:
            assert types is not None
            info = types.result()[instances_cfg["type"]]
            instances_cfg["ami"] = instances_cfg.get("ami") or instance.get("ami") or (ami.result() if ami else None)
            needed = _instances_needed([task_sizes["scheduler"]] + [task_sizes["worker"]] * count,
                                       info["vcpus"] * 1024, int(info["memory"] / 2**20 * 0.94))
            instances_cfg.setdefault("count", needed)
            instances_cfg["vcpus"], instances_cfg["memory"] = info["vcpus"], info["memory"]

    tls = network.get("tls", True)
    resources = []
    if fargate or creates_instances:
        resources.append(PlannedResource("security-group", "network", 1, f"ports {INGRESS.first}-{INGRESS.last} "
                                         f"from {found_cidr}; all traffic inside"))
    for role, n in (("scheduler", 1), ("worker", count)):
        cpu, mib = task_sizes[role]
        strategy = strategies[role]
        providers = ", ".join(p["capacityProvider"] for p in strategy) if strategy else "EC2 container instances"
        detail = f"{cpu:g} vCPU, {mib / 1024:g} GiB, {providers}, image {image}"
        if fargate:
            spot = bool(strategy) and all(p["capacityProvider"] == "FARGATE_SPOT" for p in strategy or [])
            price = pricing.fargate_hourly(cpu, mib / 1024, region)
            spot_price = pricing.fargate_hourly(cpu, mib / 1024, region, spot=True) if role == "worker" else None
            resources.append(PlannedResource(  # the on-demand price, and what Spot would cost the workers
                "task", role, n, detail, hourly_cost=price * n,
                spot_hourly_cost=spot_price * n if spot and spot_price is not None else None))
        else:
            resources.append(PlannedResource("task", role, n, detail))
    if creates_instances:
        itype = instances_cfg["type"]
        price = pricing.on_demand(itype, region) or 0.0
        resources.append(PlannedResource(
            "instance", "container-instances", instances_cfg["count"],
            f"{itype} ({instances_cfg['vcpus']} vCPU, {instances_cfg['memory'] / 2**30:.0f} GiB) in an auto scaling "
            f"group, ECS-optimised image {instances_cfg['ami']}", hourly_cost=price * instances_cfg["count"]))
    resources.append(PlannedResource("ecs-cluster", "cluster", 1, f"reuses {ecs['cluster']}" if ecs.get("cluster")
                                     else "a new ECS cluster" + (" with FARGATE and FARGATE_SPOT" if fargate else "")))
    retention = ecs.get("log_retention_days", DEFAULT_RETENTION)
    resources.append(PlannedResource("log-group", "logs", 1, f"CloudWatch, kept {retention} days"
                                     + (" (and after `down`)" if ecs.get("keep_logs") else "")))
    resources.append(PlannedResource("iam-role", "execution", 1, f"uses {ecs['execution_role']}"
                                     if ecs.get("execution_role") else
                                     "task execution role: image pull, logs, the nodes' secret; nothing else"))
    resources.append(PlannedResource("secret", "nodes", 1, "Secrets Manager: the nodes' TLS identities and "
                                     "software.env, resolved by ECS", hourly_cost=secrets.HOURLY_COST))
    resources.append(PlannedResource("secret", "client", 1, "Secrets Manager: the cluster's manifest (what proves "
                                     "its resources yours), and the client's identity",
                                     hourly_cost=secrets.HOURLY_COST))
    if ecs.get("efs"):
        resources.append(PlannedResource("efs", "data", 1, f"EFS mounted at /data ({ecs['efs']})"
                                         if isinstance(ecs["efs"], str) else "a new EFS file system at /data"))
    notes = [
        f"region {region}{f' (AWS credentials profile {aws_profile})' if aws_profile else ''}; prices: "
        + (pricing.fargate_note() if fargate else pricing.source_note()),
        "TLS on: a per-cluster CA whose key is discarded; node identities reach the tasks through ECS secrets"
        if tls else "TLS OFF: traffic is unencrypted",
        f"idle timeout {idle:g} s (no tasks and no clients), then every task stops" if idle
        else "no idle timeout: the cluster runs until `down` or max_lifetime",
        f"max lifetime {lifetime:g} s, enforced in the tasks" if lifetime else "no max lifetime",
    ]
    if software["image"] and software["pip"]:
        notes.append("software.pip packages are installed when each task starts (slower): bake them into the image")
    if strategies["scheduler"] and any(p["capacityProvider"] == "FARGATE_SPOT" for p in strategies["scheduler"]):
        notes.append("WARNING: the scheduler on FARGATE_SPOT: a reclaim ends the cluster")
    if any(p["capacityProvider"] == "FARGATE_SPOT" for p in strategies["worker"] or []):
        notes.append("reclaimed Spot workers are replaced while the cluster runs")
    if not fargate and not creates_instances:
        notes.append(f"the tasks use the network of {ecs['cluster']}'s container instances: their own security "
                     f"groups decide who reaches the scheduler (ports {INGRESS.first}-{INGRESS.last})")
    if found_cidr.endswith("/0"):
        notes.append(f"WARNING: the scheduler is open to {found_cidr}, i.e. to anyone")
    sync = software_sync.plan(data.get("software", {}), backend=backend, python=software["python"],
                              arch="x86_64", region=region, owner=found_owner,
                              borrowed="ecs.task_role" if ecs.get("task_role") else None)
    resources += sync.resources
    notes += sync.notes
    if sync.settings:
        software = dict(software, sync=sync.settings, pip=[])  # sync installs software.pip
        resources.append(PlannedResource("iam-role", "task", 1, f"uses {ecs['task_role']}: it must be allowed to read "
                                         "the environment (see docs/ecs.md)" if ecs.get("task_role") else
                                         "task role: reads this cluster's environment in the S3 bucket; nothing else"))
    use_private = network.get("use_private_ip", False)
    settings = {
        "region": region, "aws_profile": aws_profile, "count": count, "ingress_cidr": found_cidr, "tls": tls,
        "idle_timeout": idle, "max_lifetime": lifetime, "nprocs": nprocs, "nthreads": nthreads, "memory": memory,
        "use_private_ip": use_private, "assign_public_ip": ecs.get("assign_public_ip", not use_private),
        "software": software, "image": image,
        "sizes": {role: {"cpu": c, "memory": m} for role, (c, m) in task_sizes.items()},
        "strategies": strategies, "cluster": ecs.get("cluster"), "vpc": vpc,
        "subnets": [s["id"] for s in subnet_list], "execution_role": ecs.get("execution_role"),
        "task_role": ecs.get("task_role"), "log_retention": retention, "keep_logs": bool(ecs.get("keep_logs")),
        "tags": dict(instance.get("tags") or {}), "efs": ecs.get("efs"),
        "platform_version": ecs.get("platform_version"),
        "instances": instances_cfg if creates_instances else None,
    }
    if current_endpoint():
        settings["endpoint_url"] = current_endpoint()
    return Plan(name=name, backend=backend, profile=profile.name, workers=count, owner=found_owner,
                threads_per_worker=nthreads, memory_per_worker=memory, processes_per_worker=nprocs,
                resources=resources, notes=notes, settings=settings)


def _ecs_ami(region: str, aws_profile: str | None, itype: str, ec2: Any) -> str:
    """The latest ECS-optimised Amazon Linux 2023 image for ``itype``'s architecture."""
    from ..ec2.lookups import instance_types

    arch = instance_types(ec2, [itype])[itype]["arch"]
    name = ECS_AMI_PARAMETER.format(arch="arm64/" if arch == "arm64" else "")
    with aws("looking up the ECS-optimised image"):
        found = client("ssm", region, aws_profile).get_parameters(Names=[name]).get("Parameters", [])
    if not found:
        raise ProfileError(f"AWS publishes no ECS-optimised {arch} image in {region}: set `ecs.instances.ami`.")
    return str(found[0]["Value"])
