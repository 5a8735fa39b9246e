"""Durations and memory sizes as profiles write them (``'20m'``, ``'4GiB'``)."""

from __future__ import annotations

from typing import Any


def parse_duration(value: Any) -> float:
    """Seconds from ``30``, ``'30s'``, ``'20m'``, ``'2h'``; 0 for ``off``/None."""
    if value in (None, "off", False):
        return 0.0
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text)


def parse_memory(value: Any) -> int | None:
    """Bytes from ``'4GiB'``, ``'512MB'`` or an int; None for ``auto``/None."""
    if value in (None, "auto"):
        return None
    if isinstance(value, int):
        return value
    from dask.utils import parse_bytes

    return int(parse_bytes(str(value)))
