"""What a cluster's tasks run in and with: the ECS cluster, the log group, the task execution role
and (``ecs``) the container instances' auto scaling group and an EFS file system. Each ``create_*``
makes one thing (tagged); each ``delete_*`` removes it and says whether it existed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from ...aws import iam
from ...aws.errors import error_code

LOG_PREFIX = "/dask-aws-magic/"
ECR_PULL = ["ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer",
            "ecr:BatchGetImage"]
CONTAINER_INSTANCE_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
DELETE_WAIT = 300.0


def names(cluster: str, cluster_id: str) -> dict[str, str]:
    """The names of the cluster's ECS things, from its name and id (so ``down`` finds them without a record)."""
    base = f"dask-aws-magic-{cluster}-{cluster_id}"
    return {"cluster": base, "log_group": f"{LOG_PREFIX}{cluster}-{cluster_id}", "family": base,
            "asg": base, "template": base}


def ecs_tags(tags: list[dict[str, str]]) -> list[dict[str, str]]:
    """AWS's tag list in ECS's spelling (``key``/``value``)."""
    return [{"key": t["Key"], "value": t["Value"]} for t in tags]


def arn_partition(arn: str) -> str:
    return arn.split(":")[1] if arn.startswith("arn:") else "aws"


# -- the ECS cluster ---------------------------------------------------------------------------
def create_cluster(ecs: Any, name: str, tags: list[dict[str, str]], fargate: bool) -> str:
    """A new ECS cluster (with the FARGATE and FARGATE_SPOT capacity providers on Fargate); its name."""
    options: dict[str, Any] = {}
    if fargate:
        options = {"capacityProviders": ["FARGATE", "FARGATE_SPOT"],
                   "defaultCapacityProviderStrategy": [{"capacityProvider": "FARGATE", "weight": 1}]}
    ecs.create_cluster(clusterName=name, tags=ecs_tags(tags), **options)
    return name


def check_cluster(ecs: Any, name: str) -> None:
    """Raise a :class:`ProfileError` when ``ecs.cluster`` does not name an active cluster."""
    from ...core.errors import ProfileError

    found = ecs.describe_clusters(clusters=[name]).get("clusters", [])
    if not found or found[0].get("status") != "ACTIVE":
        raise ProfileError(f"`ecs.cluster` names {name!r}, which is not an active ECS cluster in this region: fix "
                           "the name, or remove the field to let dask-aws-magic create a cluster.")


def delete_cluster(ecs: Any, name: str) -> bool:
    """Delete the ECS cluster ``name``; False when there is none to delete (a deleted cluster stays
    described, INACTIVE, for a while: deleting it again is no removal)."""
    found = ecs.describe_clusters(clusters=[name]).get("clusters", [])
    if not found or found[0].get("status") == "INACTIVE":
        return False
    try:
        ecs.delete_cluster(cluster=name)
    except Exception as exc:
        if error_code(exc) in ("ClusterNotFoundException",):
            return False
        raise
    return True


# -- logs -------------------------------------------------------------------------------------
def create_log_group(logs: Any, name: str, retention: int, tags: list[dict[str, str]]) -> str:
    logs.create_log_group(logGroupName=name, tags={t["Key"]: t["Value"] for t in tags})
    logs.put_retention_policy(logGroupName=name, retentionInDays=retention)
    return name


def delete_log_group(logs: Any, name: str) -> bool:
    try:
        logs.delete_log_group(logGroupName=name)
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return False
        raise
    return True


# -- roles ------------------------------------------------------------------------------------
def execution_policy(log_group_arn: str, secret_arn: str | None) -> dict[str, Any]:
    """What ECS needs to start the tasks: pull the image, write this log group, read this secret."""
    statements: list[dict[str, Any]] = [
        {"Effect": "Allow", "Action": ECR_PULL, "Resource": "*"},
        {"Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": [log_group_arn, f"{log_group_arn}:*"]},
    ]
    if secret_arn:
        statements.append({"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": secret_arn})
    return {"Version": "2012-10-17", "Statement": statements}


def role_arn(iam_client: Any, name_or_arn: str, field_name: str) -> str:
    """The ARN of an existing role the profile names; a :class:`ProfileError` when there is none."""
    from ...core.errors import ProfileError

    if name_or_arn.startswith("arn:"):
        return name_or_arn
    try:
        return str(iam_client.get_role(RoleName=name_or_arn)["Role"]["Arn"])
    except Exception as exc:
        if error_code(exc) == "NoSuchEntity":
            raise ProfileError(f"`{field_name}` names the role {name_or_arn!r}, which does not exist in this "
                               "account: fix the name, or remove the field.") from None
        raise


def create_instance_role(iam_client: Any, name: str, tags: list[dict[str, str]]) -> str:
    """The container instances' role (the ECS agent's permissions) and its instance profile."""
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    iam_client.create_role(RoleName=name, Path=iam.PATH, AssumeRolePolicyDocument=json.dumps(trust),
                           Description="dask-aws-magic: ECS container instances", Tags=tags)
    iam_client.attach_role_policy(RoleName=name, PolicyArn=CONTAINER_INSTANCE_POLICY)
    return iam.create_instance_profile(iam_client, name, tags)


# -- ECS on EC2: container instances ----------------------------------------------------------
def container_instance_user_data(cluster: str) -> str:
    """Joins an instance of the ECS-optimised image to ``cluster`` (the agent reads /etc/ecs/ecs.config)."""
    return ("#!/bin/bash\n"
            'C="${SANDBOX_INSTANCE_ROOT:-}/etc/ecs"\n'
            'mkdir -p "$C"\n'
            f'echo "ECS_CLUSTER={cluster}" >> "$C/ecs.config"\n'
            'echo "ECS_ENABLE_TASK_ENI=true" >> "$C/ecs.config"\n')


def create_container_instances(ec2: Any, autoscaling: Any, *, name: str, cluster: str, ami: str, itype: str,
                               count: int, subnets: list[str], security_group: str, instance_profile: str,
                               tags: list[dict[str, str]]) -> tuple[str, str]:
    """A launch template and an auto scaling group of ``count`` container instances; (template id, group)."""
    import base64

    template = ec2.create_launch_template(
        LaunchTemplateName=name,
        LaunchTemplateData={
            "ImageId": ami, "InstanceType": itype,
            "UserData": base64.b64encode(container_instance_user_data(cluster).encode()).decode(),
            "IamInstanceProfile": {"Name": instance_profile},
            "SecurityGroupIds": [security_group],
            "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
            "TagSpecifications": [{"ResourceType": "instance", "Tags": tags},
                                  {"ResourceType": "volume", "Tags": tags}],
        },
        TagSpecifications=[{"ResourceType": "launch-template", "Tags": tags}],
    )["LaunchTemplate"]["LaunchTemplateId"]
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=name, LaunchTemplate={"LaunchTemplateId": template, "Version": "$Latest"},
        MinSize=count, MaxSize=count, DesiredCapacity=count, VPCZoneIdentifier=",".join(subnets),
        Tags=[{"Key": t["Key"], "Value": t["Value"], "PropagateAtLaunch": True} for t in tags],
    )
    return template, name


def delete_container_instances(ec2: Any, autoscaling: Any, group: str | None, template: str | None,
                               sleep: Callable[[float], None], timeout: float = DELETE_WAIT) -> list[str]:
    """Remove the auto scaling group (its instances terminated) and the launch template."""
    lines = []
    if group:
        found = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
        if found:
            ids = [i["InstanceId"] for i in found[0].get("Instances", [])]
            autoscaling.delete_auto_scaling_group(AutoScalingGroupName=group, ForceDelete=True)
            lines.append(f"deleted auto scaling group {group}")
            if ids:
                _wait_terminated(ec2, ids, sleep, timeout)
                lines.append(f"terminated {len(ids)} container instance(s)")
    if template and not template.startswith("lt-"):  # a launch interrupted before its id was recorded
        found = ec2.describe_launch_templates(
            Filters=[{"Name": "launch-template-name", "Values": [template]}]).get("LaunchTemplates", [])
        template = found[0]["LaunchTemplateId"] if found else None
    if template:
        try:
            ec2.delete_launch_template(LaunchTemplateId=template)
            lines.append(f"deleted launch template {template}")
        except Exception as exc:
            if not str(error_code(exc) or "").startswith("InvalidLaunchTemplate"):
                raise
    return lines


def _wait_terminated(ec2: Any, ids: list[str], sleep: Callable[[float], None], timeout: float) -> None:
    from ...aws.tags import describe_all

    deadline = time.monotonic() + timeout
    while True:
        found = describe_all(ec2, "describe_instances", "Reservations[].Instances[]",
                             Filters=[{"Name": "instance-id", "Values": ids}])
        live = [i["InstanceId"] for i in found if i["State"]["Name"] != "terminated"]
        if not live:
            return
        if time.monotonic() > deadline:
            from ...core.errors import AwsError

            raise AwsError(f"Container instances {live} did not terminate within {timeout:g} s; run `down` again.")
        sleep(1.0)


# -- EFS --------------------------------------------------------------------------------------
def create_file_system(efs: Any, token: str, subnets: list[str], security_group: str,
                       tags: list[dict[str, str]]) -> str:
    """An encrypted EFS file system with a mount target in each subnet; its id."""
    fs = efs.create_file_system(CreationToken=token, Encrypted=True, PerformanceMode="generalPurpose",
                                Tags=tags)["FileSystemId"]
    for subnet in subnets:
        efs.create_mount_target(FileSystemId=fs, SubnetId=subnet, SecurityGroups=[security_group])
    return str(fs)


def delete_file_system(efs: Any, fs: str, sleep: Callable[[float], None]) -> bool:
    try:
        targets = efs.describe_mount_targets(FileSystemId=fs).get("MountTargets", [])
    except Exception as exc:
        if error_code(exc) == "FileSystemNotFound":
            return False
        raise
    for target in targets:
        efs.delete_mount_target(MountTargetId=target["MountTargetId"])
    deadline = time.monotonic() + DELETE_WAIT
    while True:
        try:
            efs.delete_file_system(FileSystemId=fs)
            return True
        except Exception as exc:
            if error_code(exc) == "FileSystemNotFound":
                return False
            if error_code(exc) != "FileSystemInUse" or time.monotonic() > deadline:
                raise
        sleep(2.0)
