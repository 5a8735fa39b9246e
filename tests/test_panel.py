"""The ipywidgets panel (``%dask_cluster panel``, ``dask_aws_magic.panel()``) and the live widget of a
``ClusterHandle``: driven from Python against the local backend and EC2 in the sandbox, and through
a real kernel."""

from __future__ import annotations

import subprocess
import sys
import time

import nbformat
import pytest
from nbclient import NotebookClient

import dask_aws_magic as dam
from dask_aws_magic.core import registry
from dask_aws_magic.faces.panel import Panel
from dask_aws_magic.faces.panel_runtime import Background, explain

from .conftest import aws_sandbox

CLICK_LIMIT = 0.25  # seconds a click may take: it only starts work
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
EC2_PROFILE = """\
backend: ec2
region: us-east-1
scheduler: {type: t3.medium}
worker: {type: m6i.large, count: 2}
"""


def wait_for(predicate, timeout: float = 60.0, what: str = "the condition"):
    """Poll ``predicate`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def timed_click(button) -> float:
    started = time.perf_counter()
    button.click()
    return time.perf_counter() - started


def idle(row) -> bool:
    return not row._working


def shown(widget) -> bool:
    return widget.layout.display != "none"




@pytest.fixture
def make_panel(shell):
    """Panels refreshed every 0.2 s, closed (and checked to stop refreshing) after the test."""
    panels: list[Panel] = []

    def make(**options) -> Panel:
        panel = Panel(shell=shell, refresh=options.pop("refresh", 0.2), **options)
        panels.append(panel)
        return panel

    yield make
    for panel in panels:
        panel.close()
        panel.ticker.thread.join(5)
        assert not panel.ticker.running, "the refresh went on after the panel was closed"


@pytest.fixture
def sb(home):
    with aws_sandbox(home, {"ec2-test": EC2_PROFILE}) as sandbox:
        yield sandbox


def no_traceback(*widgets) -> None:
    for widget in widgets:
        assert "Traceback" not in widget.value and 'File "' not in widget.value


def drive_up(panel: Panel, profile: str, name: str, workers: int | None = None):
    """Pick ``profile``, type ``name`` (and ``workers``), click Up: the click must return at once."""
    launcher = panel.launcher
    launcher.profile.value = profile
    wait_for(launcher.planned.is_set, what="the plan")
    launcher.cluster_name.value = name
    if workers is not None:
        launcher.workers.value = workers
        wait_for(lambda: launcher.plan is not None and launcher.plan.workers == workers, what="the new plan")
    took = timed_click(launcher.up_button)
    assert took < CLICK_LIMIT, f"Up took {took:.3f} s"
    return panel.operations.children[-1]


def follow_to_running(panel: Panel, view, name: str):
    """The view's bar and lines follow the stages to running; the table then shows the cluster."""
    fractions = []
    view.bar.observe(lambda change: fractions.append(change["new"]), "value")
    wait_for(lambda: view.finished, 120, "the end of up")
    assert view.phase == "succeeded", view.error.value
    assert fractions == sorted(fractions) and view.bar.value == 1.0 and view.bar.bar_style == "success"
    for stage in ("plan", "launch", "boot", "connect", "ready"):
        assert f"{stage}: " in view.text
    assert view.cancel_button.layout.display == "none" and "is running" in view.title.value
    row = wait_for(lambda: (r := panel.table.row(name)) is not None and r.status == "running" and r, 30,
                   "the running row")
    assert "running" in row.cells["status"].value
    link = row.cells["dashboard"].value
    assert "target='_blank'" in link and row.record.dashboard_link in link
    assert not row.connect_button.disabled and not row.scale_button.disabled
    return row


def connect_scale_adapt_logs_down(panel: Panel, shell, row, name: str, scale_to: int) -> None:
    # Connect: a client in the namespace under the magics' client_var.
    row.connect_button.click()
    wait_for(lambda: idle(row), what="connect")
    assert "Connected" in row.message.value and "`client`" in row.message.value
    client = shell.user_ns["client"]
    assert client.submit(sum, [1, 2]).result() == 3
    assert panel.handles[name].client is client

    # Scale: the form opens, the count is applied, the table follows.
    row.scale_button.click()
    assert shown(row.scale_form)
    row.scale_count.value = scale_to
    row.scale_apply.click()
    assert not shown(row.scale_form)
    wait_for(lambda: idle(row), 120, "scale")
    assert f"Scaled {name} to {scale_to}" in row.message.value, row.message.value
    client.wait_for_workers(scale_to, timeout=60)
    wait_for(lambda: row.cells["workers"].value == str(scale_to), 30, "the new worker count in the table")

    # Adapt: bad bounds are explained in the panel, good ones are kept in the record.
    row.adapt_button.click()
    assert shown(row.adapt_form)
    row.adapt_min.value, row.adapt_max.value = 3, 2
    row.adapt_apply.click()
    wait_for(lambda: idle(row), what="adapt refused")
    assert "dam-error" in row.message.value and "minimum &lt;= maximum" in row.message.value
    no_traceback(row.message)
    row.adapt_button.click()
    row.adapt_min.value, row.adapt_max.value = 1, scale_to
    row.adapt_apply.click()
    wait_for(lambda: idle(row), what="adapt")
    assert f"between 1 and {scale_to}" in row.message.value
    assert registry.read(name).settings["adaptive"] == {"minimum": 1, "maximum": scale_to}

    # Logs: in an output area, hidden again by a second click.
    row.logs_button.click()
    wait_for(lambda: idle(row), 60, "logs")
    assert shown(row.logs_output)
    text = row.logs_output.outputs[0]["text"]
    assert "==> scheduler" in text
    row.logs_button.click()
    assert not shown(row.logs_output)

    # Down: only after a confirmation.
    row.down_button.click()
    assert shown(row.down_form)
    row.down_keep.click()
    assert not shown(row.down_form) and registry.get(name) is not None
    row.down_button.click()
    row.down_confirm.click()
    wait_for(lambda: panel.table.row(name) is None, 120, "the row to go")
    assert registry.get(name) is None
    assert "Stopped" in panel.message.value
    assert panel.table.empty in panel.table.children


# -- local -------------------------------------------------------------------------------------
def test_local_up_connect_scale_adapt_logs_down(make_panel, shell):
    panel = make_panel()
    launcher = panel.launcher
    names = [value for _, value in launcher.profile.options]
    assert {"local", "ec2-small"} <= set(names)  # every profile, built-in ones included
    assert launcher.profile.value == "local" and "backend <code>local</code>" in launcher.summary.value
    wait_for(launcher.planned.is_set, what="the plan")
    assert "nothing per hour" in launcher.plan_view.value and "dask scheduler" in launcher.plan_view.value
    assert launcher.workers.value == launcher.plan.workers

    view = drive_up(panel, "local", "paneltest", workers=1)
    assert view.phase in ("starting", "running")
    row = follow_to_running(panel, view, "paneltest")
    assert row.cells["workers"].value == "1" and row.cells["$/hour"].value == "-"
    connect_scale_adapt_logs_down(panel, shell, row, "paneltest", scale_to=2)


def test_cancel_during_a_local_start(make_panel, home):
    panel = make_panel()
    view = drive_up(panel, "local", "cancelme")
    wait_for(lambda: "launch: " in view.text, 30, "the launch")
    took = timed_click(view.cancel_button)
    assert took < CLICK_LIMIT
    assert view.cancel_button.disabled
    wait_for(lambda: view.finished, 60, "the cancel")
    assert view.phase == "cancelled" and view.bar.bar_style == "warning"
    assert "torn down" in view.error.value and "dam-error" in view.error.value
    no_traceback(view.error)
    assert registry.get("cancelme") is None
    wait_for(lambda: panel.table.row("cancelme") is None, 10, "the row to go")


def test_cancel_clicked_before_the_operation_exists(make_panel, home, monkeypatch):
    from dask_aws_magic.core import lifecycle

    started = []
    real = lifecycle.start_up

    def slow_start(*args, **kwargs):
        time.sleep(0.3)  # the Cancel click lands while the panel's thread is still calling start_up
        started.append(real(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(lifecycle, "start_up", slow_start)
    panel = make_panel()
    view = drive_up(panel, "local", "early")
    view.cancel_button.click()
    wait_for(lambda: view.finished, 60, "the cancel")
    assert view.phase == "cancelled" and started and started[0].state == "cancelled"
    assert registry.get("early") is None


def test_profiles_that_cannot_start_are_explained_in_the_panel(make_panel, home):
    profiles = home / "profiles"
    profiles.mkdir(parents=True)
    (profiles / "broken.yaml").write_text("extends: local\nworker:\n  count: lots\n")
    (profiles / "hasty.yaml").write_text("extends: local\ntimeout: 0.3\n")
    panel = make_panel()
    launcher = panel.launcher

    launcher.profile.value = "broken"
    assert "dam-error" in launcher.summary.value and "count" in launcher.summary.value
    wait_for(launcher.planned.is_set, what="the plan's error")
    assert "dam-error" in launcher.plan_view.value
    view = drive_up(panel, "broken", "")
    wait_for(lambda: view.finished, 10, "the refusal")
    assert view.phase == "failed" and "broken" in view.error.value and "could not start" in view.title.value
    no_traceback(view.error, launcher.summary, launcher.plan_view)

    view = drive_up(panel, "hasty", "hasty")
    wait_for(lambda: view.finished, 60, "the timeout")
    assert view.phase == "failed" and view.bar.bar_style == "danger"
    assert "did not become ready within 0.3 s" in view.error.value and "torn down" in view.error.value
    no_traceback(view.error)
    assert registry.get("hasty") is None
    assert len(panel.operations.children) == 1  # a new Up clears the finished views


def test_table_shows_the_progress_of_a_start_in_another_process(make_panel, home):
    panel = make_panel(refresh=30)  # refreshed by hand below
    seen: list[str] = []
    other = subprocess.Popen([sys.executable, "-m", "dask_aws_magic.faces.cli", "up", "local", "-n", "elsewhere"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            panel.refresh()
            row = panel.table.row("elsewhere")
            if row is not None and (not seen or seen[-1] != row.record.display_status):
                seen.append(row.record.display_status)
            if row is not None and row.status == "running":
                break
            time.sleep(0.02)
        assert other.wait(60) == 0, other.stderr.read()
        starting = [s for s in seen if s.startswith("starting: ")]
        assert starting and seen[-1] == "running", seen
        assert row.connect_button.disabled is False
    finally:
        if other.poll() is None:
            other.kill()
        dam.down("elsewhere")


def test_magic_and_api_return_the_panel(shell, capsys):
    first = shell.run_line_magic("dask_cluster", "panel --refresh 5")
    second = dam.panel(refresh=5)
    try:
        assert isinstance(first, Panel) and isinstance(second, Panel)
        assert first.ticker.interval == 5 and "dam-panel" in first._dom_classes
        assert first.client_var() == "client"
        shell.run_line_magic("config", "DaskClusterMagics.client_var = 'dc'")
        assert first.client_var() == "dc"
    finally:
        shell.run_line_magic("config", "DaskClusterMagics.client_var = 'client'")
        first.close()
        second.close()
    assert first.comm is None and first.launcher.up_button.comm is None  # every widget closed
    shell.run_line_magic("dask_cluster", "panel --help")
    assert "--refresh" in capsys.readouterr().out


def test_refresh_pauses_while_no_view_shows_the_panel(make_panel):
    panel = make_panel(refresh=0.05)
    wait_for(lambda: panel.table.refreshed, 10, "the first refresh")
    assert panel.watched  # never shown by a front end (driven from Python): it refreshes
    panel._view_count = 1  # what JupyterLab reports when it shows the panel...
    panel._view_count = 0  # ...and when that output is cleared or the notebook closed
    assert not panel.watched
    time.sleep(0.2)  # a tick that had already started may still land
    paused_at = panel.table.refreshed
    time.sleep(0.5)
    assert panel.table.refreshed == paused_at
    panel._view_count = 1  # shown again: refreshed at once, and on
    wait_for(lambda: panel.table.refreshed != paused_at, 5, "the refresh to resume")


def test_background_threads_carry_the_cells_parent_header():
    class Shell:
        def __init__(self):
            self.current = {"header": {"msg_id": "later-cell"}}
            self.seen = []

        def get_parent(self):
            return self.current

        def set_thread_parent(self, parent):
            previous, self.current = self.current, parent
            return previous

        def reset_thread_parent(self, token):
            self.current = token

    shell = Shell()
    shell.current = {"header": {"msg_id": "panel-cell"}}
    background = Background(shell)
    shell.current = {"header": {"msg_id": "later-cell"}}
    errors = []
    background.run(lambda: shell.seen.append(shell.get_parent()["header"]["msg_id"]), errors.append, "x").join(5)
    background.run(lambda: 1 / 0, errors.append, "Dividing").join(5)
    assert shell.seen == ["panel-cell"] and shell.current["header"]["msg_id"] == "later-cell"
    assert errors == [explain("Dividing", ZeroDivisionError("division by zero"))]
    assert errors[0].startswith("Dividing failed: division by zero (ZeroDivisionError).")


# -- the ClusterHandle's live widget -----------------------------------------------------------
def test_handle_shows_the_live_cluster_widget_in_a_kernel_and_html_elsewhere(home, monkeypatch):
    import IPython.display

    from dask_aws_magic.faces import progress

    shown_bundles = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False: shown_bundles.append(obj))
    handle = dam.up("local", workers=1, progress=False)
    try:
        handle._ipython_display_()  # a terminal or a script: today's HTML, no widget
        assert WIDGET_VIEW not in shown_bundles[-1] and "Dask cluster local" in shown_bundles[-1]["text/html"]

        monkeypatch.setattr(progress, "in_notebook", lambda: True)
        handle._ipython_display_()
        bundle = shown_bundles[-1]
        assert WIDGET_VIEW in bundle and "text/html" in bundle and bundle["text/plain"].startswith("<ClusterHandle")
        widget = handle.cluster._widget()
        assert bundle[WIDGET_VIEW]["model_id"] == widget.model_id
        status, scaling = widget.children
        assert handle.dashboard_link in status.value and "Workers" in status.value
        assert "Manual" in scaling.children[1].get_title(0) and "Adaptive" in scaling.children[1].get_title(1)

        handle.close()  # not connected any more: the HTML only
        handle._ipython_display_()
        assert WIDGET_VIEW not in shown_bundles[-1]
    finally:
        handle.down()


# -- EC2 in the sandbox -----------------------------------------------------------------------
@pytest.mark.sandbox
def test_ec2_up_connect_scale_adapt_logs_down(sb, make_panel, shell):
    panel = make_panel(refresh=0.5)
    launcher = panel.launcher
    launcher.reload()
    launcher.profile.value = "ec2-test"
    wait_for(launcher.planned.is_set, what="the plan")
    plan = launcher.plan_view.value
    assert "backend <code>ec2</code>" in launcher.summary.value
    assert "m6i.large" in plan and "on-demand" in plan and "with spot" in plan and "security-group" in plan
    assert launcher.workers.value == 2

    view = drive_up(panel, "ec2-test", "ec2-panel", workers=1)
    row = follow_to_running(panel, view, "ec2-panel")
    assert row.cells["backend"].value == "ec2" and row.cells["$/hour"].value == f"${0.0416 + 0.096:.2f}"
    connect_scale_adapt_logs_down(panel, shell, row, "ec2-panel", scale_to=2)


@pytest.mark.sandbox
def test_ec2_cancel_during_start(sb, make_panel):
    sb.boot_delay = 3.0
    panel = make_panel(refresh=0.5)
    view = drive_up(panel, "ec2-test", "ec2-cancel")
    wait_for(lambda: "boot: " in view.text, 60, "the boot")
    row = wait_for(lambda: panel.table.row("ec2-cancel"), 10, "the starting row")
    wait_for(lambda: row.status == "starting" and row.connect_button.disabled, 10, "a starting row")
    view.cancel_button.click()
    wait_for(lambda: view.finished, 120, "the cancel")
    assert view.phase == "cancelled" and "torn down" in view.error.value
    no_traceback(view.error)
    assert registry.get("ec2-cancel") is None


@pytest.mark.sandbox
def test_ec2_refusal_is_explained_in_the_panel(sb, make_panel):
    sb.inject_fault("ec2:RunInstances", "UnauthorizedOperation", message="You are not authorized", times=None)
    panel = make_panel(refresh=0.5)
    view = drive_up(panel, "ec2-test", "ec2-refused")
    wait_for(lambda: view.finished, 120, "the failure")
    assert view.phase == "failed" and "lacks a permission" in view.error.value and "torn down" in view.error.value
    no_traceback(view.error)
    assert registry.get("ec2-refused") is None


# -- a real kernel -----------------------------------------------------------------------------
def cell_text(cell) -> str:
    parts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type == "error":
            parts.append(f"{out.ename}: {out.evalue}")
        elif "data" in out:
            parts.append(out.data.get("text/plain", ""))
    return "".join(parts).strip()


@pytest.mark.kernel
def test_up_from_the_panel_leaves_the_kernel_free(home):
    notebook = nbformat.v4.new_notebook()
    client = NotebookClient(notebook, timeout=120, kernel_name="python3")
    with client.setup_kernel():
        def run(source: str):
            cell = nbformat.v4.new_code_cell(source)
            notebook.cells.append(cell)
            client.execute_cell(cell, len(notebook.cells) - 1)
            assert not [o for o in cell.outputs if o.output_type == "error"], cell_text(cell)
            return cell

        shown_panel = run("%load_ext dask_aws_magic\np = %dask_cluster panel --refresh 0.5\n"
                          "p.launcher.planned.wait(30)\np")
        assert any(WIDGET_VIEW in o.get("data", {}) for o in shown_panel.outputs)
        up_models = [s for s in client.widget_state.values() if s.get("description") == "Up"]
        assert up_models, "the panel's widgets never reached the front end"

        run("import time\np.launcher.cluster_name.value = 'kernelpanel'\nstarted = time.monotonic()\n"
            "p.launcher.up_button.click()\nclick = time.monotonic() - started\nview = p.operations.children[-1]")
        # The next cell runs while the cluster is still starting.
        busy = cell_text(run("print(f'{click:.3f}', view.finished, time.monotonic() - started)"))
        took, finished, _ = busy.split()
        assert float(took) < CLICK_LIMIT and finished == "False", busy

        ready = cell_text(run("while not view.finished: time.sleep(0.05)\nprint(view.phase)"))
        assert ready == "succeeded"
        run("while (row := p.table.row('kernelpanel')) is None or row.status != 'running': time.sleep(0.05)\n"
            "row.connect_button.click()\nwhile row._working: time.sleep(0.05)")
        assert cell_text(run("print(client.submit(lambda: 6 * 7).result())")) == "42"

        handle = run("import dask_aws_magic\nh = dask_aws_magic.attach('kernelpanel')\nh")
        kinds = {kind for o in handle.outputs for kind in o.get("data", {})}
        assert {WIDGET_VIEW, "text/html", "text/plain"} <= kinds  # the live widget, with HTML for the rest

        gone = run("row.down_button.click()\nrow.down_confirm.click()\n"
                   "while p.table.row('kernelpanel') is not None: time.sleep(0.05)\n"
                   "p.close()\np.ticker.thread.join(5)\nprint(p.ticker.running)")
        assert cell_text(gone) == "False"
    assert registry.get("kernelpanel") is None


@pytest.mark.kernel
def test_output_of_the_panels_threads_goes_to_the_panels_cell(home):
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    try:
        panel_cell = kc.execute("import dask_aws_magic\np = dask_aws_magic.panel(refresh=60)")
        kc.get_shell_msg(timeout=60)
        later_cell = kc.execute("import time\np.background.run(lambda: (time.sleep(0.5), print('from the panel')),"
                                " print, 'printing')")
        stream_parent = None
        deadline = time.monotonic() + 30
        while stream_parent is None and time.monotonic() < deadline:
            try:
                msg = kc.get_iopub_msg(timeout=1)
            except Exception:  # queue.Empty: keep waiting until the deadline
                continue
            if msg["msg_type"] == "stream" and "from the panel" in msg["content"]["text"]:
                stream_parent = msg["parent_header"].get("msg_id")
        assert stream_parent == panel_cell != later_cell
        kc.execute_interactive("p.close()", timeout=30)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
