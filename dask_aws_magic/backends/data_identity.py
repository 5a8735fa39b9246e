"""Which identity a cluster's nodes act with on the user's data, for every AWS backend: the plan's
line that says so, the settings ``launch`` keeps, and fresh credentials when the profile forwards
the caller's own (:mod:`..aws.data_credentials` makes them; :mod:`..core.forwarding` hands them over).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..aws import data_credentials
from ..aws.session import aws, session
from ..core import data_scope
from ..core.naming import same_owner
from .base import NodeCredentials, Plan

if TYPE_CHECKING:
    from ..core.profiles import Profile
    from ..core.registry import ClusterRecord


def with_data(the_plan: Plan, profile: Profile) -> Plan:
    """``the_plan`` with its data line among the notes and ``settings["data"]`` (see :func:`plan`)."""
    note, settings = plan(profile, the_plan.owner, the_plan.backend)
    the_plan.notes.append(note)
    the_plan.settings["data"] = settings
    return the_plan


def plan(profile: Profile, owner: str, backend: str) -> tuple[str, dict[str, Any]]:
    """The plan's note naming the identity the nodes get for data, its scope and lifetime, and the
    settings the cluster keeps (``record.settings["data"]``). Forwarding that cannot work (the root
    user; a federated user with ``data.s3``) fails here, before anything is created."""
    data = profile.data
    mode = data_scope.mode(data)
    found = data_scope.locations(data, profile.source)
    lifetime = data_scope.lifetime(data)
    settings = {"credentials": mode, "lifetime": lifetime,
                "s3": None if found is None else [[loc.bucket, loc.prefix, loc.write] for loc in found]}
    ignored = " (`data.s3` is ignored: it limits forwarded credentials only)" if found is not None else ""
    if mode == "none":
        own = ("their per-cluster role may read the cluster's secret and nothing else"
               if backend == "ec2" and not any(profile.role(r).get("iam_instance_profile") for r in ("scheduler",
                                                                                                     "worker"))
               else "only what their own role allows")
        why = ("`network.tls: false`: credentials are only forwarded over TLS" if "credentials" not in
               (data.get("data") or {}) else "`data.credentials: none`")
        return f"data: no credentials for your data reach the nodes ({why}): {own}{ignored}", settings
    if mode == "role":
        role = (profile.role("worker").get("iam_instance_profile") if backend == "ec2"
                else (data.get("ecs") or {}).get("task_role"))
        field = "instance.iam_instance_profile" if backend == "ec2" else "ecs.task_role"
        return f"data: the nodes act as the role of {role} (`{field}`), from AWS's own metadata service{ignored}", \
            settings
    data_credentials.check_forwardable(owner, scoped=found is not None)
    if found is not None:  # a session policy AWS would refuse fails here, not at `up`
        data_credentials.packed(data_credentials.session_policy(
            [(loc.bucket, loc.prefix, loc.write) for loc in found], data_credentials.partition(owner)))
    kind = data_credentials.identity_kind(owner)
    if kind == "assumed-role" and found is None:
        how, renewal = "your role session's own credentials", "handed over again as your session renews them"
    elif kind == "federated-user":
        how, renewal = "your federated session's own credentials", "handed over again as your session renews them"
    else:
        asked = min(lifetime, data_credentials.CHAINED_LIMIT) if kind == "assumed-role" else lifetime
        how = "a session of the same role" if kind == "assumed-role" else "a federation token"
        renewal = f"each living up to {_duration(asked)}, renewed every ~{_duration(asked / 2)}"
    note = (f"data: the nodes act as your identity {owner} ({how}), {data_scope.describe(found)}; short-lived "
            f"credentials held in the nodes' memory, {renewal} while a client of yours is connected")
    if backend in ("ecs", "fargate") and (data.get("ecs") or {}).get("task_role"):
        note += "; they take precedence over `ecs.task_role`"
    return note, settings


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds / 60:g} min"


def node_credentials(record: ClusterRecord) -> NodeCredentials | None:
    """Fresh credentials for ``record``'s nodes from the caller's session, None unless its profile forwards."""
    from .ec2.discovery import scope_of

    data = record.settings.get("data") or {}
    if data.get("credentials") != "forward":
        return None
    scope = scope_of(record)
    locations = None if data.get("s3") is None else [tuple(item) for item in data["s3"]]
    with aws(f"making the data credentials of {record.name}'s nodes in {scope.describe()}"):
        sts = scope.client("sts")
        caller = sts.get_caller_identity()["Arn"]
        if record.owner and not same_owner(caller, record.owner):
            raise data_credentials.ForwardingImpossible(
                f"Your AWS identity here is {caller}, not the owner of {record.name} ({record.owner}): only the "
                "owner's credentials go to its nodes, so they are not renewed from this session. Connect with the "
                "owner's credentials (`aws_profile`), or start a cluster of your own.")
        made = data_credentials.derive(sts=sts, session=session(scope.aws_profile), iam=scope.client("iam"),
                                       caller=caller, cluster_id=record.cluster_id, locations=locations,
                                       lifetime=float(data.get("lifetime") or data_scope.DEFAULT_LIFETIME))
    return NodeCredentials(made.access_key_id, made.secret_access_key, made.session_token, made.expiration,
                           identity=caller, description=made.description)
