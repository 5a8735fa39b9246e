"""Cost estimates: on-demand list prices shipped with the package, spot prices asked of EC2."""

from __future__ import annotations

import json
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


def spot(ec2: Any, instance_type: str) -> float | None:
    """The lowest current spot price across the region's zones (one API call), or None."""
    history = ec2.describe_spot_price_history(
        InstanceTypes=[instance_type], ProductDescriptions=["Linux/UNIX"], MaxResults=20,
    ).get("SpotPriceHistory", [])
    prices = [float(h["SpotPrice"]) for h in history if h.get("InstanceType") == instance_type]
    return min(prices) if prices else None


def source_note() -> str:
    return _table()["note"]
