"""A cluster's ECS tasks: task definitions, RunTask in batches of 10, DescribeTasks in batches of
100, stopping, and reading a task's address and why it stopped."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from ...aws.errors import error_code
from ...core.errors import AwsError, LaunchError

RUN_BATCH = 10  # RunTask starts at most 10 tasks per call
DESCRIBE_BATCH = 100  # DescribeTasks takes at most 100 tasks
LIVE = ("PROVISIONING", "PENDING", "ACTIVATING", "RUNNING")
STOP_WAIT = 300.0
ROLE_PROPAGATION = 60.0  # seconds a new execution role may take before ECS can assume it


def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def register(ecs: Any, family: str, container: dict[str, Any], *, fargate: bool, cpu: float, memory: int,
             execution_role: str | None, task_role: str | None, tags: list[dict[str, str]],
             volumes: list[dict[str, Any]] | None = None) -> str:
    """A task definition of one container; its ARN. Fargate tasks get their own network interface
    (awsvpc); tasks on container instances use the instance's network (host), as in the ECS guide: on
    EC2, an awsvpc task never gets a public address, and an instance holds few interfaces."""
    call: dict[str, Any] = {
        "family": family, "networkMode": "awsvpc" if fargate else "host", "containerDefinitions": [container],
        "requiresCompatibilities": ["FARGATE"] if fargate else ["EC2"], "tags": tags,
        "runtimePlatform": {"operatingSystemFamily": "LINUX", "cpuArchitecture": "X86_64"},
    }
    if fargate:
        call["cpu"], call["memory"] = str(int(cpu * 1024)), str(memory)
    if execution_role:
        call["executionRoleArn"] = execution_role
    if task_role:
        call["taskRoleArn"] = task_role
    if volumes:
        call["volumes"] = volumes
    return str(ecs.register_task_definition(**call)["taskDefinition"]["taskDefinitionArn"])


def run(ecs: Any, call: dict[str, Any], count: int, cancelled: Callable[[], bool],
        sleep: Callable[[float], None]) -> list[dict[str, Any]]:
    """Start ``count`` tasks of ``call`` (RunTask arguments without ``count``), 10 per call. A
    placement failure (no capacity) raises a :class:`LaunchError` with AWS's reasons; a new
    execution role that ECS cannot assume yet is retried for a while (IAM is eventually consistent)."""
    started: list[dict[str, Any]] = []
    deadline = time.monotonic() + ROLE_PROPAGATION
    while len(started) < count and not cancelled():
        try:
            reply = ecs.run_task(**call, count=min(RUN_BATCH, count - len(started)))
        except Exception as exc:
            if error_code(exc) in ("ClientException", "InvalidParameterException") and "assume" in str(exc).lower() \
                    and time.monotonic() < deadline:
                sleep(2.0)
                continue
            raise
        started += reply.get("tasks", [])
        failures = reply.get("failures") or []
        if failures or not reply.get("tasks"):
            reasons = "; ".join(sorted({f"{f.get('reason')}{': ' + f['detail'] if f.get('detail') else ''}"
                                        for f in failures})) or "no task was placed"
            raise PlacementFailed(started, f"ECS could not start every task ({reasons}).")
    return started


class PlacementFailed(LaunchError):
    """RunTask placed fewer tasks than asked; ``started`` are those it did start."""

    def __init__(self, started: list[dict[str, Any]], message: str) -> None:
        super().__init__(message)
        self.started = started


def describe(ecs: Any, cluster: str, arns: list[str]) -> list[dict[str, Any]]:
    """The tasks among ``arns`` that ECS knows, 100 per call."""
    found: list[dict[str, Any]] = []
    for batch in chunks(arns, DESCRIBE_BATCH):
        found += ecs.describe_tasks(cluster=cluster, tasks=batch, include=["TAGS"]).get("tasks", [])
    return found


def listed(ecs: Any, cluster: str, started_by: str) -> list[str]:
    """Every task ECS lists for the cluster id (``startedBy``), running or recently stopped."""
    pages = ecs.get_paginator("list_tasks").paginate(cluster=cluster, startedBy=started_by)
    return [arn for page in pages for arn in page.get("taskArns", [])]


def private_ip(task: dict[str, Any]) -> str | None:
    """The private address of the task's network interface, once ECS attached it."""
    for attachment in task.get("attachments") or []:
        for detail in attachment.get("details") or []:
            if detail.get("name") == "privateIPv4Address" and detail.get("value"):
                return str(detail["value"])
    return None


def interface_id(task: dict[str, Any]) -> str | None:
    for attachment in task.get("attachments") or []:
        for detail in attachment.get("details") or []:
            if detail.get("name") == "networkInterfaceId" and detail.get("value"):
                return str(detail["value"])
    return None


def subnet_id(task: dict[str, Any]) -> str | None:
    for attachment in task.get("attachments") or []:
        for detail in attachment.get("details") or []:
            if detail.get("name") == "subnetId" and detail.get("value"):
                return str(detail["value"])
    return None


def public_ip(ec2: Any, task: dict[str, Any]) -> str | None:
    """The public address of the task's network interface, if it has one."""
    eni = interface_id(task)
    if not eni:
        return None
    found = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni]).get("NetworkInterfaces", [])
    return (found[0].get("Association") or {}).get("PublicIp") if found else None


def stop_reason(task: dict[str, Any]) -> str:
    """Why a task stopped, in AWS's words: stop code, reason, the container's exit code or reason."""
    container = (task.get("containers") or [{}])[0]
    parts = [task.get("stopCode"), task.get("stoppedReason")]
    if container.get("reason"):
        parts.append(container["reason"])
    if container.get("exitCode") is not None and task.get("stopCode") == "EssentialContainerExited":
        parts.append(f"exit code {container['exitCode']}")
    return "; ".join(str(p) for p in parts if p) or "no reason given"


def stop(ecs: Any, cluster: str, arns: list[str], reason: str) -> list[str]:
    """StopTask each of ``arns`` (there is no batch call); returns those ECS knew."""
    stopped = []
    for arn in arns:
        try:
            ecs.stop_task(cluster=cluster, task=arn, reason=reason)
            stopped.append(arn)
        except Exception as exc:
            if error_code(exc) not in ("InvalidParameterException", "ClusterNotFoundException"):
                raise
    return stopped


def wait_stopped(ecs: Any, cluster: str, arns: list[str], sleep: Callable[[float], None],
                 timeout: float = STOP_WAIT) -> None:
    """Until every task of ``arns`` is STOPPED (their network interfaces then go, and the group can)."""
    deadline = time.monotonic() + timeout
    while arns:
        live = [t["taskArn"] for t in describe(ecs, cluster, arns) if t.get("lastStatus") != "STOPPED"]
        if not live:
            return
        if time.monotonic() > deadline:
            raise AwsError(f"Tasks {live} did not stop within {timeout:g} s; run `down` again.")
        arns = live
        sleep(1.0)


def deregister_family(ecs: Any, family: str) -> int:
    """Deregister every ACTIVE revision of the task definitions of ``family`` and delete them, with
    any an interrupted ``down`` deregistered only; how many were ACTIVE."""

    def listed(status: str) -> list[str]:
        pages = ecs.get_paginator("list_task_definitions").paginate(familyPrefix=family, status=status)
        return [arn for page in pages for arn in page.get("taskDefinitionArns", [])
                if arn.rsplit("/", 1)[-1].rsplit(":", 1)[0].startswith(family)]

    active = listed("ACTIVE")
    for arn in active:
        ecs.deregister_task_definition(taskDefinition=arn)
    arns = active + [arn for arn in listed("INACTIVE") if arn not in active]
    for batch in chunks(arns, 10):  # and delete them, so nothing of the cluster stays listed
        try:
            ecs.delete_task_definitions(taskDefinitions=batch)
        except Exception as exc:
            if error_code(exc) not in ("InvalidParameterException", "ClientException"):
                raise
    return len(active)


def instance_addresses(ecs: Any, ec2: Any, cluster: str, task: dict[str, Any]) -> tuple[str | None, str | None]:
    """The private and public addresses of the container instance a task runs on (host networking)."""
    arn = task.get("containerInstanceArn")
    if not arn:
        return None, None
    found = ecs.describe_container_instances(cluster=cluster, containerInstances=[arn]).get("containerInstances", [])
    if not found:
        return None, None
    reply = ec2.describe_instances(InstanceIds=[found[0]["ec2InstanceId"]])
    instance = next((i for r in reply.get("Reservations", []) for i in r.get("Instances", [])), {})
    return instance.get("PrivateIpAddress"), instance.get("PublicIpAddress")
