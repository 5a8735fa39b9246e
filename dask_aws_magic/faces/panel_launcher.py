"""The panel's launcher: a profile picker with the profile's summary and plan, name and worker-count
fields, and the Up button."""

from __future__ import annotations

import html
import threading
from collections.abc import Callable

import ipywidgets as w

from ..backends.base import Plan
from ..core import lifecycle
from . import render
from .panel_runtime import Background, error_html, note_html

UpRequest = Callable[[str, "str | None", "int | None"], None]  # profile, name, workers (None: the profile's)


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:.4f}"


def plan_html(plan: Plan) -> str:
    """What ``up`` would create, with the estimated cost per hour on-demand and with spot."""
    pad = "style='text-align:left;padding:1px 14px 1px 0'"
    cells = "".join(
        "<tr>" + "".join(f"<td {pad}>{value}</td>" for value in (
            r.count, html.escape(r.kind), html.escape(r.role), html.escape(r.detail),
            _money(r.hourly_cost) if r.hourly_cost else "-", _money(r.spot_hourly_cost))) + "</tr>"
        for r in plan.resources
    )
    head = "".join(f"<th {pad}>{h}</th>" for h in ("count", "kind", "role", "detail", "$/h on-demand", "$/h spot"))
    workers = (f"{plan.workers} worker(s) x {plan.threads_per_worker} thread(s), "
               f"{render.memory(plan.memory_per_worker)} each.")
    if plan.hourly_cost:
        cost = (f"Estimated cost: <b>${plan.hourly_cost:.4f}/hour</b> on-demand, "
                f"<b>${plan.spot_hourly_cost:.4f}/hour</b> with spot.")
    else:
        cost = "Estimated cost: nothing per hour (it runs on this machine)."
    notes = html.escape("; ".join(plan.notes))
    return (f"<div class='dam-plan'><table style='font-size:12px;border-collapse:collapse'><tr>{head}</tr>{cells}"
            f"</table><div>{html.escape(workers)} {cost}</div>"
            + (f"<div style='font-size:12px;color:#555'>Notes: {notes}.</div>" if notes else "") + "</div>")


class Launcher(w.VBox):
    """Pick a profile, read what it would create and cost, then click Up."""

    def __init__(self, background: Background, on_up: UpRequest):
        super().__init__()
        self._background = background
        self._on_up = on_up
        self._profiles: dict[str, dict[str, str]] = {}
        self._plan_token = 0
        self._user_workers = False  # the worker count was typed, not taken from the plan
        self._from_plan = False
        self._quiet = False
        self.plan: Plan | None = None
        self.planned = threading.Event()  # set whenever the plan (or why there is none) is shown
        self.profile = w.Dropdown(description="Profile", layout=w.Layout(width="320px"))
        self.reload_button = w.Button(icon="refresh", tooltip="Read the profiles again",
                                      layout=w.Layout(width="36px"))
        self.summary = w.HTML()
        self.plan_view = w.HTML()
        self.cluster_name = w.Text(description="Name", layout=w.Layout(width="260px"))
        self.workers = w.BoundedIntText(value=1, min=1, max=100_000, description="Workers",
                                        layout=w.Layout(width="180px"))
        self.up_button = w.Button(description="Up", icon="play", button_style="primary",
                                  tooltip="Start the cluster in the background; the kernel stays free")
        self.up_button.add_class("dam-up")
        self.add_class("dam-launcher")
        self.children = [
            w.HBox([self.profile, self.reload_button]), self.summary, self.plan_view,
            w.HBox([self.cluster_name, self.workers, self.up_button]),
        ]
        self.reload_button.on_click(lambda _button: self.reload())
        self.up_button.on_click(lambda _button: self.click_up())
        self.workers.observe(self._workers_typed, "value")
        self.profile.observe(lambda _change: self._quiet or self._show_profile(), "value")
        self.reload()

    def reload(self) -> None:
        """Read the profiles (built-in ones included) into the picker, keeping the choice if it still exists."""
        self._profiles = {row["name"]: row for row in lifecycle.profiles()}
        current = self.profile.value
        options = [(f"{name} ({row['backend']})", name) for name, row in self._profiles.items()]
        self._quiet = True  # one plan for the final choice, not one per option the picker passes through
        try:
            self.profile.options = options
            if current in self._profiles:
                self.profile.value = current
            elif "local" in self._profiles:
                self.profile.value = "local"
        finally:
            self._quiet = False
        self._show_profile()

    def click_up(self) -> None:
        """Start the chosen profile (what the Up button does)."""
        self._on_up(self.profile.value, self.cluster_name.value.strip() or None,
                    self.workers.value if self._user_workers else None)

    # -- profile summary and plan -----------------------------------------------------------
    def _show_profile(self) -> None:
        name = self.profile.value
        row = self._profiles.get(name)
        if row is None:
            return
        self._user_workers = False
        description = row["description"]
        if description.startswith("invalid: "):
            self.summary.value = error_html(description[len("invalid: "):])
        else:
            self.summary.value = (f"<div class='dam-summary'><b>{html.escape(name)}</b>: backend "
                                  f"<code>{html.escape(row['backend'])}</code>, {html.escape(row['source'])}. "
                                  f"{html.escape(description)}</div>")
        self.cluster_name.placeholder = name
        self._replan()

    def _workers_typed(self, _change: object) -> None:
        if self._from_plan:
            return
        self._user_workers = True
        self._replan()

    def _replan(self) -> None:
        """Compute the plan in a thread (on AWS it asks for prices and instance types); a newer
        request makes an older answer obsolete."""
        self._plan_token += 1
        token, profile = self._plan_token, self.profile.value
        workers = self.workers.value if self._user_workers else None
        self.plan, self.plan_view.value = None, note_html("Planning...")
        self.planned.clear()

        def work() -> None:
            plan = lifecycle.plan(profile, workers=workers)
            if token != self._plan_token:
                return
            self.plan = plan
            self.cluster_name.placeholder = plan.name
            self.plan_view.value = plan_html(plan)
            if not self._user_workers and self.workers.value != plan.workers:
                self._from_plan = True
                try:
                    self.workers.value = max(plan.workers, self.workers.min)
                finally:
                    self._from_plan = False
            self.planned.set()

        def failed(text: str) -> None:
            if token == self._plan_token:
                self.plan_view.value = error_html(text)
                self.planned.set()

        self._background.run(work, failed, f"Planning the profile {profile!r}", name="plan")
