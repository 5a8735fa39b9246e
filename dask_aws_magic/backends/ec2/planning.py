"""What an EC2 cluster would be: sizes, images, zones, prices, and the settings
:meth:`.backend.EC2Backend.launch` uses, from AWS's answers (:mod:`.lookups`). Planning creates nothing."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from ...aws import pricing, secrets
from ...aws.network import PortRange
from ...aws.scopes import current_endpoint
from ...aws.session import credentials_available, default_region
from ...core.errors import AwsError
from ...core.units import parse_duration, parse_memory
from .. import dask_commands, software_sync
from ..base import Plan, PlannedResource
from . import lookups

if TYPE_CHECKING:
    from ...core.profiles import Profile

DEFAULT_SCHEDULER_TYPE = "t3.medium"
DEFAULT_WORKER_TYPE = "m6i.large"
DEFAULT_WORKERS = 2
DEFAULT_IDLE_TIMEOUT = "1h"
INGRESS = PortRange(dask_commands.SCHEDULER_PORT, dask_commands.DASHBOARD_PORT, "scheduler and dashboard")


def wants_ssh(roles: dict[str, dict[str, Any]]) -> bool:
    """SSH is opened (to the same range) when an instance gets a key pair."""
    return any(cfg.get("key_name") for cfg in roles.values())


def _where(profile: Profile) -> tuple[str, str | None]:
    """The region and credentials profile; one error saying everything missing for AWS to work here."""
    aws_profile = profile.data.get("aws_profile")
    region = profile.data.get("region") or default_region(aws_profile)
    missing = ([] if region else ["region"]) + ([] if credentials_available() else ["credentials"])
    if not missing:
        return str(region), aws_profile
    fixes = []
    if not region:
        fixes.append("add `region: us-east-1` (say) to the profile, or `--set region=us-east-1`")
    if "credentials" in missing:
        fixes.append("configure credentials with `aws configure` (or the AWS_ACCESS_KEY_ID and "
                     "AWS_SECRET_ACCESS_KEY variables, or `aws_profile:` naming a credentials profile)")
    what = {("region",): "region was", ("credentials",): "credentials were"}.get(
        tuple(missing), "region and no AWS credentials were")
    raise AwsError(
        f"No AWS {what} found for the profile {profile.name!r}: AWS is not set up here. To use AWS, "
        f"{'; and '.join(fixes)}. To try it without an AWS account, start the emulated AWS first: "
        "`%dask_cluster sandbox start`."
    )


def plan(profile: Profile, name: str, backend: str) -> Plan:
    """The plan of cluster ``name`` from ``profile``: every resource, its price, and the settings."""
    data = profile.data
    region, aws_profile = _where(profile)
    roles = {"scheduler": profile.role("scheduler"), "worker": profile.role("worker")}
    roles["scheduler"].setdefault("type", DEFAULT_SCHEDULER_TYPE)
    roles["worker"].setdefault("type", DEFAULT_WORKER_TYPE)
    network = data.get("network", {})
    zones = data.get("instance", {}).get("zones")
    found = lookups.gather(region, aws_profile, roles, zones, network)
    types = found.types
    worker = data.get("worker", {})
    count = worker.get("count", DEFAULT_WORKERS)
    wtype = types[roles["worker"]["type"]]
    nprocs = worker.get("nprocs", wtype["cores"])
    nthreads = worker.get("nthreads", wtype["threads_per_core"])
    memory = parse_memory(worker.get("memory")) or int(wtype["memory"] * 0.9 // nprocs)
    lifecycle = data.get("lifecycle", {})
    idle = parse_duration(lifecycle.get("idle_timeout", DEFAULT_IDLE_TIMEOUT))
    lifetime = parse_duration(lifecycle.get("max_lifetime"))
    cidr = found.cidr
    resources = [PlannedResource(
        "security-group", "network", 1, f"ports {INGRESS.first}-{INGRESS.last} from "
        f"{cidr}{', 22 from it too' if wants_ssh(roles) else ''}; all traffic inside")]
    notes = []
    for role, n in (("scheduler", 1), ("worker", count)):
        cfg = roles[role]
        itype = cfg["type"]
        price = pricing.on_demand(itype, region)
        zones_used = sorted({s["zone"] for s in found.subnets[role]})
        # The scheduler always runs on-demand (a spot interruption would end the cluster), so its
        # "with spot" cost is its on-demand one; the workers show what spot would cost them.
        spot = pricing.lowest(found.spot.get(itype, {}), zones_used) if role == "worker" else None
        if role == "worker" and spot is None:
            notes.append(f"no spot price known for {itype} in {', '.join(zones_used)}; the spot estimate "
                         "counts its on-demand price")
        detail = (f"{itype} ({types[itype]['vcpus']} vCPU, {types[itype]['memory'] / 2**30:.0f} GiB), "
                  f"{found.amis[role]}, {'zone' if len(zones_used) == 1 else 'zones'} {', '.join(zones_used)}"
                  f"{', spot with on-demand fallback' if cfg.get('spot') and role == 'worker' else ''}")
        resources.append(PlannedResource("instance", role, n, detail, hourly_cost=(price or 0.0) * n,
                                         spot_hourly_cost=None if spot is None else spot * n))
    tls = network.get("tls", True)
    for role in secrets.NODE_ROLES:
        resources.append(PlannedResource(
            "secret", role, 1, f"Secrets Manager: the {role}'s TLS identity and software.env, read at boot",
            hourly_cost=secrets.HOURLY_COST))
    resources.append(PlannedResource("secret", "client", 1, "Secrets Manager: the cluster's manifest (what proves "
                                     "its resources yours), and the client's identity for `attach` from another "
                                     "machine", hourly_cost=secrets.HOURLY_COST))
    for role in (role for role, cfg in roles.items() if not cfg.get("iam_instance_profile")):
        resources.append(PlannedResource("iam-role", role, 1, f"instance role and profile that may read the {role}'s "
                                         "secret, nothing else"))
    if roles["scheduler"].get("spot"):
        notes.append("the scheduler runs on-demand whatever `spot` says: a spot interruption would end the cluster")
    notes = [
        f"region {region}{f' (AWS credentials profile {aws_profile})' if aws_profile else ''}; "
        f"prices: {pricing.source_note()}",
        "TLS on: a per-cluster CA whose key is discarded; the dashboard is https"
        if tls else "TLS OFF: traffic is unencrypted",
        f"idle timeout {idle:g} s (no tasks and no clients), then every instance terminates itself"
        if idle else "no idle timeout: the cluster runs until `down` or max_lifetime",
        f"max lifetime {lifetime:g} s, enforced on the instances" if lifetime else "no max lifetime",
        *notes,
    ]
    notes += [f"no list price known for {itype}; its cost shows as 0"
              for itype in types if pricing.on_demand(itype, region) is None]
    software = data.get("software", {})
    if software.get("image") and software.get("pip"):
        notes.append("software.pip is ignored with software.image: put the packages in the image")
    machines = _software(software)
    borrowed = "instance.iam_instance_profile" if any(cfg.get("iam_instance_profile") for cfg in roles.values()) \
        else None
    sync = software_sync.plan(software, backend=backend, python=machines["python"], arch=wtype["arch"],
                              region=region, owner=found.owner, borrowed=borrowed)
    resources += sync.resources
    notes += sync.notes
    machines.update(sync=sync.settings, pip=[] if sync.settings else machines["pip"])  # sync installs software.pip
    if cidr.endswith("/0"):
        notes.append(f"WARNING: the scheduler is open to {cidr}, i.e. to anyone")
    settings = {
        "region": region, "aws_profile": aws_profile, "count": count, "ingress_cidr": cidr, "tls": tls,
        "idle_timeout": idle, "max_lifetime": lifetime, "amis": found.amis, "roles": roles,
        "nprocs": nprocs, "nthreads": nthreads, "memory": memory,
        "use_private_ip": network.get("use_private_ip", False), "software": machines,
        "vpc": found.vpc, "subnets": found.subnets, "root_devices": found.root_devices,
    }
    if current_endpoint():
        settings["endpoint_url"] = current_endpoint()  # the sandbox (or a proxy): where to find it again
    return Plan(name=name, backend=backend, profile=profile.name, workers=count, owner=found.owner,
                threads_per_worker=nthreads,
                memory_per_worker=memory, processes_per_worker=nprocs, resources=resources, notes=notes,
                settings=settings)


def _software(software: dict[str, Any]) -> dict[str, Any]:
    """What the machines run (instances, tasks): this kernel's Python and dask unless the profile pins others (read
    from the installed packages' metadata: importing distributed here would cost a second)."""
    from importlib.metadata import version

    return {
        "python": software.get("python", f"{sys.version_info.major}.{sys.version_info.minor}"),
        "dask": software.get("dask", version("dask")),
        "distributed": software.get("dask", version("distributed")),  # released together, same version
        "pip": software.get("pip", []), "image": software.get("image"), "env": software.get("env", {}),
    }
