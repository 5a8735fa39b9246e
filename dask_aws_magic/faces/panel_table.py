"""The panel's table of clusters: one row per cluster (registry and tags, as ``list`` shows them) with
Connect, Scale, Adapt, Logs and Down."""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ipywidgets as w

from ..core import lifecycle
from ..core.inventory import Survey
from ..core.operation import FINAL_STAGES, Operation
from ..core.registry import ClusterRecord
from . import render
from .panel_runtime import Background, error_html, note_html

COLUMNS = (("name", "140px"), ("backend", "70px"), ("status", "260px"), ("workers", "70px"),
           ("$/hour", "70px"), ("age", "50px"), ("dashboard", "260px"))
STATUS_COLOURS = {"running": "#1a7f37", "starting": "#9a6700", "dead": "#cf222e", "failed": "#cf222e",
                  "unreachable": "#9a6700", "unknown": "#6e7781"}
LOG_TAIL = 200  # lines of each process's log shown


@dataclass
class RowActions:
    """What a row needs from the panel."""

    background: Background
    connect: Callable[[str], str]  # cluster name -> what to tell the user
    stop: Callable[[str], Operation]  # cluster name -> the running ``down`` (or the cancelled ``up``)
    changed: Callable[[], None]  # something changed: refresh the table soon
    report: Callable[[str], None]  # a line for the panel itself (a row may be gone when it is read)


def close_tree(widget: Any) -> None:
    """Close ``widget`` and every widget inside it."""
    for child in getattr(widget, "children", ()):
        close_tree(child)
    widget.close()


def _button(label: str, tooltip: str, style: str = "", icon: str = "") -> w.Button:
    return w.Button(description=label, tooltip=tooltip, button_style=style, icon=icon,
                    layout=w.Layout(width="auto", flex="0 0 auto", margin="0 4px 0 0"))


def _tail(text: str, lines: int = LOG_TAIL) -> str:
    kept = text.splitlines()[-lines:]
    return "\n".join(kept)


class ClusterRow(w.VBox):
    """One cluster: what it is and costs, and what can be done to it."""

    def __init__(self, record: ClusterRecord, actions: RowActions):
        super().__init__()
        self.record = record
        self.cluster_name = record.name
        self.cluster_id = record.cluster_id
        self._actions = actions
        self._working = False
        self._lock = threading.RLock()
        self.cells = {key: w.HTML(layout=w.Layout(width=width)) for key, width in COLUMNS}
        self.cells["status"].add_class("dam-status")
        self.starting_bar = w.FloatProgress(min=0.0, max=1.0, layout=w.Layout(width="200px", display="none"))
        self.connect_button = _button("Connect", "Put a client connected to this cluster into this kernel",
                                      icon="plug")
        self.scale_button = _button("Scale", "Set the number of workers")
        self.adapt_button = _button("Adapt", "Scale with the load between a minimum and a maximum")
        self.logs_button = _button("Logs", "Show each process's or instance's log")
        self.down_button = _button("Down", "Stop the cluster and remove everything it created", "danger", "stop")
        self.scale_count = w.BoundedIntText(value=record.workers, min=0, max=100_000, description="Workers",
                                            layout=w.Layout(width="180px"))
        self.scale_apply = _button("Apply", "Scale to this number of workers", "primary")
        self.adapt_min = w.BoundedIntText(value=0, min=0, max=100_000, description="Minimum",
                                          layout=w.Layout(width="180px"))
        self.adapt_max = w.BoundedIntText(value=max(record.workers, 1), min=1, max=100_000, description="Maximum",
                                          layout=w.Layout(width="180px"))
        self.adapt_apply = _button("Apply", "Adapt between these bounds", "primary")
        self.down_confirm = _button("Down", "Yes: stop it and remove everything it created", "danger")
        self.down_keep = _button("Keep it", "Do not stop the cluster")
        for button, kind in ((self.connect_button, "connect"), (self.scale_button, "scale"),
                             (self.adapt_button, "adapt"), (self.logs_button, "logs"), (self.down_button, "down"),
                             (self.down_confirm, "down-confirm")):
            button.add_class(f"dam-{kind}")
        hidden = {"display": "none"}
        self.scale_form = w.HBox([self.scale_count, self.scale_apply], layout=w.Layout(**hidden))
        self.adapt_form = w.HBox([self.adapt_min, self.adapt_max, self.adapt_apply], layout=w.Layout(**hidden))
        self.down_form = w.HBox([w.HTML(f"Stop <b>{html.escape(record.name)}</b> and remove everything it "
                                        "created?"), self.down_confirm, self.down_keep],
                                layout=w.Layout(**hidden))
        self.message = w.HTML(layout=w.Layout(margin="0 0 0 8px"))
        self.logs_output = w.Output(layout=w.Layout(display="none", max_height="320px", overflow="auto",
                                                    border="1px solid #ddd"))
        self.buttons = [self.connect_button, self.scale_button, self.adapt_button, self.logs_button,
                        self.down_button]
        for button, handler in ((self.connect_button, self.click_connect), (self.scale_button, self._toggle_scale),
                                (self.adapt_button, self._toggle_adapt), (self.logs_button, self.click_logs),
                                (self.down_button, self._toggle_down), (self.scale_apply, self.click_scale),
                                (self.adapt_apply, self.click_adapt), (self.down_confirm, self.click_down),
                                (self.down_keep, self._toggle_down)):
            button.on_click(lambda _button, handler=handler: handler())
        status_cell = w.VBox([self.cells["status"], self.starting_bar], layout=w.Layout(width=COLUMNS[2][1]))
        line = w.HBox([self.cells["name"], self.cells["backend"], status_cell,
                       *(self.cells[key] for key, _ in COLUMNS[3:])])
        actions = w.HBox([*self.buttons, self.message], layout=w.Layout(align_items="center"))
        self.layout = w.Layout(border_bottom="1px solid #e5e5e5", padding="2px 0 4px 0")
        self.add_class("dam-row")
        self.add_class(f"dam-row-{record.name}")
        self.children = [line, actions, self.scale_form, self.adapt_form, self.down_form, self.logs_output]
        self.update(record)

    # -- what the table shows ------------------------------------------------------------------
    @property
    def status(self) -> str:
        return self.record.status

    def update(self, record: ClusterRecord) -> None:
        """Show the latest ``record`` of this cluster."""
        with self._lock:
            self.record = record
            cells = self.cells
            cells["name"].value = f"<b>{html.escape(record.name)}</b>"
            cells["name"].tooltip = record.note or record.profile
            cells["backend"].value = html.escape(record.backend)
            colour = STATUS_COLOURS.get(record.status, "#333")
            cells["status"].value = f"<span style='color:{colour}'>{html.escape(record.display_status)}</span>"
            workers = record.reported_workers
            shown = render.workers(record)  # what the scheduler reports; "?/N" when it did not
            cells["workers"].value = shown if workers is not None else f"<span title='not reported'>{shown}</span>"
            cells["$/hour"].value = f"${record.hourly_cost:.2f}" if record.hourly_cost else "-"
            cells["age"].value = render.age(max(0.0, time.time() - record.created_at))
            link = record.dashboard_link
            cells["dashboard"].value = (f"<a href='{html.escape(link)}' target='_blank' rel='noopener noreferrer' "
                                        f"style='color:#0969da'>{html.escape(link)}</a>" if link else "-")
            progress = record.progress if record.status == "starting" else {}
            if progress.get("total"):
                self.starting_bar.value = min(1.0, (progress.get("done") or 0) / progress["total"])
                self.starting_bar.layout.display = None
            else:
                self.starting_bar.layout.display = "none"
            if self.scale_form.layout.display == "none":
                self.scale_count.value = workers if workers is not None else record.workers
            self._enable()

    def _enable(self) -> None:
        running = self.record.status == "running" and not self._working
        for button in (self.connect_button, self.scale_button, self.adapt_button, self.scale_apply,
                       self.adapt_apply):
            button.disabled = not running
        for button in (self.logs_button, self.down_button, self.down_confirm):
            button.disabled = self._working

    def say(self, text: str) -> None:
        self.message.value = note_html(text)

    def fail(self, paragraph: str) -> None:
        self.message.value = error_html(paragraph)

    # -- actions ---------------------------------------------------------------------------
    def _act(self, action: str, work: Callable[[], str]) -> None:
        """Run ``work`` in the panel's thread pool; its answer (or error) goes into the message line."""
        with self._lock:
            if self._working:
                return
            self._working = True
            self._enable()
        self.say(f"{action}...")

        def job() -> None:
            try:
                text = work()
            finally:
                with self._lock:
                    self._working = False
                    self._enable()
                self._actions.changed()
            self.say(text)

        self._actions.background.run(job, self.fail, action, name=action.lower())

    def _follow(self, operation: Operation) -> None:
        """Show the steps of ``operation`` in the message line as they happen."""

        def show(event: Any) -> None:
            if event.stage not in FINAL_STAGES.values():
                self.say(event.message)

        operation.subscribe(show)
        for event in operation.events_since(0):
            show(event)

    def _show_only(self, form: w.Box | None) -> None:
        for each in (self.scale_form, self.adapt_form, self.down_form):
            each.layout.display = None if each is form and each.layout.display == "none" else "none"

    def _toggle_scale(self) -> None:
        self._show_only(self.scale_form)

    def _toggle_adapt(self) -> None:
        adaptive = self.record.settings.get("adaptive")
        if adaptive and self.adapt_form.layout.display == "none":
            self.adapt_min.value, self.adapt_max.value = adaptive["minimum"], adaptive["maximum"]
        self._show_only(self.adapt_form)

    def _toggle_down(self) -> None:
        self._show_only(self.down_form)

    def click_connect(self) -> None:
        name = self.cluster_name
        self._act(f"Connecting to {name}", lambda: self._actions.connect(name))

    def click_scale(self) -> None:
        name, count = self.cluster_name, self.scale_count.value
        self._show_only(None)

        def work() -> str:
            operation = lifecycle.start_scale(name, count)
            self._follow(operation)
            operation.result()
            return f"Scaled {name} to {count} worker(s)."

        self._act(f"Scaling {name} to {count} worker(s)", work)

    def click_adapt(self) -> None:
        name, low, high = self.cluster_name, self.adapt_min.value, self.adapt_max.value
        self._show_only(None)

        def work() -> str:
            lifecycle.adapt(name, low, high)
            return f"{name} now scales itself between {low} and {high} worker(s) with the load."

        self._act(f"Setting adaptive scaling of {name}", work)

    def click_logs(self) -> None:
        """Show the logs (or hide them if they are shown)."""
        if self.logs_output.layout.display != "none":
            self.logs_output.layout.display = "none"
            self.say("")
            return
        name = self.cluster_name

        def work() -> str:
            entries = lifecycle.logs(name)
            text = render.logs({label: _tail(body) for label, body in entries.items()})
            self.logs_output.outputs = ({"output_type": "stream", "name": "stdout", "text": text + "\n"},)
            self.logs_output.layout.display = None
            return f"The last {LOG_TAIL} lines of each log of {name} (click Logs again to hide them)."

        self._act(f"Reading the logs of {name}", work)

    def click_down(self) -> None:
        name = self.cluster_name
        self._show_only(None)

        def work() -> str:
            operation = self._actions.stop(name)
            self._follow(operation)
            result = operation.result()
            lines = result if isinstance(result, list) else []
            text = f"Stopped {'; '.join(lines) or name}."
            self._actions.report(text)
            return text

        self._act(f"Stopping {name}", work)


class ClusterTable(w.VBox):
    """Every cluster, one row each, kept in place between refreshes (typed values survive)."""

    def __init__(self, actions: RowActions):
        super().__init__()
        self._actions = actions
        self._lock = threading.RLock()
        self.rows: dict[str, ClusterRow] = {}  # by cluster id: a name may be reused
        self.header = w.HBox([w.HTML(f"<b>{title}</b>", layout=w.Layout(width=width)) for title, width in COLUMNS])
        self.empty = w.HTML(note_html("No clusters yet: pick a profile above and click Up."))
        self.notes = w.HTML()
        self.warnings = w.HTML()
        self.refreshed: float | None = None
        self.add_class("dam-table")
        self.children = [self.header, self.empty, self.notes, self.warnings]

    def row(self, name: str) -> ClusterRow | None:
        """The row of the cluster named ``name``, if it is shown."""
        with self._lock:
            return next((r for r in self.rows.values() if r.cluster_name == name), None)

    def update(self, found: Survey) -> None:
        """Show what ``inventory.survey()`` found."""
        with self._lock:
            shown: list[ClusterRow] = []
            for record in found.clusters:
                row = self.rows.get(record.cluster_id)
                if row is None:
                    row = self.rows[record.cluster_id] = ClusterRow(record, self._actions)
                else:
                    row.update(record)
                shown.append(row)
            for cluster_id in set(self.rows) - {r.cluster_id for r in shown}:
                close_tree(self.rows.pop(cluster_id))
            notes = []
            if found.searched:
                notes.append(f"Searched {'; '.join(found.searched)}.")
            if found.others:
                count = sum(found.others.values())
                notes.append(f"{count} cluster(s) of other owners not shown (`%dask_cluster list --all-owners`).")
            self.refreshed = time.time()
            notes.append(f"Updated {time.strftime('%H:%M:%S', time.localtime(self.refreshed))}.")
            self.notes.value = note_html(" ".join(notes))
            problems = [*found.failed, *found.corrupt, *found.ignored, *render.unverified(found.unverified)]
            self.warnings.value = "".join(error_html(p) for p in problems)
            children = (self.header, *(shown or [self.empty]), self.notes, self.warnings)
            if children != tuple(self.children):
                self.children = children

    def fail(self, paragraph: str) -> None:
        """The table could not be refreshed: say why (it is tried again at the next refresh)."""
        self.warnings.value = error_html(paragraph)
