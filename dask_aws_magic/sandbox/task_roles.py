"""A task's role, as ECS hands it to the task's containers: its credentials from the container
credentials endpoint (:mod:`.task_metadata`), if the role exists and trusts ECS tasks."""

from __future__ import annotations

import functools
import json
from typing import Any

from .metadata import role_credentials
from .task_metadata import TaskMetadataServer

ECS_TASKS = "ecs-tasks.amazonaws.com"


class StartFailure(Exception):
    """Why a task cannot start (its stop code and reason)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


def task_role_environment(metadata: TaskMetadataServer, backend: Any, definition: Any, task: Any) -> dict[str, str]:
    """The variables that give the task's containers its task role (none without one); a role that does
    not exist or does not trust ECS tasks fails the task's start, as on ECS."""
    arn = getattr(definition, "task_role_arn", None)
    if not arn:
        return {}
    if not _trusts_ecs_tasks(backend.account_id, arn):
        raise StartFailure("TaskFailedToStart", f"ResourceInitializationError: ECS was unable to assume the role "
                                                f"'{arn}' that was provided for this task. Please verify that the "
                                                f"role being passed has the proper trust relationship and IAM "
                                                f"permissions")
    issue = functools.partial(role_credentials, backend.account_id, backend.region_name, arn, task.id)
    return metadata.add_credentials(task.id, issue)


def _trusts_ecs_tasks(account: str, arn: str) -> bool:
    from moto.iam.models import iam_backends

    try:
        role = iam_backends[account]["aws"].get_role_by_arn(arn)
    except Exception:
        return False
    statements = json.loads(role.assume_role_policy_document).get("Statement", [])
    for statement in statements if isinstance(statements, list) else [statements]:
        services = (statement.get("Principal") or {}).get("Service", [])
        if statement.get("Effect") == "Allow" and ECS_TASKS in (services if isinstance(services, list) else [services]):
            return True
    return False
