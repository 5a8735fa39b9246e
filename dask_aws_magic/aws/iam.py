"""Per-cluster IAM roles: created by ``up`` with exactly the permissions the cluster's machines
need, deleted by ``down``. Roles live under one path, so leftovers are easy to find."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from typing import Any

from ..core.errors import LaunchError
from .errors import error_code

PATH = "/dask-aws-magic/"
INLINE_POLICY = "dask-aws-magic"
REFUSED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}


def role_name(cluster_id: str, purpose: str = "") -> str:
    """The name of the cluster's role for ``purpose`` ("" for the instances' role)."""
    return f"dask-aws-magic-{cluster_id}" + (f"-{purpose}" if purpose else "")


def secret_read_policy(secret_arn: str) -> dict[str, Any]:
    """Reading one secret, nothing else."""
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": secret_arn}]}


def create_role(iam: Any, name: str, service: str, policy: dict[str, Any], tags: list[dict[str, str]],
                description: str = "dask-aws-magic cluster role") -> str:
    """A role that ``service`` (e.g. ``ec2.amazonaws.com``) may assume, with ``policy`` inline; its ARN."""
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]}
    arn = iam.create_role(RoleName=name, Path=PATH, AssumeRolePolicyDocument=json.dumps(trust),
                          Description=description, Tags=tags, MaxSessionDuration=3600)["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName=INLINE_POLICY, PolicyDocument=json.dumps(policy))
    return str(arn)


def create_instance_profile(iam: Any, name: str, tags: list[dict[str, str]]) -> str:
    """An instance profile of the same name holding role ``name``; its ARN."""
    arn = iam.create_instance_profile(InstanceProfileName=name, Path=PATH, Tags=tags)["InstanceProfile"]["Arn"]
    iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
    return str(arn)


def role_of_instance_profile(iam: Any, name: str) -> str:
    """The ARN of the role in an existing instance profile (the profile's ``iam_instance_profile``)."""
    import botocore.exceptions

    try:
        roles = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]["Roles"]
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) == "NoSuchEntity":
            raise LaunchError(f"`instance.iam_instance_profile` names {name!r}, which does not exist in this "
                              "account: create it, or remove the field to let dask-aws-magic create a role "
                              "for the cluster.") from None
        raise
    if not roles:
        raise LaunchError(f"The instance profile {name!r} in `instance.iam_instance_profile` holds no role: "
                          "add one (`aws iam add-role-to-instance-profile`).")
    return str(roles[0]["Arn"])


def delete_role(iam: Any, name: str) -> bool:
    """Delete role ``name``, its inline and attached policies and its instance profiles; False if it
    did not exist. First the way ``create_role`` and ``create_instance_profile`` made it (four calls),
    then, if something else still holds it, by listing what does."""
    import botocore.exceptions

    for step in (lambda: iam.remove_role_from_instance_profile(InstanceProfileName=name, RoleName=name),
                 lambda: iam.delete_instance_profile(InstanceProfileName=name),
                 lambda: iam.delete_role_policy(RoleName=name, PolicyName=INLINE_POLICY)):
        try:
            step()
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) != "NoSuchEntity":
                raise
    try:
        iam.delete_role(RoleName=name)
        return True
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) == "NoSuchEntity":
            return False
        if error_code(exc) != "DeleteConflict":
            raise
    return _delete_role_and_what_holds_it(iam, name)


def _delete_role_and_what_holds_it(iam: Any, name: str) -> bool:
    """Delete role ``name`` after every instance profile and policy that holds it (listed)."""
    import botocore.exceptions

    try:
        for profile in iam.list_instance_profiles_for_role(RoleName=name)["InstanceProfiles"]:
            iam.remove_role_from_instance_profile(InstanceProfileName=profile["InstanceProfileName"], RoleName=name)
            if profile["InstanceProfileName"] == name:  # ours; never one the user made
                iam.delete_instance_profile(InstanceProfileName=name)
        for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
            iam.delete_role_policy(RoleName=name, PolicyName=policy)
        for attached in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
            iam.detach_role_policy(RoleName=name, PolicyArn=attached["PolicyArn"])
        iam.delete_role(RoleName=name)
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
        delete_instance_profile(iam, name)  # a profile left without its role by an interrupted up
        return False
    return True


def delete_instance_profile(iam: Any, name: str) -> bool:
    """Delete the instance profile ``name`` if it exists."""
    import botocore.exceptions

    try:
        iam.delete_instance_profile(InstanceProfileName=name)
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
        return False
    return True


def refused(exc: BaseException) -> bool:
    """True when AWS refused for want of a permission."""
    return error_code(exc) in REFUSED


@contextlib.contextmanager
def permission_needed(doing: str, option: str, instead: str) -> Iterator[None]:
    """Turn AWS refusing an IAM action (CreateRole, PassRole, ...) inside the block into an error that
    names the missing permission and the profile ``option`` that does without it (``instead``
    says what setting it does)."""
    import botocore.exceptions

    try:
        yield
    except botocore.exceptions.ClientError as exc:
        found = re.search(r"\b(iam:[A-Za-z]+)", str(exc))
        if not (refused(exc) and found):  # another refusal (not IAM's) keeps its own explanation
            raise
        action = found.group(1)
        message = exc.response.get("Error", {}).get("Message", "")
        raise LaunchError(
            f"AWS refused {action} while {doing}: your identity lacks the `{action}` permission ({message}). "
            f"Ask for it to be granted, or set `{option}` in the profile: {instead}."
        ) from None
