"""Spot prices as EC2 gives them: the price in effect in each zone at StartTime (moto answers one
static price stamped 2006). A type's price is a third of its on-demand list price unless set."""

from __future__ import annotations

import datetime
import threading
from typing import Any

from ._patch import Patches

SPOT_SHARE = 1 / 3  # spot usually costs a third to a half of on-demand


class SpotPrices:
    """Spot prices per type (and zone), settable by tests; unknown types have no spot price."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._set: dict[tuple[str, str | None], float | None] = {}

    def set(self, instance_type: str, price: float | None, zone: str | None = None) -> None:
        with self._lock:
            self._set[(instance_type, zone)] = price

    def price(self, instance_type: str, zone: str, region: str) -> float | None:
        with self._lock:
            for key in ((instance_type, zone), (instance_type, None)):
                if key in self._set:
                    return self._set[key]
        from ..aws.pricing import on_demand

        listed = on_demand(instance_type, region)
        return None if listed is None else round(listed * SPOT_SHARE, 4)


def patch_spot_prices(patches: Patches, prices: SpotPrices) -> None:
    """Answer DescribeSpotPriceHistory from ``prices``: with a StartTime, the price in effect then
    (stamped an hour before); without one, the whole history, newest first (two months ago the
    price was half what it is now)."""
    from moto.core.responses import ActionResult
    from moto.ec2.responses.spot_instances import SpotInstances

    def describe_spot_price_history(response: Any) -> ActionResult:
        types = response._get_param("InstanceTypes", [])
        offerings = response.ec2_backend.describe_spot_price_history(types, response._filters_from_querystring())
        start = response._get_param("StartTime")
        now = datetime.datetime.now(datetime.timezone.utc)
        stamps = [(now - datetime.timedelta(hours=1), 1.0)]
        if not start:
            stamps.append((now - datetime.timedelta(days=60), 0.5))
        history = []
        for stamp, share in stamps:
            for offering in offerings:
                price = prices.price(offering["InstanceType"], offering["Location"], response.region)
                if price is None:
                    continue
                history.append({"InstanceType": offering["InstanceType"], "ProductDescription": "Linux/UNIX",
                                "SpotPrice": f"{price * share:.6f}", "AvailabilityZone": offering["Location"],
                                "Timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%S.000Z")})
        return ActionResult({"SpotPriceHistory": history})

    patches.set(SpotInstances, "describe_spot_price_history", describe_spot_price_history)
