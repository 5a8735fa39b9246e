"""The JupyterLab sidebar in a real JupyterLab, in headless Chromium: launch a local cluster from a
profile, follow it to running, open a dashboard plot as a lab panel and the dashboard in a tab
(both through the server's proxy), the logs, Use in notebook, run the cell, see the client, shut the
cluster down. A screenshot of each state is kept."""

from __future__ import annotations

import json
import re

import pytest

NAME = "sidebar"


def expect(locator):
    """Playwright's ``expect``, imported late (collection must not need Playwright)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def notebook_of(page, path):
    """The notebook panel of ``path`` (other notebooks of the session's lab may be open, hidden)."""
    widget_id = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=path).first.get_attribute("data-id")
    return page.locator(f"[id='{widget_id}']")


def sidebar_of(page):
    return page.locator("#dask-aws-magic-sidebar")


@pytest.mark.timeout(300)
def test_sidebar_launch_dashboard_use_in_notebook_and_shut_down(lab_page, jupyter_lab):
    page = lab_page.open(jupyter_lab.write_notebook("sidebar.ipynb", ["", "client"]))
    lab_page.command("dask-aws-magic:open-sidebar")
    sidebar = sidebar_of(page)
    sidebar.locator(".dam-profile-local").wait_for()
    sidebar.locator(".dam-clusters").get_by_text("No clusters yet").wait_for()
    assert str(jupyter_lab.home / "profiles") in sidebar.locator(".dam-folder-path").inner_text()
    lab_page.screenshot("1-sidebar", sidebar)

    # Launch: the form shows the plan and its cost.
    sidebar.locator(".dam-profile-local .dam-launch").click()
    form = sidebar.locator(".dam-launch-form")
    form.locator(".dam-name").fill(NAME)
    form.locator(".dam-workers-input").fill("1")
    form.locator(".dam-plan-cost").get_by_text("nothing per hour").wait_for()
    assert "1 ×" in form.locator(".dam-plan-summary").inner_text()
    lab_page.screenshot("2-launch-form", sidebar)
    form.locator(".dam-launch-submit").click()

    row = sidebar.locator(f".dam-cluster-{NAME}")
    row.locator(".dam-progress").wait_for(timeout=30_000)  # starting, with Cancel
    assert row.locator(".dam-cancel").count() == 1
    lab_page.screenshot("3-starting", sidebar)
    sidebar.locator(f".dam-cluster-{NAME}.dam-status-running").wait_for(timeout=90_000)
    assert row.locator(".dam-workers").inner_text() == "1 worker"
    assert row.locator(".dam-cost").inner_text() == "nothing per hour"
    lab_page.screenshot("4-running", sidebar)

    # Scale through its dialog.
    row.locator(".dam-scale").click()
    page.locator(".jp-Dialog input").fill("2")
    page.locator(".jp-Dialog .jp-mod-accept").click()
    row.locator(".dam-workers").get_by_text("2 workers").wait_for(timeout=60_000)

    # A dashboard plot as a lab panel, rendered by bokeh through the proxy.
    row.locator(".dam-plots").click()
    dialog = page.locator(".jp-Dialog")
    dialog.locator("select").select_option("Task Stream")
    dialog.locator(".jp-mod-accept").click()
    plot = page.frame_locator(".dam-plot iframe")
    plot.locator("canvas").first.wait_for(timeout=60_000)
    lab_page.screenshot("5-dashboard-plot")

    # The whole dashboard in a browser tab, through the proxy too.
    with page.context.expect_page() as opened:
        row.locator(".dam-dashboard").click()
    tab = opened.value
    tab.wait_for_load_state()
    # Through the cluster's capability path: the page, sandboxed, sends no cookie to authenticate.
    assert re.search(rf"/dask-aws-magic/dashboard/{NAME}/~[0-9a-f]{{32}}/status$", tab.url), tab.url
    assert "Dask" in tab.title(), tab.title()
    tab.close()

    # The logs in a lab panel.
    row.locator(".dam-logs").click()
    logs = page.locator(".dam-logs-view")
    logs.locator(".dam-log pre").first.wait_for()
    assert "Scheduler" in logs.inner_text()
    lab_page.screenshot("6-logs")
    page.locator(".lm-TabBar-tab", has_text="sidebar.ipynb").first.click()
    cells = notebook_of(page, "sidebar.ipynb").locator(".jp-Cell")

    # Use in notebook: the attach cell goes into the active notebook; run it and see the client.
    row.locator(".dam-use").click()
    # (CodeMirror splits the line into highlighted spans: compare the cell's whole text)
    expect(cells.first).to_contain_text(f"%dask_cluster attach {NAME}")
    lab_page.run_all_cells()
    cells.first.locator(".jp-OutputArea-output").get_by_text("`client` is connected").wait_for(timeout=60_000)
    cells.nth(1).locator(".jp-OutputArea-output").get_by_text(
        "Client").first.wait_for(timeout=30_000)
    lab_page.screenshot("7-use-in-notebook")

    # Shut down, after the confirmation.
    row.locator(".dam-shut-down").click()
    page.locator(".jp-Dialog").get_by_text(f"Shut down {NAME}?").wait_for()
    lab_page.screenshot("8-confirm-shut-down")
    page.locator(".jp-Dialog .jp-mod-warn.jp-mod-accept").click()
    row.wait_for(state="detached", timeout=60_000)
    sidebar.locator(".dam-clusters").get_by_text("No clusters yet").wait_for()
    lab_page.screenshot("9-shut-down", sidebar)
    records = list((jupyter_lab.home / "clusters").glob("*.json"))
    assert not records, [json.loads(r.read_text())["name"] for r in records]


@pytest.mark.timeout(120)
def test_palette_has_every_action_and_hidden_sidebar_stops_polling(lab_page, jupyter_lab):
    page = lab_page.open(jupyter_lab.write_notebook("palette.ipynb", [""]))
    commands = page.evaluate(
        "() => window.jupyterapp.commands.listCommands().filter(c => c.startsWith('dask-aws-magic:'))")
    assert len(commands) == 12, commands
    lab_page.command("dask-aws-magic:open-sidebar")
    sidebar_of(page).locator(".dam-profile-local").wait_for()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/dask-aws-magic/clusters" in r.url else None)
    page.wait_for_timeout(4500)
    assert len(requests) >= 2, requests  # visible: refreshed every 2 s
    # The profiles' folder is outside the folder the lab serves: a dialog gives its path.
    sidebar_of(page).locator(".dam-open-folder").click()
    page.locator(".jp-Dialog").get_by_text(str(jupyter_lab.home / "profiles")).wait_for()
    page.locator(".jp-Dialog .jp-mod-accept").click()
    lab_page.command("application:toggle-left-area")
    page.wait_for_timeout(500)
    requests.clear()
    page.wait_for_timeout(5000)
    assert requests == [], requests  # hidden: no refresh


@pytest.mark.timeout(120)
def test_a_missing_server_extension_is_said_clearly(lab_page, jupyter_lab):
    page = lab_page.page
    # The API's routes answer as a server without the extension would (the extension's own files still load).
    page.route(re.compile(r"/dask-aws-magic/(profiles|clusters)"), lambda route: route.fulfill(
        status=404, content_type="text/html", body="<html><body>404 : Not Found</body></html>"))
    lab_page.open(jupyter_lab.write_notebook("missing.ipynb", [""]))
    lab_page.command("dask-aws-magic:open-sidebar")
    error = sidebar_of(page).locator(".dam-error.dam-missing")
    error.wait_for()
    assert "server extension is not running" in error.inner_text()
    assert "jupyter server extension list" in error.inner_text()
    lab_page.screenshot("missing", sidebar_of(page))


@pytest.mark.sandbox
@pytest.mark.timeout(420)
def test_sidebar_on_ec2_in_the_sandbox(sandbox_lab_page, sandbox_lab):
    lab_page, name = sandbox_lab_page, "sidebar-ec2"
    page = lab_page.open(sandbox_lab.write_notebook("ec2.ipynb", ["", "len(client.scheduler_info()['workers'])"]))
    lab_page.command("dask-aws-magic:open-sidebar")
    sidebar = sidebar_of(page)
    sidebar.locator(".dam-profile-ec2-small .dam-launch").click()
    form = sidebar.locator(".dam-launch-form")
    form.locator(".dam-name").fill(name)
    form.locator(".dam-workers-input").fill("2")
    cost = form.locator(".dam-plan-cost")
    cost.wait_for()
    assert "/hour" in cost.inner_text(), cost.inner_text()  # EC2 costs money: the form says how much
    lab_page.screenshot("1-launch-form", sidebar)
    form.locator(".dam-launch-submit").click()

    row = sidebar.locator(f".dam-cluster-{name}")
    row.locator(".dam-progress").wait_for(timeout=60_000)
    lab_page.screenshot("2-starting", sidebar)
    sidebar.locator(f".dam-cluster-{name}.dam-status-running").wait_for(timeout=240_000)
    assert "/hour" in row.locator(".dam-cost").inner_text()
    lab_page.screenshot("3-running", sidebar)

    row.locator(".dam-plots").click()
    dialog = page.locator(".jp-Dialog")
    dialog.locator("select").select_option("Workers Memory")
    dialog.locator(".jp-mod-accept").click()
    page.frame_locator(".dam-plot iframe").locator("canvas").first.wait_for(timeout=60_000)
    page.locator(".lm-TabBar-tab", has_text="ec2.ipynb").first.click()
    cells = notebook_of(page, "ec2.ipynb").locator(".jp-Cell")

    row.locator(".dam-use").click()
    expect(cells.first).to_contain_text(f"%dask_cluster attach {name}")
    lab_page.run_all_cells()
    cells.first.locator(".jp-OutputArea-output").get_by_text("`client` is connected").wait_for(timeout=60_000)
    cells.nth(1).locator(".jp-OutputArea-output").get_by_text(
        "2", exact=True).wait_for(timeout=60_000)
    lab_page.screenshot("4-use-in-notebook")

    row.locator(".dam-shut-down").click()
    page.locator(".jp-Dialog .jp-mod-warn.jp-mod-accept").click()
    row.wait_for(state="detached", timeout=120_000)
    lab_page.screenshot("5-shut-down", sidebar)
