"""The panel in a real JupyterLab, in headless Chromium: Up on the local profile, follow it to
running in the table, Down. A screenshot of each state is kept."""

from __future__ import annotations

import json

import pytest

NOTEBOOK = ["%load_ext dask_aws_magic\n%dask_cluster panel --refresh 1"]


@pytest.mark.timeout(300)
def test_panel_up_and_down_in_jupyterlab(lab_page, jupyter_lab):
    page = lab_page.open(jupyter_lab.write_notebook("panel.ipynb", NOTEBOOK))
    lab_page.run_all_cells()
    panel = page.locator(".dam-panel")
    panel.locator(".dam-plan").wait_for()  # the local profile's plan is shown
    assert "nothing per hour" in panel.locator(".dam-plan").inner_text()
    panel.locator(".dam-table").get_by_text("No clusters yet").wait_for()
    lab_page.screenshot("1-panel", panel)

    panel.locator(".dam-up").click()
    panel.locator(".dam-operation .dam-lines").get_by_text("boot:").wait_for()
    lab_page.screenshot("2-starting", panel)

    row = panel.locator(".dam-row-local")
    row.locator(".dam-status").get_by_text("running", exact=True).wait_for(timeout=90_000)
    panel.locator(".dam-operation").get_by_text("is running").wait_for()
    link = row.get_by_role("link")
    assert link.get_attribute("target") == "_blank" and link.inner_text().startswith("http://127.0.0.1:")
    lab_page.screenshot("3-running", panel)
    lab_page.screenshot("3-running-page")

    row.locator(".dam-down").click()
    row.locator(".dam-down-confirm").wait_for()
    lab_page.screenshot("4-confirm-down", panel)
    row.locator(".dam-down-confirm").click()
    row.wait_for(state="detached", timeout=60_000)
    panel.locator(".dam-table").get_by_text("No clusters yet").wait_for()
    lab_page.screenshot("5-down", panel)

    records = list((jupyter_lab.home / "clusters").glob("*.json"))
    assert not records, [json.loads(r.read_text())["name"] for r in records]
