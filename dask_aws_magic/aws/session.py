"""Sessions and clients for every AWS backend, the credential check, and the ``aws(doing)`` guard
that turns any boto3 failure into one :class:`AwsError` paragraph."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..core.errors import AwsError
from .errors import explain

CREDENTIAL_VARIABLES = (
    "AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE",
)
CONNECT_TIMEOUT = 5.0  # seconds to open a connection to an AWS endpoint
READ_TIMEOUT = 30.0  # seconds to wait for an answer (RunInstances of many instances is the slowest)
MAX_ATTEMPTS = 9  # in all, the first included: throttling and transient errors, with adaptive rate limiting

SESSION_VARIABLES = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
    "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
)
CONFIG_FILES = (("AWS_CONFIG_FILE", "~/.aws/config"), ("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"))

_sessions: dict[tuple[Any, ...], Any] = {}
_clients: dict[tuple[Any, ...], Any] = {}
_lock = threading.RLock()


def _on_ec2() -> bool:
    for marker in ("/sys/devices/virtual/dmi/id/board_vendor", "/sys/hypervisor/uuid"):
        try:
            text = Path(marker).read_text().lower()
        except OSError:
            continue
        if "amazon" in text or text.startswith("ec2"):
            return True
    return False


def credentials_available() -> bool:
    """True when AWS credentials are configured, found without network traffic where possible."""
    if any(os.environ.get(v) for v in CREDENTIAL_VARIABLES):
        return True
    config_files = [
        Path(os.environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials")).expanduser(),
        Path(os.environ.get("AWS_CONFIG_FILE", "~/.aws/config")).expanduser(),
    ]
    if any(path.is_file() for path in config_files):
        return True
    return _on_ec2()


def environment() -> tuple[Any, ...]:
    """Everything outside the code that changes which credentials, region and endpoint a session
    uses: the AWS variables and the config files' modification times."""
    stamps = []
    for variable, default in CONFIG_FILES:
        try:
            stamps.append(Path(os.environ.get(variable, default)).expanduser().stat().st_mtime_ns)
        except OSError:
            stamps.append(None)
    return (*(os.environ.get(v) for v in SESSION_VARIABLES), *stamps)


def session(aws_profile: str | None = None) -> Any:
    """The boto3 session of a credentials profile (None: the default chain), made once per
    environment: a new session reloads every service model (~0.2 s), a client of a cached one does not."""
    import boto3
    import botocore.exceptions

    key = (aws_profile, environment())
    with _lock:
        if key not in _sessions:
            try:
                _sessions[key] = boto3.Session(profile_name=aws_profile)
            except botocore.exceptions.ProfileNotFound:
                raise AwsError(
                    f"The AWS credentials profile {aws_profile!r} (field `aws_profile`) is not in ~/.aws/config "
                    "or ~/.aws/credentials. Fix the name, or create it with `aws configure --profile NAME`."
                ) from None
        return _sessions[key]


def default_region(aws_profile: str | None = None) -> str | None:
    """The region AWS's own configuration gives ``aws_profile`` (variables, ~/.aws/config), or None."""
    return session(aws_profile).region_name


def client(service: str, region: str | None, aws_profile: str | None = None, *,
           endpoint_url: str | None = None, attempts: int = MAX_ATTEMPTS) -> Any:
    """A cached boto3 client (keyed by everything that changes where it points), with explicit
    timeouts so a hung endpoint fails instead of blocking ``up``. ``endpoint_url`` overrides
    ``AWS_ENDPOINT_URL``; fewer ``attempts`` make a listing give up sooner on a scope that fails."""
    key = (service, region, aws_profile, endpoint_url, attempts, environment())
    with _lock:  # boto3 sessions are not thread-safe; the clients they make are
        if key not in _clients:
            from botocore.config import Config

            config = Config(connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
                            retries={"mode": "adaptive", "total_max_attempts": attempts})
            _clients[key] = session(aws_profile).client(service, region_name=region, endpoint_url=endpoint_url,
                                                        config=config)
        return _clients[key]


@contextlib.contextmanager
def aws(doing: str) -> Iterator[None]:
    """Turn any boto3 failure inside into one :class:`AwsError` paragraph about ``doing``."""
    import botocore.exceptions

    try:
        yield
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise explain(exc, doing) from None
