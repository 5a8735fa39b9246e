"""Profiles: load (YAML or JSON), resolve ``extends``, apply ``--set`` overrides, validate.

A profile is a plain dict checked against ``schema/profile.schema.json``. Errors name the
file, the field and the fix.
"""

from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from . import data_scope, paths
from .errors import ProfileError
from .naming import check_name

BUILTIN: dict[str, dict[str, Any]] = {
    "local": {
        "description": "Scheduler and worker processes on this machine (no AWS account needed).",
        "backend": "local",
    },
    "ec2-small": {
        "description": "Two m6i.large workers on EC2, spot with on-demand fallback; works unchanged in the "
                       "AWS sandbox (`%dask_cluster sandbox start`).",
        "backend": "ec2",
        "scheduler": {"type": "t3.medium"},
        "worker": {"type": "m6i.large", "count": 2, "spot": True},
        "lifecycle": {"idle_timeout": "30m", "max_lifetime": "8h"},
    },
    "fargate-small": {
        "description": "Two Fargate Spot workers (2 vCPU, 8 GiB each), the scheduler on Fargate; works unchanged "
                       "in the AWS sandbox (`%dask_cluster sandbox start`).",
        "backend": "fargate",
        "worker": {"count": 2, "spot": True},
        "lifecycle": {"idle_timeout": "30m", "max_lifetime": "8h"},
    },
}
SUFFIXES = (".yaml", ".yml", ".json")
ROLES = ("scheduler", "worker")
INSTANCE_FIELDS = (
    "type", "ami", "spot", "root_volume_gb", "key_name", "iam_instance_profile",
    "subnet_id", "vpc_id", "tags",
)


@dataclass
class Profile:
    """A resolved, validated profile."""

    name: str
    data: dict[str, Any]
    source: str  # a file path, "built-in", or "the cell body"
    chain: list[str] = field(default_factory=list)  # the names it extends, nearest first

    @property
    def backend(self) -> str:
        return self.data.get("backend", "local")

    def role(self, role: str) -> dict[str, Any]:
        """Instance settings for ``role``: the common ``instance`` section overridden by the role's."""
        merged = dict(self.data.get("instance", {}))
        own = self.data.get(role, {})
        merged.update({k: v for k, v in own.items() if k in INSTANCE_FIELDS})
        tags = {**self.data.get("instance", {}).get("tags", {}), **own.get("tags", {})}
        if tags:
            merged["tags"] = tags
        return merged


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The JSON Schema shipped in the package."""
    text = resources.files("dask_aws_magic").joinpath("schema/profile.schema.json").read_text()
    return json.loads(text)


def schema_path() -> Path:
    """Path of the schema file, for editors (``# yaml-language-server: $schema=...``)."""
    return Path(str(resources.files("dask_aws_magic").joinpath("schema/profile.schema.json")))


def _yaml():
    import yaml

    return yaml


def parse_text(text: str, source: str) -> dict[str, Any]:
    """Parse a YAML or JSON profile body; raise :class:`ProfileError` naming ``source``."""
    yaml = _yaml()
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ProfileError(
            f"The profile in {source} is not valid YAML{where}: {problem}. "
            "Fix the indentation or quoting there (a profile is a mapping of `field: value` lines)."
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProfileError(
            f"The profile in {source} must be a mapping of fields (like `backend: local`), "
            f"not a {type(data).__name__}."
        )
    return data


def find_file(name: str) -> Path | None:
    """The user's profile file called ``name``, if any."""
    for suffix in SUFFIXES:
        candidate = paths.profiles_dir() / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def available() -> dict[str, str]:
    """Every profile name mapped to where it comes from (user files shadow built-ins)."""
    found = {name: "built-in" for name in BUILTIN}
    folder = paths.profiles_dir()
    if folder.is_dir():
        for entry in sorted(folder.iterdir()):
            if entry.suffix in SUFFIXES and entry.is_file():
                found[entry.stem] = str(entry)
    return found


def _raw(name: str) -> tuple[dict[str, Any], str]:
    file = find_file(name)
    if file is not None:
        try:
            text = file.read_text()
        except OSError as exc:
            raise ProfileError(f"The profile file {file} cannot be read: {exc.strerror}.") from None
        return parse_text(text, str(file)), str(file)
    if name in BUILTIN:
        return copy.deepcopy(BUILTIN[name]), "built-in"
    known = sorted(available())
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean `{close[0]}`?" if close else ""
    raise ProfileError(
        f"There is no profile named {name!r}.{hint} Known profiles: {', '.join(known)}. "
        f"Create {paths.profiles_dir() / (name + '.yaml')} or pass a profile as the body of "
        "a `%%dask_cluster up` cell."
    )


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``over`` onto ``base`` (mappings merge, everything else replaces)."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _resolve(data: dict[str, Any], source: str, seen: list[str]) -> tuple[dict[str, Any], list[str]]:
    parent = data.get("extends")
    if parent is None:
        return data, []
    if not isinstance(parent, str):
        raise ProfileError(f"In {source}, field `extends` must be the name of another profile.")
    check_name(parent, f"profile name in `extends` of {source}")  # never a path out of the profiles folder
    if parent in seen:
        cycle = " -> ".join([*seen, parent])
        raise ProfileError(f"Profiles extend each other in a circle ({cycle}). Remove one `extends`.")
    parent_data, parent_source = _raw(parent)
    resolved_parent, chain = _resolve(parent_data, parent_source, [*seen, parent])
    body = {k: v for k, v in data.items() if k != "extends"}
    return merge(resolved_parent, body), [parent, *chain]


def parse_overrides(items: Iterable[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """Turn ``["worker.count=8", "network.tls=false"]`` into a nested dict, values typed as YAML."""
    if not items:
        return {}
    if isinstance(items, Mapping):
        pairs = list(items.items())
    else:
        pairs = []
        for item in items:
            key, sep, raw = item.partition("=")
            if not sep or not key.strip():
                raise ProfileError(
                    f"The override {item!r} must look like KEY=VALUE with a dotted key, "
                    "e.g. `--set worker.count=8`."
                )
            try:
                value = _yaml().safe_load(raw) if raw.strip() else ""
            except Exception:
                value = raw
            pairs.append((key.strip(), value))
    out: dict[str, Any] = {}
    for key, value in pairs:
        parts = key.split(".")
        if _schema_at(parts).get("type") == "string" and not isinstance(value, str) and value is not None:
            value = str(next(raw for k, raw in _raw_pairs(items) if k == key))
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ProfileError(f"The override key {key!r} sets a field inside a value that is not a section.")
        node[parts[-1]] = value
    return out


def _raw_pairs(items: Iterable[str] | Mapping[str, Any]) -> list[tuple[str, Any]]:
    """``--set`` items as written (``3.10`` stays ``"3.10"`` where the field is a string)."""
    if isinstance(items, Mapping):
        return [(k, v) for k, v in items.items()]
    return [(k.strip(), raw) for k, _, raw in (item.partition("=") for item in items)]


def _field(path: Iterable[Any]) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _resolve_ref(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = schema()
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def _schema_at(path: list[Any]) -> dict[str, Any]:
    """The schema of the field at ``path`` ({} when there is none)."""
    node = schema()
    for part in path:
        if str(part).isdigit() and "items" in node:  # an entry of a list
            node = _resolve_ref(node["items"])
            continue
        node = _resolve_ref(node.get("properties", {}).get(part) or {})
    return node


@lru_cache(maxsize=1)
def _validator():
    import fastjsonschema

    return fastjsonschema.compile(schema())


def _unknown_fields(data: Any, path: list[str]) -> list[str]:
    """Every key anywhere in ``data`` that the schema does not know, with the closest known one."""
    node = _schema_at(path)
    known = node.get("properties")
    if not isinstance(data, dict) or known is None or node.get("additionalProperties", True) is not False:
        return []
    problems = []
    for key, value in data.items():
        if key in known:
            problems += _unknown_fields(value, [*path, key])
            continue
        close = difflib.get_close_matches(str(key), list(known), n=1)
        fix = f"did you mean `{close[0]}`?" if close else f"known fields: {', '.join(sorted(known))}"
        problems.append(f"field `{_field([*path, key])}` is not a profile field ({fix})")
    return problems


def _explain(error: Any) -> str:
    """One sentence for a fastjsonschema error: the field, its value, what it must be."""
    path = [str(p) for p in error.path[1:]]  # the first element is the name "data"
    field_name, value, rule = _field(path), error.value, error.rule
    wanted = error.rule_definition
    if rule == "type":
        problem = f"must be of type {wanted}"
    elif rule == "enum":
        problem = f"is not allowed; choose one of: {', '.join(map(str, wanted))}"
    elif rule == "minimum":
        problem = f"must be at least {wanted}"
    elif rule == "exclusiveMinimum":
        problem = f"must be greater than {wanted}"
    elif rule == "maximum":
        problem = f"must be at most {wanted}"
    elif rule == "propertyNames":
        problem = "has a name that is not allowed (letters, digits and _ only, not starting with a digit)"
    else:
        problem = "is not in the expected form"
    description = _schema_at(path).get("description", "")
    text = f"field `{field_name}` is {value!r}, but {problem}" if problem.startswith("must") else \
        f"field `{field_name}` is {value!r}, which {problem}"
    return text + (f" ({description.rstrip('.')})" if description else "")


def validate(data: dict[str, Any], source: str) -> None:
    """Check ``data`` against the schema; raise one :class:`ProfileError` naming the field and the fix."""
    import fastjsonschema

    problems = _unknown_fields(data, [])
    if not problems:
        try:
            _validator()(data)
        except fastjsonschema.JsonSchemaValueException as error:
            problems.append(_explain(error))
    if problems:
        unique = list(dict.fromkeys(problems))
        raise ProfileError(f"The profile in {source} has {'an error' if len(unique) == 1 else 'errors'}: "
                           + "; ".join(unique) + ". Edit the profile or fix the `--set` override.")


def load(
    name: str = "local",
    overrides: Iterable[str] | Mapping[str, Any] | None = None,
    body: str | None = None,
) -> Profile:
    """Load profile ``name`` (or a cell ``body``), resolve ``extends``, apply overrides, validate."""
    if body is not None:
        data, source = parse_text(body, "the cell body"), "the cell body"
    else:
        check_name(name, "profile name")
        data, source = _raw(name)
    if "extends" in data:
        validate({"extends": data["extends"]}, source)
    resolved, chain = _resolve(data, source, [name])
    resolved = merge(resolved, parse_overrides(overrides))
    where = source if not overrides else f"{source} (with overrides)"
    validate(resolved, where)
    check_meaning(resolved, where)
    return Profile(name=name, data=resolved, source=source, chain=chain)


DEFAULT_MAX_WORKERS = 100
WIDEST_WITHOUT_ALLOW_WORLD = 8  # ingress_cidr prefixes shorter than this need network.allow_world


def _backend_checks(data: dict[str, Any], source: str) -> None:
    """What the profile's backend checks itself (an optional ``check_profile(data, source)``), so that
    values it would refuse fail here, before anything starts."""
    from ..backends import available, get_backend

    name = data.get("backend", "local")
    if name in available():
        check = getattr(get_backend(name), "check_profile", None)
        if check is not None:
            check(data, source)


def check_meaning(data: dict[str, Any], source: str) -> None:
    """What the schema cannot say: whole numbers really whole, ranges that open the cluster to others,
    and sizes that are probably typos. One :class:`ProfileError` naming the field and the fix."""
    floats = _floats_in_integer_fields(data, [])
    if floats:
        what = "must be a whole number" if len(floats) == 1 else "must be whole numbers"
        raise ProfileError(f"In {source}, {', '.join(floats)} {what} (write 2, not 2.0).")
    network = data.get("network", {})
    cidr = network.get("ingress_cidr")
    if cidr is not None:
        import ipaddress

        try:
            opened = ipaddress.ip_network(cidr, strict=True)
        except ValueError as exc:
            raise ProfileError(
                f"In {source}, `network.ingress_cidr` is {cidr!r}: {exc}. Write the network's own address "
                f"(e.g. {ipaddress.ip_network(cidr, strict=False)}) or a single address as A.B.C.D/32."
            ) from None
        # The network as AWS will read it ("/00" is /0): anything wider than a /8 is a good part of the internet.
        if opened.prefixlen < WIDEST_WITHOUT_ALLOW_WORLD and not network.get("allow_world"):
            share = "the whole internet" if opened.prefixlen == 0 else \
                f"{opened.num_addresses:,} addresses ({opened}, more than a /{WIDEST_WITHOUT_ALLOW_WORLD})"
            raise ProfileError(
                f"In {source}, `network.ingress_cidr: {cidr}` opens the cluster to {share}. If that is "
                "really meant, also set `network.allow_world: true`; otherwise name your network, e.g. "
                "203.0.113.0/24, or leave the field out to allow only your own address."
            )
        if network.get("tls") is False and not network.get("allow_unauthenticated"):
            raise ProfileError(
                f"In {source}, `network.tls: false` with `network.ingress_cidr: {cidr}` lets anyone in that range "
                "connect to the scheduler and run code on the workers. Keep TLS on, leave `ingress_cidr` out "
                "(only your own address), or set `network.allow_unauthenticated: true` to accept it."
            )
    _backend_checks(data, source)
    data_scope.check(data, source)
    limit = data.get("limits", {}).get("max_workers", DEFAULT_MAX_WORKERS)
    count = data.get("worker", {}).get("count")
    if isinstance(count, int) and count > limit:
        raise ProfileError(
            f"In {source}, `worker.count` is {count}, above the limit of {limit} workers (a guard against typos "
            "that cost money). Lower it, or raise `limits.max_workers` in the profile."
        )


def _floats_in_integer_fields(data: Any, path: list[str]) -> list[str]:
    """The fields the schema types as integer that hold a float such as 2.0 (JSON Schema accepts it)."""
    if isinstance(data, dict):
        return [f for key, value in data.items() for f in _floats_in_integer_fields(value, [*path, key])]
    if isinstance(data, float) and _schema_at(path).get("type") == "integer":
        return [f"`{_field(path)}` ({data!r})"]
    return []
