"""Reading request bodies: each field checked, a bad one named in a 400 answer."""

from __future__ import annotations

import json
from typing import Any

from tornado.web import HTTPError


class BadBody(HTTPError):
    """A 400 whose message names the field at fault."""

    def __init__(self, message: str):
        super().__init__(400, reason="Bad Request", log_message=message.replace("%", "%%"))
        self.message = message


MAX_DEPTH = 8  # objects and lists nested in a body; the deepest the API reads is 3 (overrides of a mapping)


def parse(raw: bytes) -> dict[str, Any]:
    """The JSON object of a body (an empty body is an empty object)."""
    if not raw.strip():
        return {}
    too_deep = BadBody(f"The body nests objects or lists more than {MAX_DEPTH} deep; no field of this API needs "
                       "that. Send the fields at the depth the API documents.")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadBody(f"The body is not valid JSON: {exc}.") from None
    except RecursionError:  # json's parser recurses once per level
        raise too_deep from None
    if _depth(data) > MAX_DEPTH:
        raise too_deep
    if not isinstance(data, dict):
        raise BadBody(f"The body must be a JSON object, not {type(data).__name__}.")
    return data


def _depth(data: Any) -> int:
    """How deep objects and lists nest in ``data`` (counted without recursion)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            deepest = max(deepest, depth)
            stack += [(item, depth + 1) for item in (value.values() if isinstance(value, dict) else value)]
    return deepest


def known(data: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        raise BadBody(f"Unknown field(s) {', '.join(map(repr, extra))}; allowed: {', '.join(sorted(allowed))}.")


def text(data: dict[str, Any], field: str, *, required: bool = False) -> str | None:
    value = data.get(field)
    if value is None:
        if required:
            raise BadBody(f"The field {field!r} is required.")
        return None
    if not isinstance(value, str) or not value:
        raise BadBody(f"The field {field!r} must be a non-empty string, not {value!r}.")
    return value


def count(data: dict[str, Any], field: str, *, required: bool = False, minimum: int = 0) -> int | None:
    value = data.get(field)
    if value is None:
        if required:
            raise BadBody(f"The field {field!r} is required.")
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BadBody(f"The field {field!r} must be a whole number >= {minimum}, not {value!r}.")
    return value


def overrides(data: dict[str, Any], field: str = "overrides") -> dict[str, Any] | None:
    """Profile overrides: an object of dotted keys (``{"worker.count": 2}``)."""
    value = data.get(field)
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) and k for k in value):
        raise BadBody(f"The field {field!r} must be an object of dotted profile keys, e.g. "
                      f'{{"worker.nthreads": 2}}, not {value!r}.')
    return value
