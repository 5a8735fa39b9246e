"""Credentials profiles in the sandbox: each a key of its own AWS account (moto tells accounts apart
by the access key), written to the sandbox's AWS config files as `aws configure --profile` would."""

from __future__ import annotations

import configparser
import os

USER_PATH = "/dask-aws-magic-sandbox/"  # the sandbox's own users: not leftovers of what it ran
FIRST_ACCOUNT = 111111111111


def add_profile(config_file: str, credentials_file: str, name: str, region: str, account_id: str,
                roots: dict[str, tuple[str, str]] | None = None) -> None:
    """A credentials profile ``name`` whose calls land in ``account_id``, with ``region`` as its region: an
    IAM user's key, or (given ``roots``, where it is recorded) a key of the account's root user."""
    from moto.iam.models import AccessKey, iam_backends

    backend = iam_backends[account_id]["aws"]
    if roots is not None:
        key = AccessKey(user_name=None, prefix="AKIA", account_id=account_id)
        backend.access_keys[key.physical_resource_id] = key  # calls signed with it land in the account
        roots[key.access_key_id] = (account_id, key.secret_access_key)
    else:
        user = backend.create_user(region_name=region, user_name=f"sandbox-{name}", path=USER_PATH)
        key = backend.create_access_key(user.name)
    _set(credentials_file, name, {"aws_access_key_id": key.access_key_id,
                                  "aws_secret_access_key": key.secret_access_key})
    _set(config_file, f"profile {name}", {"region": region})


def _set(path: str, section: str, values: dict[str, str]) -> None:
    parser = configparser.ConfigParser()
    parser.read(path)
    parser[section] = values
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        parser.write(out)
