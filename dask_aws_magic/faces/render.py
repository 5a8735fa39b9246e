"""Plain-text rendering of records, plans and status, shared by the magics and the terminal command."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ..backends.base import Plan
from ..core.registry import ClusterRecord


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def age(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def memory(nbytes: int | None) -> str:
    return "auto" if not nbytes else f"{nbytes / 2**30:.1f} GiB"


def clusters(records: Sequence[ClusterRecord]) -> str:
    if not records:
        return "No clusters. Start one with `%dask_cluster up` (the local profile) or `up PROFILE`."
    now = time.time()
    rows = [
        (r.name, r.backend, r.display_status, workers(r), r.scheduler_address or "-", r.dashboard_link or "-",
         age(now - r.created_at), f"${r.hourly_cost:.2f}" if r.hourly_cost else "-", r.note)
        for r in records
    ]
    return table(("NAME", "BACKEND", "STATUS", "WORKERS", "SCHEDULER", "DASHBOARD", "AGE", "$/HOUR", "NOTE"), rows)


def workers(record: ClusterRecord) -> str:
    """The workers its scheduler reported; never the number asked for as if it were there."""
    if record.reported_workers is not None:
        return str(record.reported_workers)
    if record.status in ("dead", "stopped"):
        return "0"
    return f"?/{record.workers}" if record.workers else "?"  # not reported (starting, unreachable): of those asked


def survey(found: Any) -> str:
    """The clusters of an ``inventory.survey()``, where it looked, and what it could not read."""
    lines = [clusters(found.clusters)]
    if found.searched:
        lines.append(f"Searched: {'; '.join(found.searched)}.")
    if found.others:
        whose = ", ".join(f"{count} of {owner or 'no owner tag'}" for owner, count in sorted(found.others.items()))
        lines.append(f"Not shown: clusters of other owners ({whose}); `list --all-owners` shows them.")
    lines += unverified(found.unverified)
    lines += [f"warning: {problem}" for problem in [*found.corrupt, *found.ignored]]
    return "\n".join(lines)


def unverified(entries: Sequence[Any]) -> list[str]:
    """Resources that carry our tags without a proof: each with its claim and why it is not believed."""
    if not entries:
        return []
    lines = ["Unverified: they carry dask-aws-magic tags, but nothing proves they belong to a cluster; nothing "
             "acts on them unless you name them (`down --unverified ID ...`):"]
    for entry in entries:
        claim = f"tagged as cluster {entry.name or '?'} ({entry.cluster_id or 'no id'}) of {entry.owner or 'no owner'}"
        lines.append(f"  {', '.join(entry.resources)} ({entry.backend}, {entry.scope}): {claim}; {entry.reason}")
    return lines


def plan(p: Plan) -> str:
    lines = [f"Plan for cluster {p.name!r} from profile {p.profile!r} on backend {p.backend}:"]
    priced = any(r.hourly_cost or r.spot_hourly_cost for r in p.resources)
    rows = []
    for r in p.resources:
        row: tuple[Any, ...] = (r.count, r.kind, r.role, r.detail)
        if priced:
            spot = "unknown" if not r.spot_hourly_cost and r.role == "worker" and r.kind == "instance" else (
                "-" if r.spot_hourly_cost is None else f"${r.spot_hourly_cost:.4f}")
            row += (f"${r.hourly_cost:.4f}" if r.hourly_cost else "-", spot)
        rows.append(row)
    headers = ("COUNT", "KIND", "ROLE", "DETAIL") + (("$/H ON-DEMAND", "$/H SPOT") if priced else ())
    lines.append(table(headers, rows))
    lines.append(f"Workers: {p.workers} x {p.threads_per_worker} thread(s), {memory(p.memory_per_worker)} each.")
    if priced:
        spot = f"${p.spot_hourly_cost:.4f}/hour with spot" if p.spot_hourly_cost else "spot price unknown"
        lines.append(f"Estimated cost: ${p.hourly_cost:.4f}/hour on-demand, {spot}.")
    lines += [f"Note: {n}" for n in p.notes]
    return "\n".join(lines)


def status(info: dict[str, Any]) -> str:
    keys = ("name", "backend", "profile", "status", "scheduler_address", "dashboard_link", "workers",
            "threads", "memory", "tasks", "adaptive", "uptime", "cost", "note")
    lines = []
    for key in keys:
        if key not in info:
            continue
        value = info[key]
        if key == "memory":
            value = memory(value)
        elif key == "uptime":
            value = age(value)
        elif key == "cost":
            if not value:
                continue
            value = f"about ${value:.2f}/hour, ${value * info['uptime'] / 3600:.2f} so far (on-demand prices)"
        lines.append(f"{key.replace('_', ' '):>18}: {value}")
    return "\n".join(lines)


def profiles(rows: Sequence[dict[str, str]]) -> str:
    return table(("NAME", "BACKEND", "SOURCE", "DESCRIPTION"),
                 [(r["name"], r["backend"], r["source"], r["description"]) for r in rows])


def logs(entries: dict[str, str]) -> str:
    if not entries:
        return "No logs."
    return "\n\n".join(f"==> {label} <==\n{text}" for label, text in entries.items())
