"""Loopback addresses for emulated instances, patched into moto's IP helpers."""

from __future__ import annotations

import ipaddress
import itertools
import random
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ._patch import Patches

# 127.0.0.0/16 is left alone: 127.0.0.1 and friends are used by the host.
_FIRST = int(ipaddress.IPv4Address("127.1.0.0"))
_LAST = int(ipaddress.IPv4Address("127.255.255.255"))


class LoopbackAllocator:
    """Hands out unique 127.X.Y.Z addresses (X >= 1, Z not 0 or 255), process-wide."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Start in a random 127.X.0.0/16 so that two processes running sandboxes at once
        # (a test run beside a demo) rarely hand out the same address.
        start = _FIRST + random.randrange(0, 250) * 65536
        self._counter: Iterator[int] = itertools.count(start)

    def next(self) -> str:
        with self._lock:
            while True:
                value = next(self._counter)
                if value > _LAST:
                    self._counter = itertools.count(_FIRST)
                    continue
                if value & 0xFF not in (0, 255):
                    return str(ipaddress.IPv4Address(value))


ALLOCATOR = LoopbackAllocator()


def _moto_modules() -> list[Any]:
    return [m for name, m in list(sys.modules.items()) if name.startswith("moto.") and m]


def _replace_everywhere(patches: Patches, original: Callable[..., Any], new: Callable[..., Any]) -> None:
    """Replace `original` in every moto module that imported it by name."""
    for module in _moto_modules():
        for attr, value in list(vars(module).items()):
            if value is original:
                patches.set(module, attr, new)


def patch_moto_ips(patches: Patches) -> None:
    """Make moto give instances loopback IPs, with public IP == private IP."""
    # Import the modules that bind the helpers so they are in sys.modules.
    import moto.ec2.models.elastic_network_interfaces as eni_mod
    import moto.ec2.models.instances  # noqa: F401
    import moto.ec2.models.subnets as subnets_mod
    import moto.ec2.utils as ec2_utils
    import moto.ecs.models  # noqa: F401

    orig_private = ec2_utils.random_private_ip
    orig_public = ec2_utils.random_public_ip

    def random_private_ip(cidr: str | None = None, ipv6: bool = False) -> str:
        if ipv6:
            return orig_private(cidr, ipv6)
        return ALLOCATOR.next()

    def random_public_ip() -> str:
        return ALLOCATOR.next()

    _replace_everywhere(patches, orig_private, random_private_ip)
    _replace_everywhere(patches, orig_public, random_public_ip)

    def get_available_subnet_ip(self: Any, instance: Any) -> str:
        ip = ALLOCATOR.next()
        self._subnet_ips[ip] = instance
        return ip

    patches.set(subnets_mod.Subnet, "get_available_subnet_ip", get_available_subnet_ip)

    nic_cls = eni_mod.NetworkInterface

    def check_auto_public_ip(self: Any) -> None:
        if self.public_ip_auto_assign and str(self.public_ip_auto_assign).lower() == "true":
            self.public_ip = self.private_ip_address or ALLOCATOR.next()

    patches.set(nic_cls, "check_auto_public_ip", check_auto_public_ip)
