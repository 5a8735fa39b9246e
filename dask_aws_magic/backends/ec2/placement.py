"""Where a cluster's instances go: the subnets of the allowed availability zones, in the order a
launch tries them, and whether each gives its instances a public address.

The allowed zones are ``instance.zones`` when the profile names them, else the pinned subnet's
zone (``subnet_id``), else every zone of the VPC (the default VPC unless ``vpc_id``). A capacity
failure moves to another subnet of those zones only: workers in another zone than their scheduler
pay for every byte that crosses (and data-heavy Dask moves many).
"""

from __future__ import annotations

from typing import Any

from ...aws.tags import describe_all
from ...core.errors import ProfileError

Subnet = dict[str, Any]  # {"id", "zone", "public"}: JSON, kept in the plan's settings


def _subnet(item: dict[str, Any]) -> Subnet:
    return {"id": item["SubnetId"], "zone": item["AvailabilityZone"], "public": bool(item.get("MapPublicIpOnLaunch"))}


def _zone_filter(zones: list[str] | None) -> list[dict[str, Any]]:
    return [{"Name": "availability-zone", "Values": zones}] if zones else []


def candidates(ec2: Any, cfg: dict[str, Any], zones: list[str] | None) -> tuple[str, list[Subnet]]:
    """The VPC and the subnets a role's instances may use, the pinned subnet first, then by zone."""
    pinned, vpc = cfg.get("subnet_id"), cfg.get("vpc_id")
    first: Subnet | None = None
    if pinned:
        item = describe_all(ec2, "describe_subnets", "Subnets[]", SubnetIds=[pinned])[0]
        first, vpc = _subnet(item), item["VpcId"]
        zones = zones or [first["zone"]]
    if vpc:
        found = describe_all(ec2, "describe_subnets", "Subnets[]",
                             Filters=[{"Name": "vpc-id", "Values": [vpc]}, *_zone_filter(zones)])
    else:
        found = describe_all(ec2, "describe_subnets", "Subnets[]",
                             Filters=[{"Name": "default-for-az", "Values": ["true"]}, *_zone_filter(zones)])
    others = sorted((_subnet(s) for s in found if s["SubnetId"] != pinned), key=lambda s: (s["zone"], s["id"]))
    subnets = ([first] if first else []) + others
    if not subnets:
        where = f"VPC {vpc}" if vpc else "the default VPC (the account may have none)"
        within = f" in the zones {', '.join(zones)}" if zones else ""
        raise ProfileError(f"No subnet was found in {where}{within}: set `instance.subnet_id` to a subnet of "
                           "this region, or fix `instance.zones`.")
    return vpc or found[0]["VpcId"], subnets


def nearest_first(subnets: list[Subnet], subnet_id: str | None, zone: str | None) -> list[Subnet]:
    """``subnets`` with ``subnet_id`` first, then those of ``zone`` (where the scheduler landed)."""
    return sorted(subnets, key=lambda s: (s["id"] != subnet_id, s["zone"] != zone))


def network(subnet: Subnet, security_group: str, want_public: bool) -> dict[str, Any]:
    """The RunInstances arguments that put an instance in ``subnet``: a public address is asked for
    explicitly when the subnet does not give one and the client reaches the cluster from outside."""
    if want_public and not subnet["public"]:
        return {"NetworkInterfaces": [{"DeviceIndex": 0, "SubnetId": subnet["id"], "Groups": [security_group],
                                       "AssociatePublicIpAddress": True, "DeleteOnTermination": True}]}
    return {"SubnetId": subnet["id"], "SecurityGroupIds": [security_group]}
