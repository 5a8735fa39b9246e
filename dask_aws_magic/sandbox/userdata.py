"""Decoding EC2 user-data and turning it into a command line."""

from __future__ import annotations

import base64
import binascii
import gzip
from typing import Any


def decode_user_data(value: Any) -> bytes | None:
    """The raw bytes of user-data as moto stores it (base64, maybe gzip-compressed)."""
    if value is None:
        return None
    if hasattr(value, "as_bytes"):
        encoded = value.as_bytes()
    elif isinstance(value, bytes):
        encoded = value
    else:
        encoded = str(value).encode()
    try:
        raw = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raw = encoded
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw


def script_argv(data: bytes, path: str) -> list[str] | None:
    """How to run user-data saved at `path`, or None if it is not a script (e.g. #cloud-config)."""
    if data.startswith(b"#!"):
        return [path]  # the kernel honours the #! line
    head = data.lstrip()[:64].lower()
    if head.startswith((b"#cloud-config", b"#include", b"#cloud-boothook", b"content-type:", b"mime-version:")):
        return None
    return ["/bin/bash", path]
