"""JSON models of what the core returns: clusters, plans, surveys."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from ..backends import Plan
from ..core.inventory import Survey
from ..core.registry import ClusterRecord
from .operations import OperationStore


def cluster(record: ClusterRecord, store: OperationStore | None = None) -> dict[str, Any]:
    """What the sidebar shows of a cluster (no settings nor resources: key material may live there)."""
    operation = store.running_for(record.name) if store is not None else None
    return {
        "name": record.name, "cluster_id": record.cluster_id, "backend": record.backend,
        "profile": record.profile, "status": record.status, "display_status": record.display_status,
        "progress": record.progress or None, "scheduler_address": record.scheduler_address,
        "dashboard_link": record.dashboard_link, "workers": record.workers,
        "reported_workers": record.reported_workers, "hourly_cost": record.hourly_cost,
        "adaptive": record.settings.get("adaptive"), "owner": record.owner,
        "created_at": record.created_at, "age": max(0.0, time.time() - record.created_at), "note": record.note,
        "operation": operation.id if operation is not None else None,
    }


def survey(found: Survey, store: OperationStore) -> dict[str, Any]:
    return {
        "clusters": [cluster(r, store) for r in found.clusters], "searched": found.searched,
        "failed": found.failed, "others": found.others, "ignored": found.ignored,
        "unverified": [entry.to_json() for entry in found.unverified],
    }


def plan(the_plan: Plan) -> dict[str, Any]:
    data = asdict(the_plan)
    data.pop("settings", None)
    data["hourly_cost"] = the_plan.hourly_cost
    data["spot_hourly_cost"] = the_plan.spot_hourly_cost
    return data
