"""Identify which AWS operation an incoming HTTP request is, and its parameters."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import parse_qsl

_CREDENTIAL = re.compile(r"Credential=[^/,\s]+/\d{8}/([^/]+)/([^/]+)/aws4_request")


@dataclass
class AwsRequest:
    """What the sandbox needs to know about one request."""

    service: str
    action: str
    protocol: str  # "query", "ec2", "json", "rest-json" or "rest-xml"
    params: dict[str, str] = field(default_factory=dict)
    region: str | None = None  # from the signature's credential scope

    @property
    def key(self) -> str:
        return f"{self.service}:{self.action}"


def parse_request(environ: dict[str, Any], body: bytes) -> AwsRequest | None:
    """Return the operation of a WSGI request, or None for non-AWS paths (moto's own API)."""
    path = environ.get("PATH_INFO", "")
    if path.startswith("/moto-api"):
        return None
    query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
    service, region = _scope(environ, query)
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        params = _flatten(_json(body))
        return AwsRequest(service, target.rsplit(".", 1)[-1], "json", params, region)
    params = dict(query)
    if "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", ""):
        params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    if "Action" in params:
        return AwsRequest(service, params["Action"], "ec2" if service == "ec2" else "query", params, region)
    method = environ.get("REQUEST_METHOD", "GET")
    headers = frozenset(k[5:].replace("_", "-").lower() for k in environ if k.startswith("HTTP_"))
    action, protocol = _rest_operation(service, method, path, tuple(sorted(query.items())), headers)
    if protocol == "rest-json":
        params.update(_flatten(_json(body)))
    return AwsRequest(service, action, protocol, params, region)


def _scope(environ: dict[str, Any], query: dict[str, str]) -> tuple[str, str | None]:
    """The service and region the request was signed for."""
    auth = environ.get("HTTP_AUTHORIZATION", "") or query.get("X-Amz-Credential", "")
    match = _CREDENTIAL.search(auth.replace("%2F", "/"))
    if match:
        return match.group(2), match.group(1)
    host = environ.get("HTTP_HOST", "")
    return (host.split(".", 1)[0] if "amazonaws" in host else "unknown"), None


def _json(body: bytes) -> Any:
    try:
        return json.loads(body or b"{}")
    except ValueError:
        return {}


def _flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """Flatten JSON into query-protocol style names: `A.B`, lists as `A.1`, `A.2`."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = ((str(i), v) for i, v in enumerate(value, 1))
    else:
        return {prefix: value if isinstance(value, str) else json.dumps(value)} if prefix else {}
    out: dict[str, str] = {}
    for name, item in items:
        out.update(_flatten(item, f"{prefix}.{name}" if prefix else str(name)))
    return out


def _rest_operation(
    service: str,
    method: str,
    path: str,
    query: tuple[tuple[str, str], ...],
    headers: frozenset[str] = frozenset(),
) -> tuple[str, str]:
    """Match a REST request against botocore's model of the service."""
    routes, protocol = _routes(service)
    query_dict = dict(query)
    best: tuple[int, str] | None = None
    for route_method, pattern, required, required_headers, score, name in routes:
        if route_method != method or not pattern.fullmatch(path) or not required_headers <= headers:
            continue
        query_ok = all(k in query_dict and (v is None or query_dict[k] == v) for k, v in required)
        if query_ok and (best is None or score > best[0]):
            best = (score, name)
    return (best[1] if best else method), protocol


_Route = tuple[str, re.Pattern[str], list[tuple[str, "str | None"]], frozenset[str], int, str]


@cache
def _routes(service: str) -> tuple[list[_Route], str]:
    try:
        import botocore.session

        model = botocore.session.get_session().get_service_model(service)
    except Exception:
        return [], "rest-xml"
    routes = []
    for name in model.operation_names:
        operation = model.operation_model(name)
        http = operation.http
        shape = operation.input_shape
        required_headers = frozenset(
            shape.members[m].serialization.get("name", m).lower()
            for m in (shape.required_members if shape else [])
            if shape.members[m].serialization.get("location") == "header"
        )
        uri = http.get("requestUri", "/")
        path, _, qs = uri.partition("?")
        regex = re.sub(
            r"\\\{[^}]+?\\\}",
            lambda m: ".+" if m.group(0).endswith("+\\}") else "[^/]+",
            re.escape(path),
        )
        required = [(k, v or None) for k, v in parse_qsl(qs, keep_blank_values=True)]
        literal = len(re.sub(r"\{[^}]+\}", "", path))
        score = literal + 100 * (len(required) + len(required_headers))
        routes.append((http.get("method", "GET"), re.compile(regex + "/?"), required, required_headers, score, name))
    return routes, model.protocol
