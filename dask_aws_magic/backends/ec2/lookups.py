"""What planning asks AWS before a launch, asked in parallel threads: instance types, default
images and their root devices, spot prices, subnets, and the caller's address range. Answers that do
not change (instance types, the default images) are kept for the process, per region, credentials
and endpoint."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from ...aws import identity, pricing
from ...aws.errors import error_code, explain
from ...aws.network import caller_cidr, check_cidr
from ...aws.scopes import current_endpoint
from ...aws.session import aws, client
from ...aws.tags import describe_all
from ...core.errors import ProfileError
from . import placement

AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch}"
ARCHITECTURES = ("x86_64", "arm64")
T = TypeVar("T")

_cache: dict[tuple[Any, ...], Any] = {}
_cache_lock = threading.Lock()


def _kept(key: tuple[Any, ...], make: Callable[[], T]) -> T:
    """``make()``, once per process for ``key`` (and the endpoint in use)."""
    key = (*key, current_endpoint())
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    value = make()
    with _cache_lock:
        _cache[key] = value
    return value


def forget() -> None:
    """Forget the answers kept for the process (a benchmark counting a first ``up``'s calls)."""
    with _cache_lock:
        _cache.clear()


@dataclass
class Answers:
    """What AWS said, for one plan."""

    types: dict[str, dict[str, Any]]
    amis: dict[str, str]  # role -> image
    root_devices: dict[str, str]  # role -> the image's root device name (only when root_volume_gb is set)
    spot: dict[str, dict[str, float]]  # type -> zone -> USD per hour
    cidr: str
    owner: str  # the caller's ARN: the owner tag
    vpc: str
    subnets: dict[str, list[placement.Subnet]]  # role -> where its instances may go, in order


def gather(region: str, aws_profile: str | None, roles: dict[str, dict[str, Any]], zones: list[str] | None,
           network: dict[str, Any]) -> Answers:
    """Every look-up at once; the first failure (an explained :class:`AwsError` or a ProfileError) is raised."""
    ec2 = client("ec2", region, aws_profile)
    names = sorted({cfg["type"] for cfg in roles.values()})

    def guarded(doing: str, call: Callable[[], T]) -> Callable[[], T]:
        def run() -> T:
            with aws(doing):
                return call()
        return run

    with ThreadPoolExecutor(max_workers=6) as pool:
        types = pool.submit(_kept, ("types", region, aws_profile, tuple(names)), lambda: instance_types(ec2, names))
        images: Future[dict[str, str]] | None = None
        if any(not cfg.get("ami") for cfg in roles.values()):
            images = pool.submit(guarded("looking up the default AMI", lambda: _kept(
                ("amis", region, aws_profile), lambda: default_amis(client("ssm", region, aws_profile)))))
        spot = pool.submit(guarded("reading spot prices", lambda: pricing.spot_prices(ec2, names)))
        cidr = pool.submit(_cidr, network)
        owner = pool.submit(identity.owner, region, aws_profile)
        by_network: dict[tuple[Any, Any], Future[tuple[str, list[placement.Subnet]]]] = {}
        wheres = {}
        for role, cfg in roles.items():  # one look-up when the roles share their network settings
            key = (cfg.get("subnet_id"), cfg.get("vpc_id"))
            if key not in by_network:
                by_network[key] = pool.submit(guarded("looking up the subnets", lambda cfg=cfg: placement.candidates(
                    ec2, cfg, zones)))
            wheres[role] = by_network[key]
        known = types.result()
        by_arch = images.result() if images else {}
        amis = {role: cfg.get("ami") or _default_ami(by_arch, known[cfg["type"]]["arch"], region)
                for role, cfg in roles.items()}
        sized = {role: amis[role] for role, cfg in roles.items() if cfg.get("root_volume_gb")}
        devices = pool.submit(guarded("reading the root device of the AMI", lambda: root_devices(ec2, sized)))
        placed = {role: future.result() for role, future in wheres.items()}
        vpcs = {vpc for vpc, _ in placed.values()}
        if len(vpcs) > 1:
            raise ProfileError(f"The scheduler and the workers are in different VPCs ({', '.join(sorted(vpcs))}): "
                               "give `scheduler` and `worker` subnets (or `vpc_id`) of one VPC.")
        return Answers(types=known, amis=amis, root_devices=devices.result(), spot=spot.result(),
                       cidr=cidr.result(), owner=owner.result(), vpc=vpcs.pop(),
                       subnets={role: s for role, (_, s) in placed.items()})


def _default_ami(by_arch: dict[str, str], arch: str, region: str) -> str:
    if arch not in by_arch:
        raise ProfileError(f"AWS publishes no default {arch} image in {region}: set `instance.ami`.")
    return by_arch[arch]


def _cidr(network: dict[str, Any]) -> str:
    if network.get("ingress_cidr"):
        return check_cidr(network["ingress_cidr"])
    return caller_cidr(private=network.get("use_private_ip", False))


def instance_types(ec2: Any, names: list[str]) -> dict[str, dict[str, Any]]:
    """vCPUs, cores, threads per core, memory (bytes) and architecture of each type in ``names``."""
    import botocore.exceptions

    try:
        pages = ec2.get_paginator("describe_instance_types").paginate(InstanceTypes=names)
        items = [item for item in pages.search("InstanceTypes[]") if item]
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) in ("InvalidInstanceType", "InvalidParameterValue"):
            raise ProfileError(
                f"An instance type in the profile is not offered in this region ({names}): fix "
                "`instance.type`, `scheduler.type` or `worker.type` (e.g. m6i.large)."
            ) from None
        raise explain(exc, "describing instance types") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise explain(exc, "describing instance types") from None
    found = {}
    for item in items:
        vcpu = item["VCpuInfo"]
        found[item["InstanceType"]] = {
            "vcpus": vcpu["DefaultVCpus"],
            "cores": vcpu.get("DefaultCores", vcpu["DefaultVCpus"]),
            "threads_per_core": vcpu.get("DefaultThreadsPerCore", 1),
            "memory": item["MemoryInfo"]["SizeInMiB"] * 2**20,
            "arch": "arm64" if "arm64" in item["ProcessorInfo"]["SupportedArchitectures"] else "x86_64",
        }
    missing = set(names) - set(found)
    if missing:
        raise ProfileError(f"Unknown instance type(s) {sorted(missing)}: fix `instance.type`, "
                           "`scheduler.type` or `worker.type` (e.g. m6i.large).")
    return found


def default_amis(ssm: Any) -> dict[str, str]:
    """The latest Amazon Linux 2023 image of each architecture, from AWS's public SSM parameters
    (one call for both, so it need not wait for the instance types)."""
    names = {AMI_PARAMETER.format(arch=arch): arch for arch in ARCHITECTURES}
    reply = ssm.get_parameters(Names=list(names))
    return {names[p["Name"]]: p["Value"] for p in reply.get("Parameters", [])}


def root_devices(ec2: Any, amis: dict[str, str]) -> dict[str, str]:
    """The root device name of each role's image (``/dev/xvda`` on Amazon Linux, ``/dev/sda1`` on Ubuntu)."""
    if not amis:
        return {}
    images = describe_all(ec2, "describe_images", "Images[]", ImageIds=sorted(set(amis.values())))
    device = {image["ImageId"]: image.get("RootDeviceName") for image in images}
    missing = sorted(set(amis.values()) - set(device))
    if missing:
        raise ProfileError(f"The image(s) {missing} do not exist in this region: fix `instance.ami`.")
    return {role: device[ami] or "/dev/xvda" for role, ami in amis.items()}
