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
