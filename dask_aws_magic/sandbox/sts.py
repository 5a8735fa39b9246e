"""Temporary credentials in the sandbox, as STS issues them.

moto's STS hands out assumed-role sessions that never expire and, for GetFederationToken, one fixed
example key that no request can use. Here every session expires (``Sandbox(credential_lifetime=S)``
shortens every lifetime, whatever was asked: callers must read the ``Expiration`` AWS returns), a
call made with an expired one is refused with ``ExpiredToken`` (IAM enforced or not), federation
tokens are real sessions of the IAM user that asked (its permissions, cut by the session policy),
and AWS's limits apply: no GetFederationToken with session credentials, an hour at most for a role
assumed by role chaining, no more than the role's MaxSessionDuration.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from ._patch import Patches

CHAINED_ROLE_LIMIT = 3600  # seconds: a role assumed with a role session's credentials
FEDERATION_RANGE = (900, 129600)
FEDERATION_NAME = re.compile(r"^[\w+=,.@-]{2,32}$")
_KEY = re.compile(r"Credential=([A-Z0-9]{16,128})/")


@dataclass
class Session:
    """One set of temporary credentials the sandbox issued."""

    kind: str  # "federated-user" or "assumed-role"
    account_id: str
    arn: str
    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: datetime
    policy: str | None  # the session policy, as given (None: none)
    user_name: str | None = None  # federated: the IAM user whose permissions it carries
    role_arn: str | None = None  # assumed-role: the role

    @property
    def expired(self) -> bool:
        return datetime.now(timezone.utc) >= _aware(self.expiration)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def request_access_key(headers: Any, query: str = "") -> str | None:
    """The access key id a request was signed with (header or presigned query)."""
    found = _KEY.search(headers.get("Authorization", "") or "")
    if found is None and "X-Amz-Credential=" in query:
        found = _KEY.search("Credential=" + query.split("X-Amz-Credential=", 1)[1].replace("%2F", "/"))
    return found.group(1) if found else None


class TemporaryCredentials:
    """The sandbox's STS sessions: their lifetimes, the federation tokens, the expiry check."""

    def __init__(self, lifetime: float | None = None) -> None:
        self.lifetime = lifetime
        self._federated: dict[str, Session] = {}
        self.roots: dict[str, tuple[str, str]] = {}  # the accounts' root users' keys: id -> (account, secret)
        self._lock = threading.Lock()

    # -- what was issued -------------------------------------------------------------------
    def find(self, access_key_id: str | None) -> Session | None:
        """The session whose access key is ``access_key_id`` (None: not a temporary credential)."""
        if not access_key_id:
            return None
        with self._lock:
            if access_key_id in self._federated:
                return self._federated[access_key_id]
        from moto.sts.models import sts_backends

        for account in list(sts_backends.values()):
            for backend in list(account.values()):
                role = backend.get_assumed_role_from_access_key(access_key_id)
                if role is not None:
                    return Session("assumed-role", role.account_id, role.arn, role.access_key_id,
                                   role.secret_access_key, role.session_token, role.expiration, role.policy or None,
                                   role_arn=role.role_arn)
        return None

    def issued(self) -> list[Session]:
        """Every session issued so far, oldest first within each kind."""
        from moto.sts.models import sts_backends

        with self._lock:
            sessions = list(self._federated.values())
        for account in list(sts_backends.values()):
            for backend in list(account.values()):
                sessions += [s for s in (self.find(r.access_key_id) for r in list(backend.assumed_roles)) if s]
        return sessions

    def _shorten(self, expiration: datetime) -> datetime:
        if self.lifetime is None:
            return expiration
        cap = datetime.now(timezone.utc) + timedelta(seconds=self.lifetime)
        return min(_aware(expiration), cap).replace(tzinfo=expiration.tzinfo)

    # -- moto hooks ------------------------------------------------------------------------
    def patch(self, patches: Patches) -> None:
        from moto.core.authorization import ActionAuthenticatorMixin
        from moto.sts.models import STSBackend
        from moto.sts.responses import TokenResponse

        sts = self
        original_assume = STSBackend.assume_role
        original_identity = STSBackend.get_caller_identity
        original_assume_response = TokenResponse.assume_role
        original_auth = ActionAuthenticatorMixin._authenticate_and_authorize_action

        def assume_role(backend: Any, *args: Any, **kwargs: Any) -> Any:
            role = original_assume(backend, *args, **kwargs)
            role.expiration = sts._shorten(role.expiration)
            return role

        def assume_role_response(response: Any) -> Any:
            sts._check_assume_role(response)
            return original_assume_response(response)

        def get_caller_identity(backend: Any, access_key_id: str, region: str) -> tuple[str, str, str]:
            with sts._lock:
                session = sts._federated.get(access_key_id)
            if session is not None:
                return f"{session.account_id}:{session.arn.rsplit('/', 1)[-1]}", session.arn, session.account_id
            if access_key_id in sts.roots:
                account = sts.roots[access_key_id][0]
                return account, f"arn:aws:iam::{account}:root", account
            return original_identity(backend, access_key_id, region)

        def authenticate(mixin: Any, iam_request_cls: type, resource: str = "*") -> None:
            query = mixin.uri.split("?", 1)[1] if "?" in getattr(mixin, "uri", "") else ""
            session = sts.find(request_access_key(mixin.headers, query))
            if session is not None and session.expired:
                raise _expired(iam_request_cls, mixin.headers)
            original_auth(mixin, iam_request_cls, resource)

        patches.set(STSBackend, "assume_role", assume_role)
        patches.set(STSBackend, "get_caller_identity", get_caller_identity)
        patches.set(TokenResponse, "assume_role", assume_role_response)
        patches.set(TokenResponse, "get_federation_token", lambda response: sts._federation_token(response))
        patches.set(ActionAuthenticatorMixin, "_authenticate_and_authorize_action", authenticate)

    def _check_assume_role(self, response: Any) -> None:
        """AWS's duration limits: an hour for role chaining, the role's MaxSessionDuration."""
        from moto.iam.models import iam_backends
        from moto.sts.exceptions import STSValidationError

        duration = response._get_int_param("DurationSeconds", 3600)
        caller = self.find(response.get_access_key())
        if caller is not None and caller.kind == "assumed-role" and duration > CHAINED_ROLE_LIMIT:
            raise STSValidationError("The requested DurationSeconds exceeds the 1 hour session limit for roles "
                                     "assumed by role chaining.")
        arn = response._get_param("RoleArn") or ""
        try:
            role = iam_backends[arn.split(":")[4]]["aws"].get_role_by_arn(arn)
        except Exception:
            return
        if duration > int(role.max_session_duration or 3600):
            raise STSValidationError("The requested DurationSeconds exceeds the MaxSessionDuration set for this role.")

    def _federation_token(self, response: Any) -> Any:
        """GetFederationToken: a session of the calling IAM user, cut by the session policy given (with
        none, it may do nothing)."""
        from moto.core.exceptions import AccessDeniedError
        from moto.core.responses import ActionResult
        from moto.iam.models import iam_backends
        from moto.sts.exceptions import STSValidationError
        from moto.sts.responses import MAX_FEDERATION_TOKEN_POLICY_LENGTH
        from moto.sts.utils import random_session_token

        key = response.get_access_key()
        account = response.current_account
        if self.find(key) is not None:
            raise AccessDeniedError(user_arn=self.find(key).arn,  # type: ignore[union-attr]
                                    action="sts:GetFederationToken (Cannot call GetFederationToken with session "
                                           "credentials)")
        name = response._get_param("Name") or ""
        if not FEDERATION_NAME.match(name):
            raise STSValidationError(f"1 validation error detected: Value '{name}' at 'name' failed to satisfy "
                                     "constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*, "
                                     "length 2-32")
        duration = response._get_int_param("DurationSeconds", 43200)
        if not FEDERATION_RANGE[0] <= duration <= FEDERATION_RANGE[1]:
            raise STSValidationError(f"The requested DurationSeconds {duration} is outside "
                                     f"{FEDERATION_RANGE[0]}-{FEDERATION_RANGE[1]}.")
        policy = response._get_param("Policy")
        if policy is not None and len(policy) > MAX_FEDERATION_TOKEN_POLICY_LENGTH:
            raise STSValidationError("Packed policy consumes more than 100 percent of the allotted size "
                                     f"({len(policy)} of {MAX_FEDERATION_TOKEN_POLICY_LENGTH} characters).")
        iam = iam_backends[account]["aws"]
        user = iam.get_user_from_access_key_id(key)
        temporary = iam.create_temp_access_key()
        now = datetime.now(timezone.utc)
        session = Session(
            "federated-user", account, f"arn:aws:sts::{account}:federated-user/{name}",
            temporary.access_key_id, temporary.secret_access_key, random_session_token(),
            self._shorten(now + timedelta(seconds=duration)), policy, user_name=user.name if user else None)
        with self._lock:
            self._federated[session.access_key_id] = session
        return ActionResult({
            "Credentials": {"AccessKeyId": session.access_key_id, "SecretAccessKey": session.secret_access_key,
                            "SessionToken": session.session_token, "Expiration": session.expiration},
            "FederatedUser": {"FederatedUserId": f"{account}:{name}", "Arn": session.arn},
            "PackedPolicySize": min(100, len(policy or "") * 100 // MAX_FEDERATION_TOKEN_POLICY_LENGTH),
        })


def _expired(iam_request_cls: type, headers: Any) -> Exception:
    """The error AWS sends for a request signed with expired temporary credentials, in its protocol."""
    from moto.core.exceptions import JsonRESTError, _RESTError
    from moto.iam.access_control import S3IAMRequest
    from moto.s3.exceptions import S3ClientError

    if iam_request_cls is S3IAMRequest:
        return S3ClientError("ExpiredToken", "The provided token has expired.")
    message = "The security token included in the request is expired"
    if headers.get("X-Amz-Target"):
        return JsonRESTError("ExpiredTokenException", message)
    return _RESTError("ExpiredToken", message)
