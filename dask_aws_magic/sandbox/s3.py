"""S3 as strict as AWS where software sync relies on it, with IAM enforced: the ``s3:if-none-match``
condition key (a policy may refuse writes that could replace an object) and IAM conditions that, when
they do not hold, make a statement not apply (moto denies outright instead, and ignores ``Null``)."""

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
