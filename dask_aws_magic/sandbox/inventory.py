"""What is left in moto: the sandbox's leak check, read from the backends (no API calls)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from .accounts import USER_PATH


def _backends(backend_dict: Any) -> Iterator[Any]:
    """Every already-created backend (all accounts, all regions) of a moto BackendDict."""
    for account in list(backend_dict.values()):
        yield from list(account.values())


def resources() -> dict[str, list[str]]:
    """Ids per kind of everything user-created that still exists; empty kinds are left out."""
    found: dict[str, list[str]] = defaultdict(list)
    _ec2(found)
    _iam(found)
    _others(found)
    return {kind: sorted(ids) for kind, ids in found.items() if ids}


def _ec2(found: dict[str, list[str]]) -> None:
    from moto.ec2.models import ec2_backends

    for backend in _backends(ec2_backends):
        gone: set[str] = set()
        for reservation in list(backend.reservations.values()):
            for instance in list(reservation.instances):
                if instance.state == "terminated":
                    gone.add(instance.id)
                    gone.update(nic.id for nic in instance.nics.values())
                else:
                    found["instances"].append(instance.id)
        default_vpcs = {v.id for v in list(backend.vpcs.values()) if v.is_default}
        found["vpcs"] += [v.id for v in list(backend.vpcs.values()) if not v.is_default]
        for subnets in list(backend.subnets.values()):
            found["subnets"] += [s.id for s in list(subnets.values()) if not s.default_for_az]
        for groups in list(backend.groups.values()):
            found["security_groups"] += [g.id for g in list(groups.values()) if g.name != "default"]
        found["key_pairs"] += list(backend.key_pairs)
        found["launch_templates"] += list(backend.launch_templates)
        found["elastic_ips"] += [a.allocation_id or a.public_ip for a in list(backend.addresses)]
        for volume in list(backend.volumes.values()):
            attachment = volume.attachment
            if attachment is None or attachment.instance.state != "terminated":
                found["volumes"].append(volume.id)
            else:
                gone.add(volume.id)
        existing = _existing_ec2_ids(backend)
        for resource_id, tags in list(backend.tags.items()):
            if tags and resource_id not in gone and resource_id in existing and resource_id not in default_vpcs:
                found["tagged"].append(resource_id)


def _existing_ec2_ids(backend: Any) -> set[str]:
    """Ids that DescribeTags may report for resources that still exist (moto keeps stale tags)."""
    ids: set[str] = set()
    for reservation in list(backend.reservations.values()):
        ids.update(i.id for i in reservation.instances)
    ids.update(backend.vpcs)
    for subnets in list(backend.subnets.values()):
        ids.update(subnets)
    for groups in list(backend.groups.values()):
        ids.update(groups)
    ids.update(backend.volumes)
    ids.update(backend.launch_templates)
    ids.update(k.id for k in list(backend.key_pairs.values()))
    ids.update(backend.enis)
    ids.update(a.allocation_id for a in list(backend.addresses))
    return ids


def _iam(found: dict[str, list[str]]) -> None:
    from moto.iam.models import iam_backends

    for backend in _backends(iam_backends):
        found["iam_roles"] += [r.name for r in list(backend.roles.values())]
        found["instance_profiles"] += list(backend.instance_profiles)
        found["iam_users"] += [name for name, user in list(backend.users.items()) if user.path != USER_PATH]
        found["iam_policies"] += [arn for arn in list(backend.managed_policies) if ":aws:policy/" not in arn]


def _others(found: dict[str, list[str]]) -> None:
    from moto.ecs.models import ecs_backends
    from moto.logs.models import logs_backends
    from moto.s3.models import s3_backends
    from moto.ssm.models import ssm_backends

    for backend in _backends(ecs_backends):
        found["ecs_clusters"] += [c.arn for c in list(backend.clusters.values()) if c.status != "INACTIVE"]
        for tasks in list(backend.tasks.values()):
            found["ecs_tasks"] += [t.task_arn for t in list(tasks.values()) if t.last_status != "STOPPED"]
        found["ecs_services"] += [s.arn for s in list(backend.services.values()) if s.status == "ACTIVE"]
        for revisions in list(backend.task_definitions.values()):
            found["ecs_task_definitions"] += [d.arn for d in list(revisions.values()) if d.status == "ACTIVE"]
        found["ecs_capacity_providers"] += [p.name for p in list(backend.capacity_providers.values())]
    _autoscaling_and_efs(found)
    for backend in _backends(logs_backends):
        found["log_groups"] += list(backend.groups)
    for backend in _backends(ssm_backends):
        found["ssm_parameters"] += [n for n in list(backend._parameters) if not n.startswith("/aws/")]
    for backend in _backends(s3_backends):
        found["s3_buckets"] += [name for name in list(backend.buckets) if not _environments_bucket(backend, name)]
    _secrets(found)


def _secrets(found: dict[str, list[str]]) -> None:
    from moto.secretsmanager.models import secretsmanager_backends

    for backend in _backends(secretsmanager_backends):
        found["secrets"] += [name for name, secret in list(backend.secrets.items())
                             if not getattr(secret, "deleted_date", None)]


def _autoscaling_and_efs(found: dict[str, list[str]]) -> None:
    from moto.autoscaling.models import autoscaling_backends
    from moto.efs.models import efs_backends

    for backend in _backends(autoscaling_backends):
        found["autoscaling_groups"] += list(backend.autoscaling_groups)
    for backend in _backends(efs_backends):
        found["efs_file_systems"] += list(backend.file_systems_by_id)


ENVIRONMENTS_PREFIX = "dask-aws-magic-envs-"


def _environments_bucket(backend: Any, name: str) -> bool:
    """software.sync's bucket: named and tagged as such (``down`` leaves it: a cache, not a leak)."""
    if not name.startswith(ENVIRONMENTS_PREFIX):
        return False
    try:
        tags = backend.get_bucket_tagging(name)
    except Exception:
        return False
    return any(t.get("Key") == "dask-aws-magic:purpose" and t.get("Value") == "environments"
               for t in (tags or {}).get("Tags", []))


def caches() -> dict[str, list[str]]:
    """What is left on purpose, as a cache shared by the account's clusters: software.sync's buckets."""
    from moto.s3.models import s3_backends

    found = [name for backend in _backends(s3_backends) for name in list(backend.buckets)
             if _environments_bucket(backend, name)]
    return {"environment_buckets": sorted(found)} if found else {}
