"""Make moto's AWS-managed IAM policies cheap enough to load on every sandbox start."""

from __future__ import annotations

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


def patch_account_principals(patches: Patches) -> None:
    """A trust policy naming an account (``arn:aws:iam::ACCOUNT:root``) trusts every identity of that
    account whose own policies allow it, as on AWS; moto compares the ARNs as text."""
    import re

    from moto.iam.access_control import IAMPolicyStatement

    original = IAMPolicyStatement._check_principal
    account_of = re.compile(r"arn:[^:]+:(?:iam|sts)::(\d+):")

    def _check_principal(self: Any, principal: str) -> bool:
        expected = (self._statement.get("Principal") or {})
        named = expected.get("AWS") if isinstance(expected, dict) else None
        named = [named] if isinstance(named, str) else list(named or [])
        caller = account_of.match(principal)
        if caller and any(re.fullmatch(rf"arn:[^:]+:iam::{caller[1]}:root|{caller[1]}", str(n)) for n in named):
            return True
        return bool(original(self, principal))

    patches.set(IAMPolicyStatement, "_check_principal", _check_principal)
