"""Who may reach a cluster: the caller's address range, and the cluster's own security group."""

from __future__ import annotations

import ipaddress
import os
import socket
import time
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple
from urllib.parse import urlparse

from ..core.errors import LaunchError
from .errors import error_code

CHECKIP_URL = "https://checkip.amazonaws.com"
IMDS_ADDRESS = "169.254.169.254"  # link-local, so on EC2 the route to it leaves by the VPC interface
SSH_PORT = 22
DELETE_GROUP_WAIT = 120.0  # seconds the network interfaces of terminated instances may hold a group
DELETE_GROUP_RETRY = 3.0


class PortRange(NamedTuple):
    """TCP ports ``first``..``last`` opened to the caller, with what they are for."""

    first: int
    last: int
    purpose: str


def check_cidr(cidr: str) -> str:
    """``cidr`` normalised, or a :class:`LaunchError` naming ``network.ingress_cidr``."""
    try:
        return str(ipaddress.ip_network(cidr, strict=False))
    except ValueError:
        raise LaunchError(
            f"`network.ingress_cidr` is {cidr!r}, which is not an IPv4 network; write it like 203.0.113.7/32."
        ) from None


def _local_address_towards(host: str) -> str:
    """This machine's address on the route to ``host`` (a UDP connect sends no packet)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((socket.gethostbyname(host), 9))
        return probe.getsockname()[0]


def caller_cidr(endpoint_url: str | None = None, timeout: float = 3.0, private: bool = False) -> str:
    """The /32 of the address this machine reaches the cluster from.

    With a custom endpoint (``AWS_ENDPOINT_URL``: a VPC endpoint, a proxy, the sandbox) or with
    ``private`` (a notebook inside the VPC), it is this machine's own address on the route there,
    found without sending traffic. Otherwise it is the public address AWS sees, asked of
    checkip.amazonaws.com.
    """
    endpoint_url = endpoint_url if endpoint_url is not None else os.environ.get("AWS_ENDPOINT_URL")
    try:
        if endpoint_url:
            return f"{_local_address_towards(urlparse(endpoint_url).hostname or '127.0.0.1')}/32"
        if private:
            return f"{_local_address_towards(IMDS_ADDRESS)}/32"
    except OSError as exc:
        raise LaunchError(
            f"Could not find this machine's address to open the scheduler to it ({exc}). "
            "Set `network.ingress_cidr` in the profile (e.g. `--set network.ingress_cidr=10.0.0.0/16`)."
        ) from None
    try:
        with urllib.request.urlopen(CHECKIP_URL, timeout=timeout) as reply:  # noqa: S310 (fixed https URL)
            address = reply.read().decode().strip()
        ipaddress.ip_address(address)
    except (OSError, ValueError) as exc:
        raise LaunchError(
            f"Could not find this machine's public address to open the scheduler to it ({exc}). "
            "Set `network.ingress_cidr` in the profile (e.g. `--set network.ingress_cidr=203.0.113.7/32`)."
        ) from None
    return f"{address}/32"


def create_security_group(ec2: Any, name: str, description: str, tags: list[dict[str, str]],
                          vpc_id: str | None = None) -> str:
    """A new, tagged security group with no ingress yet (in the default VPC unless ``vpc_id``)."""
    return ec2.create_security_group(
        GroupName=name, Description=description,
        TagSpecifications=[{"ResourceType": "security-group", "Tags": tags}],
        **({"VpcId": vpc_id} if vpc_id else {}),
    )["GroupId"]


def ingress_rules(group: str, cidr: str, ports: Iterable[PortRange], ssh: bool = False) -> list[dict[str, Any]]:
    """All traffic between the group's members; ``ports`` (and SSH if asked) from ``cidr`` only."""
    rules: list[dict[str, Any]] = [
        {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": group, "Description": "inside the cluster"}]},
    ]
    opened = [*ports, PortRange(SSH_PORT, SSH_PORT, "ssh")] if ssh else list(ports)
    for port in opened:
        rules.append({"IpProtocol": "tcp", "FromPort": port.first, "ToPort": port.last,
                      "IpRanges": [{"CidrIp": cidr, "Description": port.purpose}]})
    return rules


def authorize_ingress(ec2: Any, group: str, cidr: str, ports: Iterable[PortRange], ssh: bool = False) -> None:
    """Open the cluster's group as :func:`ingress_rules` says, in one call."""
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=ingress_rules(group, cidr, ports, ssh))


def delete_security_group(ec2: Any, group: str, sleep: Callable[[float], None],
                          timeout: float = DELETE_GROUP_WAIT) -> bool:
    """Delete ``group``, retrying while terminated instances still hold it; False if it was gone already."""
    import botocore.exceptions

    deadline = time.monotonic() + timeout
    while True:
        try:
            ec2.delete_security_group(GroupId=group)
            return True
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) == "InvalidGroup.NotFound":
                return False
            if error_code(exc) != "DependencyViolation" or time.monotonic() > deadline:
                raise
        sleep(DELETE_GROUP_RETRY)
