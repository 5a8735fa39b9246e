"""IAM policy evaluation for the sandbox's ``enforce_iam``, as AWS evaluates requests within an account.

moto's own evaluation matches ``Resource`` patterns as regular expressions (``.`` matches anything),
treats any ``Condition`` it cannot read as an explicit deny, knows no session policies and no
federated users, and compares a trust policy's role ARN with a session ARN (so a role can never
assume itself). Here:

- a request is allowed when an identity policy allows it, its session policy (an assumed role's or a
  federation token's) allows it too, and nothing denies it; a federation token without a session
  policy may do nothing, and never IAM or STS calls (GetCallerIdentity aside);
- ``Action`` matches case-insensitively, ``Resource`` case-sensitively, ``*`` and ``?`` as wildcards;
- conditions: the String*, Arn*, Bool and Null operators (``...IfExists`` and ``ForAnyValue:`` too) on
  what the request carries (``s3:prefix``, ``s3:delimiter``, ``sts:ExternalId``, ``aws:PrincipalArn``...);
  an operator it does not know makes an Allow not apply and a Deny apply;
- S3's HeadBucket needs ``s3:ListBucket``, and DeleteObjects ``s3:DeleteObject`` on each key it names,
  as on AWS;
- ``sts:AssumeRole`` also needs the role's trust policy, whose principals match the caller's ARN, its
  role (for a role's own sessions) or its account.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

from ._patch import Patches
from .sts import TemporaryCredentials

ACTION_ALIASES = {"s3:headbucket": "s3:ListBucket"}  # S3 authorises these as another action
_NEGATED = ("StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "ArnNotEquals", "ArnNotLike")


@dataclass
class Caller:
    """Who signed a request, for evaluation."""

    arn: str
    account: str
    role_arn: str | None = None  # an assumed role's sessions
    federated: bool = False
    session_policy: dict[str, Any] | None = None  # None: no session policy
    identity_policies: list[dict[str, Any]] = field(default_factory=list)


@lru_cache(maxsize=4096)
def _pattern(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    text = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{text}$", re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def wildcard(pattern: str, value: str, ignore_case: bool = False) -> bool:
    return _pattern(pattern, ignore_case).match(value) is not None


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _condition_holds(operator: str, wanted: dict[str, Any], context: dict[str, list[str]]) -> bool | None:
    """Whether one operator's block holds; None for an operator this does not know."""
    name = operator.split(":", 1)[-1]  # ForAnyValue:/ForAllValues: on single values behave alike here
    if_exists = name.endswith("IfExists")
    name = name.removesuffix("IfExists")
    for key, expected in wanted.items():
        expected_values = [str(v).lower() if isinstance(v, bool) else str(v) for v in _listed(expected)]
        actual = context.get(key.lower())
        if name == "Null":
            if (actual is None) != (expected_values[0].lower() == "true"):
                return False
            continue
        if actual is None:
            if if_exists or name in _NEGATED:
                continue
            return False
        if name in ("StringEquals", "ArnEquals"):
            ok = any(a == e for a in actual for e in expected_values)
        elif name == "StringEqualsIgnoreCase":
            ok = any(a.lower() == e.lower() for a in actual for e in expected_values)
        elif name in ("StringLike", "ArnLike"):
            ok = any(wildcard(e, a) for a in actual for e in expected_values)
        elif name in ("StringNotEquals", "ArnNotEquals"):
            ok = all(a != e for a in actual for e in expected_values)
        elif name == "StringNotEqualsIgnoreCase":
            ok = all(a.lower() != e.lower() for a in actual for e in expected_values)
        elif name in ("StringNotLike", "ArnNotLike"):
            ok = not any(wildcard(e, a) for a in actual for e in expected_values)
        elif name == "Bool":
            ok = any(a.lower() == e.lower() for a in actual for e in expected_values)
        else:
            return None
        if not ok:
            return False
    return True


def _principal_matches(element: Any, caller: Caller) -> bool:
    if element is None:
        return True
    if element == "*":
        return True
    values = _listed(element.get("AWS", [])) if isinstance(element, dict) else []
    for value in values:
        if value in ("*", caller.arn) or (caller.role_arn and value == caller.role_arn):
            return True
        if value in (caller.account, f"arn:aws:iam::{caller.account}:root"):
            return True
    return False


def statement_applies(statement: dict[str, Any], action: str, resource: str, context: dict[str, list[str]],
                      caller: Caller | None = None) -> bool:
    """Whether ``statement`` speaks of this request (its effect is then the statement's)."""
    if "Action" in statement:
        if not any(wildcard(p, action, ignore_case=True) for p in _listed(statement["Action"])):
            return False
    elif "NotAction" in statement:
        if any(wildcard(p, action, ignore_case=True) for p in _listed(statement["NotAction"])):
            return False
    else:
        return False
    if "Resource" in statement:
        if not any(wildcard(p, resource) for p in _listed(statement["Resource"])):
            return False
    elif "NotResource" in statement and any(wildcard(p, resource) for p in _listed(statement["NotResource"])):
        return False
    if caller is not None and "Principal" in statement and not _principal_matches(statement["Principal"], caller):
        return False
    deny = statement.get("Effect") == "Deny"
    for operator, block in (statement.get("Condition") or {}).items():
        holds = _condition_holds(operator, block, context)
        if holds is None:  # unknown: an Allow does not apply, a Deny does (the strict reading)
            return deny
        if not holds:
            return False
    return True


def verdict(documents: list[dict[str, Any]], action: str, resource: str, context: dict[str, list[str]],
            caller: Caller | None = None) -> str:
    """"deny", "allow" or "none" (no statement speaks of it) for the policies in ``documents``."""
    allowed = False
    for document in documents:
        for statement in _listed(document.get("Statement", [])):
            if not statement_applies(statement, action, resource, context, caller):
                continue
            if statement.get("Effect") == "Deny":
                return "deny"
            allowed = True
    return "allow" if allowed else "none"


def permitted(caller: Caller, action: str, resource: str, context: dict[str, list[str]],
              trust: dict[str, Any] | None = None) -> bool:
    """AWS's decision within one account for ``caller``; ``trust`` is the role's trust policy for
    sts:AssumeRole (the role must then exist: pass ``{}`` for a missing one)."""
    action = ACTION_ALIASES.get(action.lower(), action)
    service, _, name = action.partition(":")
    if caller.federated and service.lower() in ("iam", "sts") and name.lower() != "getcalleridentity":
        return False
    identity = verdict(caller.identity_policies, action, resource, context)
    session = "allow" if caller.session_policy is None else verdict([caller.session_policy], action, resource,
                                                                       context)
    if "deny" in (identity, session):
        return False
    if trust is not None:
        trusted = verdict([trust], action, resource, context, caller)
        if trusted != "allow":
            return False
        named = any(statement_applies(s, action, resource, context, caller) and _names(s, caller)
                    for s in _listed(trust.get("Statement", [])))
        return session == "allow" and (identity == "allow" or named)
    return identity == "allow" and session == "allow"


def _names(statement: dict[str, Any], caller: Caller) -> bool:
    """True when a trust statement names the caller itself (or its role), not just its account."""
    element = statement.get("Principal")
    values = _listed(element.get("AWS", [])) if isinstance(element, dict) else []
    return caller.arn in values or bool(caller.role_arn and caller.role_arn in values)


# -- moto hooks ------------------------------------------------------------------------------
def _documents(policies: list[Any]) -> list[dict[str, Any]]:
    from moto.iam.access_control import IAMPolicy

    return [IAMPolicy(p)._policy_json for p in policies]


def _context(request: Any, caller: Caller) -> dict[str, list[str]]:
    """The condition keys a request carries (lower-cased names)."""
    context: dict[str, list[str]] = {
        "aws:principalarn": [caller.role_arn or caller.arn],
        "aws:securetransport": ["false"],
        "aws:requestedregion": [request._region],
        "aws:principalaccount": [caller.account],
    }
    query = request._path.split("?", 1)[1] if "?" in request._path else ""
    if request._service == "s3":
        values = dict(parse_qsl(query, keep_blank_values=True))
        for name in ("prefix", "delimiter", "max-keys"):
            if name in values:
                context[f"s3:{name}"] = [values[name]]
        if request._action.lower() == "s3:listbucket":
            context.setdefault("s3:prefix", [""])
        header = {k.lower(): v for k, v in dict(request._headers).items()}.get("if-none-match")
        if header is not None:  # a conditional write: a policy may insist on it (never replace an object)
            context["s3:if-none-match"] = [header]
    external = request._data.get("ExternalId") if isinstance(request._data, dict) else None
    if external:
        context["sts:externalid"] = [external[0] if isinstance(external, list) else external]
    return context


def _deleted_objects(request: Any, resource: str) -> list[str]:
    """DeleteObjects (one call for many keys) needs s3:DeleteObject on each object it names, as on AWS
    (moto asks it of the bucket)."""
    if request._action.lower() != "s3:deleteobject" or "/" in resource.split(":::", 1)[-1]:
        return []
    import xml.etree.ElementTree as ElementTree

    try:
        root = ElementTree.fromstring(request._body or b"")
    except ElementTree.ParseError:
        return []
    return [f"{resource}/{node.text}" for node in root.iter() if node.tag.rsplit("}", 1)[-1] == "Key" and node.text]


def _arn(key: Any) -> str:
    """The caller's ARN as GetCallerIdentity gives it (moto's own drops an IAM user's path)."""
    name = getattr(key, "_owner_user_name", None)
    if name is not None and not getattr(key, "session", None):
        try:
            return str(key.backend.get_user(name).arn)
        except Exception:
            pass
    return str(key.arn)


def patch_policy_evaluation(patches: Patches, sts: TemporaryCredentials) -> None:
    """Make moto's IAM enforcement evaluate requests as :func:`permitted` does, and know federated users."""
    import moto.iam.access_control as access_control

    original_create = access_control.create_access_key

    class FederatedUserAccessKey:
        """A federation token: the IAM user's policies, cut by the session policy."""

        def __init__(self, session: Any, account_id: str, partition: str) -> None:
            from moto.iam.models import iam_backends

            self.session, self.account_id = session, account_id
            self._access_key_id = session.access_key_id
            self.backend = iam_backends[account_id][partition]

        @property
        def arn(self) -> str:
            return str(self.session.arn)

        def create_credentials(self) -> Any:
            from botocore.credentials import Credentials

            return Credentials(self.session.access_key_id, self.session.secret_access_key, self.session.session_token)

        def collect_policies(self) -> list[Any]:
            if self.session.user_name is None:
                return []
            user = access_control.IAMUserAccessKey.__new__(access_control.IAMUserAccessKey)
            user.account_id, user.partition, user._owner_user_name = self.account_id, "aws", self.session.user_name
            return user.collect_policies()

    class RootAccessKey:
        """The account's root user: every action on everything of its account."""

        def __init__(self, account_id: str) -> None:
            self.account_id, self._access_key_id = account_id, ""

        @property
        def arn(self) -> str:
            return f"arn:aws:iam::{self.account_id}:root"

        def create_credentials(self) -> Any:
            from botocore.credentials import Credentials

            return Credentials(self._access_key_id, sts.roots[self._access_key_id][1])

        def collect_policies(self) -> list[Any]:
            return [json.dumps({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})]

    def create_access_key(account_id: str, partition: str, access_key_id: str, headers: dict[str, str]) -> Any:
        if access_key_id in sts.roots:
            root = RootAccessKey(sts.roots[access_key_id][0])
            root._access_key_id = access_key_id
            return root
        session = sts.find(access_key_id)
        if session is not None and session.kind == "federated-user":
            if headers.get("X-Amz-Security-Token") != session.session_token:
                raise access_control.CreateAccessKeyFailure(reason="InvalidToken")
            return FederatedUserAccessKey(session, account_id, partition)
        return original_create(account_id, partition, access_key_id, headers)

    def check_action_permitted(request: Any, resource: str) -> None:
        if request._action == "sts:GetCallerIdentity":
            return
        key = request._access_key
        session = sts.find(getattr(key, "_access_key_id", None))
        policy = None
        if session is not None:
            policy = json.loads(session.policy) if session.policy else None
            if session.kind == "federated-user" and policy is None:
                policy = {"Statement": []}  # a federation token with no session policy may do nothing
        caller = Caller(arn=_arn(key), account=request.account_id,
                        role_arn=session.role_arn if session else None,
                        federated=bool(session and session.kind == "federated-user"),
                        session_policy=policy, identity_policies=_documents(key.collect_policies()))
        trust = None
        if request._action.lower() == "sts:assumerole":
            try:
                trust = json.loads(request.backend.get_role_by_arn(resource).assume_role_policy_document)
            except Exception:
                trust = {}  # no such role: AWS refuses
        context = _context(request, caller)
        resources = _deleted_objects(request, resource) or [resource]
        if not all(permitted(caller, request._action, each, context, trust) for each in resources):
            request._raise_access_denied()

    patches.set(access_control, "create_access_key", create_access_key)
    patches.set(access_control.IAMRequestBase, "check_action_permitted", check_action_permitted)
