"""IAM in the sandbox: AWS-managed policies cheap enough to load on every start, and Secrets Manager
calls checked against the secret they name and its resource policy, as AWS does."""

from __future__ import annotations

import fnmatch
import json
from functools import cache
from typing import Any

from ._patch import Patches


@cache
def _policy_data() -> dict[str, Any]:
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    return dict(json.loads(aws_managed_policies_data))


def patch_managed_policies(patches: Patches) -> None:
    """Load AWS-managed policies (e.g. AmazonSSMManagedInstanceCore) for the `aws` partition only,
    from JSON parsed once per process. moto builds one IAM backend per partition on every request
    after a reset, which otherwise costs ~0.7 s."""
    from moto.iam.models import AWSManagedPolicy, IAMBackend

    def _init_aws_policies(self: Any) -> list[Any]:
        if self.region_name != "aws":
            return []
        return [
            AWSManagedPolicy.from_data(name, self.account_id, self.region_name, data)
            for name, data in _policy_data().items()
        ]

    patches.set(IAMBackend, "_init_aws_policies", _init_aws_policies)


def patch_secret_resources(patches: Patches) -> None:
    """With IAM enforced, check Secrets Manager calls against the secret they name, as AWS does:
    moto checks every call against the resource "*", so a policy scoped to one secret's ARN (the
    cluster roles' only permission) would otherwise never allow anything."""
    from moto.secretsmanager.models import secretsmanager_backends
    from moto.secretsmanager.responses import SecretsManagerResponse

    def _determine_resource(self: Any) -> str:
        secret_id = self._get_param("SecretId")
        if not secret_id:
            return "*"
        secret = secretsmanager_backends[self.current_account][self.region].secrets.get(secret_id)
        if secret is not None:
            return str(secret.arn)
        if secret_id.startswith("arn:"):
            return str(secret_id)
        return f"arn:aws:secretsmanager:{self.region}:{self.current_account}:secret:{secret_id}"

    patches.set(SecretsManagerResponse, "_determine_resource", _determine_resource)


def patch_secret_policies(patches: Patches) -> None:
    """With IAM enforced, check Secrets Manager calls against the secret's resource policy too, as AWS
    does within an account: an explicit Deny there refuses the call whatever the caller's own policies
    allow; an Allow naming the caller grants it. moto reads identity policies only."""
    from moto.iam.access_control import IAMPolicy, IAMRequest, PermissionResult
    from moto.secretsmanager.models import secretsmanager_backends
    from moto.secretsmanager.responses import SecretsManagerResponse

    class SecretRequest(IAMRequest):
        def check_action_permitted(self, resource: str) -> None:
            decision = PermissionResult.NEUTRAL
            region = resource.split(":")[3] if resource.count(":") >= 5 else self._region
            backend = secretsmanager_backends[self.account_id][region]
            secret = next((s for s in list(backend.secrets.values()) if s.arn == resource), None)
            if secret is not None and secret.policy:
                decision = resource_policy_decision(json.loads(secret.policy), self._action,
                                                    self._principal_arn(), self.account_id)
            if decision == PermissionResult.DENIED:
                self._raise_access_denied()
            if decision == PermissionResult.PERMITTED:
                for document in self._access_key.collect_policies():  # its own explicit Deny still wins
                    if IAMPolicy(document).is_action_permitted(self._action, resource) == PermissionResult.DENIED:
                        self._raise_access_denied()
                return
            super().check_action_permitted(resource)

        def _principal_arn(self) -> str:
            """``aws:PrincipalArn``: a user's ARN, or for a role's session the role's (with their paths)."""
            role = getattr(self._access_key, "_owner_role_name", None)
            if role is not None:
                return str(self.backend.get_role(role).arn)
            return str(self.backend.get_user(self._access_key._owner_user_name).arn)

    def _authenticate_and_authorize_normal_action(self: Any, resource: str = "*") -> None:
        self._authenticate_and_authorize_action(SecretRequest, resource)

    patches.set(SecretsManagerResponse, "_authenticate_and_authorize_normal_action",
                _authenticate_and_authorize_normal_action)


def patch_tagging_actions(patches: Patches) -> None:
    """With IAM enforced, name the Resource Groups Tagging API's actions as IAM does (``tag:GetResources``):
    moto takes the prefix from the signing name (``tagging``), which no policy (ReadOnlyAccess included)
    mentions, so every caller would be refused what AWS allows."""
    from moto.iam.access_control import IAMRequest
    from moto.resourcegroupstaggingapi.responses import ResourceGroupsTaggingAPIResponse

    class TaggingRequest(IAMRequest):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._action = "tag:" + self._action.split(":", 1)[1]

    def _authenticate_and_authorize_normal_action(self: Any, resource: str = "*") -> None:
        self._authenticate_and_authorize_action(TaggingRequest, resource)

    patches.set(ResourceGroupsTaggingAPIResponse, "_authenticate_and_authorize_normal_action",
                _authenticate_and_authorize_normal_action)


def patch_empty_body_signatures(patches: Patches) -> None:
    """With IAM enforced, check the signature of a GET, HEAD or DELETE without a body (EFS's and every REST
    API's reads) over that empty body, as AWS does: moto hashes the request's parsed parameters in its place
    (its query, or even its headers), so every such call failed with SignatureDoesNotMatch."""
    from moto.iam.access_control import IAMRequestBase

    original = IAMRequestBase._create_aws_request

    def _create_aws_request(self: Any) -> Any:
        request = original(self)
        if self._method in ("GET", "HEAD", "DELETE") and not self._body:  # a form POST's body is in _data
            request.data = b""
        return request

    patches.set(IAMRequestBase, "_create_aws_request", _create_aws_request)


CONDITIONS = {  # operator -> (compare one value with one pattern, negated)
    "StringEquals": (lambda value, pattern: value == pattern, False),
    "StringNotEquals": (lambda value, pattern: value == pattern, True),
    "StringLike": (lambda value, pattern: fnmatch.fnmatchcase(value, pattern), False),
    "StringNotLike": (lambda value, pattern: fnmatch.fnmatchcase(value, pattern), True),
    "ArnEquals": (lambda value, pattern: value == pattern, False),
    "ArnNotEquals": (lambda value, pattern: value == pattern, True),
    "ArnLike": (lambda value, pattern: fnmatch.fnmatchcase(value, pattern), False),
    "ArnNotLike": (lambda value, pattern: fnmatch.fnmatchcase(value, pattern), True),
}


def resource_policy_decision(document: dict[str, Any], action: str, principal: str, account: str) -> Any:
    """DENIED if a statement denies ``action`` to ``principal``, else PERMITTED if one allows it, else
    NEUTRAL. Conditions on ``aws:PrincipalArn`` and ``aws:PrincipalAccount`` are evaluated; a policy
    using any other raises, so a test never passes on a condition the sandbox ignored."""
    from moto.iam.access_control import PermissionResult

    context = {"aws:principalarn": principal, "aws:principalaccount": account}
    statements = document.get("Statement") or []
    decision = PermissionResult.NEUTRAL
    for statement in statements if isinstance(statements, list) else [statements]:
        actions = statement.get("Action", [])
        if not any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in _listed(actions)):
            continue
        principals = _listed((statement.get("Principal") or {}).get("AWS", []))
        named = "*" in principals or principal in principals
        whole_account = any(p in (account, f"arn:aws:iam::{account}:root") for p in principals)
        if not (named or whole_account) or not _conditions_hold(statement.get("Condition") or {}, context):
            continue
        if statement.get("Effect") == "Deny":
            return PermissionResult.DENIED
        if named:  # an Allow for the whole account only defers to the caller's own policies
            decision = PermissionResult.PERMITTED
    return decision


def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _conditions_hold(conditions: dict[str, Any], context: dict[str, str]) -> bool:
    for operator, tests in conditions.items():
        if operator not in CONDITIONS:
            raise NotImplementedError(f"the sandbox does not evaluate the condition operator {operator}")
        compare, negated = CONDITIONS[operator]
        for key, patterns in tests.items():
            if key.lower() not in context:
                raise NotImplementedError(f"the sandbox does not know the condition key {key}")
            matched = any(compare(context[key.lower()], p) for p in _listed(patterns))
            if matched == negated:
                return False
    return True
