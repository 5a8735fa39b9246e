"""Cost estimates: on-demand list prices shipped with the package, spot prices asked of EC2."""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources
from typing import Any


@lru_cache(maxsize=1)
def _table() -> dict[str, Any]:
    return json.loads(resources.files("dask_aws_magic").joinpath("data/ec2_prices.json").read_text())


def on_demand(instance_type: str, region: str) -> float | None:
    """USD per hour for Linux on-demand, or None when the type is not in the table."""
    table = _table()
    base = table["us-east-1"].get(instance_type)
    if base is None:
        return None
    return round(base * table["region_factor"].get(region, table["region_factor"]["default"]), 4)


def spot_prices(ec2: Any, instance_types: Iterable[str]) -> dict[str, dict[str, float]]:
    """The current spot price of each type in each zone: {type: {zone: USD per hour}}. StartTime is
    now, so AWS answers the price in effect in each zone, not up to 90 days of history. A price of
    zero is no price: left out, so it shows as unknown."""
    import datetime

    pages = ec2.get_paginator("describe_spot_price_history").paginate(
        InstanceTypes=sorted(set(instance_types)), ProductDescriptions=["Linux/UNIX"],
        StartTime=datetime.datetime.now(datetime.timezone.utc),
    )
    found: dict[str, dict[str, float]] = {}
    for item in pages.search("SpotPriceHistory[]"):
        price = float((item or {}).get("SpotPrice") or 0)
        if price > 0:
            zones = found.setdefault(item["InstanceType"], {})
            zones[item["AvailabilityZone"]] = min(price, zones.get(item["AvailabilityZone"], price))
    return found


def lowest(by_zone: dict[str, float], zones: Iterable[str]) -> float | None:
    """The cheapest of ``by_zone`` in ``zones``, or None when none is known."""
    prices = [by_zone[zone] for zone in zones if zone in by_zone]
    return min(prices) if prices else None


def source_note() -> str:
    return _table()["note"]


# Fargate (Linux, x86_64) in us-east-1, USD: per vCPU-hour and per GB-hour of memory, on-demand and
# Spot (Spot prices move; these are typical of 2026). Other regions scaled as the EC2 prices are.
FARGATE = {
    "on-demand": {"vcpu": 0.04048, "gb": 0.004445},
    "spot": {"vcpu": 0.01334058, "gb": 0.00146489},
}


def fargate_hourly(vcpus: float, memory_gib: float, region: str, spot: bool = False) -> float:
    """USD per hour of one Fargate task of ``vcpus`` and ``memory_gib``, on-demand or on Fargate Spot."""
    rates = FARGATE["spot" if spot else "on-demand"]
    factor = _table()["region_factor"].get(region, _table()["region_factor"]["default"])
    return round((vcpus * rates["vcpu"] + memory_gib * rates["gb"]) * factor, 5)


def fargate_note() -> str:
    return ("Fargate list prices for Linux/x86 (USD per vCPU-hour and GB-hour, us-east-1 2026, scaled per "
            "region; Fargate Spot prices move): an estimate, not a quote")
