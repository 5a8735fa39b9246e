"""The ``fargate`` and ``ecs`` backends: the scheduler and the workers as ECS tasks.

``backend`` (the interface, shared by both), ``planning`` (sizes, image, capacity providers, prices),
``sizes`` (Fargate's cpu and memory pairs), ``images`` (the default Dask image), ``container`` (what
runs in a task), ``tasks`` (task definitions, RunTask, DescribeTasks), ``infra`` (cluster, log group,
roles, container instances, EFS), ``logs`` (CloudWatch), ``keeper`` (Spot replacement), ``model``,
``discovery`` (clusters found by their tags).
"""

from .backend import ECSBackend, FargateBackend

__all__ = ["ECSBackend", "FargateBackend"]
