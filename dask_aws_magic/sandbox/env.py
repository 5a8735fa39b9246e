"""Point the process's AWS configuration at the sandbox, and put it back afterwards."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

# Variables that could send a client elsewhere or pick up real credentials.
_REMOVED = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_USE_DUALSTACK_ENDPOINT",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
)


class AwsEnvironment:
    """Sets sandbox AWS variables in `os.environ`; `restore()` undoes it exactly.

    Applied before moto is imported (moto's import already builds boto3 sessions), so the
    endpoint is set separately once the server listens.
    """

    def __init__(self, region: str, config_dir: str) -> None:
        self.values: dict[str, str] = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": region,
            "AWS_REGION": region,
            # The sandbox's own files (absent until a profile is added): no real profile or credentials.
            "AWS_CONFIG_FILE": os.path.join(config_dir, "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": os.path.join(config_dir, "aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "MOTO_IAM_LOAD_MANAGED_POLICIES": "true",
        }
        self._saved: dict[str, str | None] | None = None

    def apply(self) -> None:
        service_endpoints = [k for k in os.environ if k.startswith("AWS_ENDPOINT_URL_")]
        keys = ["AWS_ENDPOINT_URL", *self.values, *_REMOVED, *service_endpoints]
        self._saved = {k: os.environ.get(k) for k in keys}
        for key in ("AWS_ENDPOINT_URL", *_REMOVED, *service_endpoints):
            os.environ.pop(key, None)
        os.environ.update(self.values)
        _forget_boto3_default_session()

    def set_endpoint(self, endpoint_url: str) -> None:
        os.environ["AWS_ENDPOINT_URL"] = endpoint_url
        _forget_boto3_default_session()

    def restore(self) -> None:
        if self._saved is None:
            return
        _set_all(self._saved)
        self._saved = None
        _forget_boto3_default_session()


def _set_all(values: Mapping[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _forget_boto3_default_session() -> None:
    # boto3's default session caches credentials it resolved earlier.
    boto3 = sys.modules.get("boto3")
    if boto3 is not None:
        boto3.DEFAULT_SESSION = None
