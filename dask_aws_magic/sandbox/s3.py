"""S3 as strict as AWS where software sync relies on it: ``x-amz-expected-bucket-owner`` (a request for a
bucket of another account is refused: a bucket name squatted by someone else is never used), and, with
IAM enforced, the ``s3:if-none-match`` condition key (a policy may refuse writes that could replace an
object) and IAM conditions that, when they do not hold, make a statement not apply (moto denies outright
instead, and ignores ``Null``)."""

from __future__ import annotations

from typing import Any

from ._patch import Patches


def _null_holds(expected: dict[str, Any], values: dict[str, str]) -> bool:
    """IAM's ``Null`` operator: "true" wants the key absent from the request, "false" present."""
    for key, wanted in expected.items():
        absent = key not in values
        wants_absent = str(wanted).lower() == "true"
        if absent != wants_absent:
            return False
    return True


def patch_s3_conditions(patches: Patches) -> None:
    from moto.iam.access_control import IAMPolicy, IAMPolicyStatement, PermissionResult, S3IAMRequest

    original = IAMPolicyStatement.is_action_permitted

    def is_action_permitted(self: Any, action: str, resource: str = "*", principal: str | None = None,
                            incoming_condition_values: dict[str, str] | None = None) -> Any:
        conditions = self._statement.get("Condition")
        if not conditions or principal is not None:  # trust policies keep moto's own handling
            return original(self, action, resource, principal, incoming_condition_values)
        values = incoming_condition_values or {}
        rest = {op: keys for op, keys in conditions.items() if op != "Null"}
        if "Null" in conditions and not _null_holds(conditions["Null"], values):
            return PermissionResult.NEUTRAL  # the statement does not apply to this request
        if rest and not IAMPolicyStatement({**self._statement, "Condition": rest})._check_conditions(values):
            return PermissionResult.NEUTRAL
        return original(IAMPolicyStatement({k: v for k, v in self._statement.items() if k != "Condition"}),
                        action, resource, principal, None)

    def check_action_permitted(self: Any, resource: str) -> None:
        values = {}
        header = {k.lower(): v for k, v in self._headers.items()}.get("if-none-match")
        if header is not None:
            values["s3:if-none-match"] = header
        permitted = False
        for policy in self._access_key.collect_policies():
            result = IAMPolicy(policy).is_action_permitted(self._action, resource, None, values)
            if result == PermissionResult.DENIED:
                self._raise_access_denied()
            permitted = permitted or result == PermissionResult.PERMITTED
        if not permitted:
            self._raise_access_denied()

    patches.set(IAMPolicyStatement, "is_action_permitted", is_action_permitted)
    patches.set(S3IAMRequest, "check_action_permitted", check_action_permitted)


def patch_expected_owner(patches: Patches) -> None:
    """Refuse a request whose ``x-amz-expected-bucket-owner`` is not the bucket's account, as S3 does."""
    from moto.s3.exceptions import BucketAccessDeniedError
    from moto.s3.models import s3_backends
    from moto.s3.responses import S3Response

    def guarded(original: Any) -> Any:
        def response(self: Any, request: Any, full_url: str) -> Any:
            expected = {k.lower(): v for k, v in dict(request.headers).items()}.get("x-amz-expected-bucket-owner")
            if expected:
                bucket = self.parse_bucket_name_from_url(request, full_url)
                owner = s3_backends.bucket_accounts.get(bucket)
                if owner is not None and owner[1] != expected:
                    raise BucketAccessDeniedError(bucket)
            return original(self, request, full_url)
        return response

    for name in ("_key_response", "_bucket_response"):
        patches.set(S3Response, name, guarded(getattr(S3Response, name)))
