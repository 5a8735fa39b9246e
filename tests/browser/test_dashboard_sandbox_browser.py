"""A proxied dashboard page cannot act as JupyterLab's origin (issue 16, items 1 and 4), in a real
JupyterLab in headless Chromium: a real cluster's dashboard, in a Plots pane and in its own tab,
renders (bokeh and its websocket) but cannot read or write through the Jupyter API; a forged cluster
on the emulated AWS is not proxied at all."""

from __future__ import annotations

import json
import time

import pytest

NAME = "sandboxed"
# What a hostile page would try: read the files, create one, reach the JupyterLab page around it.
ATTACKS = """async () => {
    const out = {};
    try {
        const r = await fetch('/api/contents', {credentials: 'include'});
        out.read = 'status ' + r.status + ': ' + (await r.text()).slice(0, 200);
    } catch (e) { out.read = 'blocked: ' + e; }
    try {
        const r = await fetch('/api/contents/pwned.txt', {method: 'PUT', credentials: 'include',
            headers: {'Content-Type': 'application/json'},
            body: JSON.stringify({type: 'file', format: 'text', content: 'pwned'})});
        out.write = 'status ' + r.status;
    } catch (e) { out.write = 'blocked: ' + e; }
    try { out.cookie = document.cookie; } catch (e) { out.cookie = 'denied: ' + e.name; }
    try { out.parent = window.parent === window ? 'top' : window.parent.document.title; }
    catch (e) { out.parent = 'denied: ' + e.name; }
    try { out.storage = String(window.localStorage.length); } catch (e) { out.storage = 'denied: ' + e.name; }
    out.origin = window.origin;
    return out;
}"""


def _api(lab, method, path, body=None):
    return lab.api(method, f"dask-aws-magic/{path}", body)


def _wait_status(lab, name, status, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = {c["name"]: c for c in _api(lab, "GET", "clusters")["clusters"]}
        if (status is None and name not in rows) or (name in rows and rows[name]["status"] == status):
            return
        time.sleep(0.5)
    raise AssertionError(f"{name} never became {status}: {_api(lab, 'GET', 'clusters')}")


def _assert_contained(result, lab):
    """Nothing of Jupyter was read, written or reached from the proxied page."""
    assert result["origin"] == "null", result  # an opaque origin, not Jupyter's
    assert "pwned" not in result["read"] and '"content"' not in result["read"], result
    assert not result["read"].startswith("status 200"), result
    assert not result["write"].startswith("status 20"), result
    assert result["cookie"].startswith("denied") and result["storage"].startswith("denied"), result
    assert result["parent"] in ("top",) or result["parent"].startswith("denied"), result
    assert not (lab.root / "pwned.txt").exists()


@pytest.mark.timeout(300)
def test_a_proxied_dashboard_cannot_use_the_jupyter_api(lab_page, jupyter_lab):
    page = lab_page.open(jupyter_lab.write_notebook("sandbox.ipynb", [""]))
    _api(jupyter_lab, "POST", "clusters", {"profile": "local", "name": NAME, "workers": 1})
    try:
        _wait_status(jupyter_lab, NAME, "running")
        # A plot in a lab pane: bokeh renders and streams (its websocket goes through the proxy)...
        lab_page.command("dask-aws-magic:dashboard-plots", {"cluster": NAME, "plot": "individual-task-stream"})
        page.frame_locator(".dam-plot iframe").locator("canvas").first.wait_for(timeout=60_000)
        assert page.locator(".dam-plot iframe").get_attribute("sandbox") == "allow-scripts allow-popups allow-downloads"
        frame = next(f for f in page.frames if "/dask-aws-magic/dashboard/" in f.url)
        assert "/~" in frame.url  # the page and its parts come through its capability path
        lab_page.screenshot("plot-pane")
        # ...but the page is in an opaque origin: the Jupyter API answers it nothing.
        _assert_contained(frame.evaluate(ATTACKS), jupyter_lab)

        # The whole dashboard in a tab of its own: sandboxed by the proxy's CSP, not by an iframe.
        with page.context.expect_page() as opened:
            lab_page.command("dask-aws-magic:dashboard", {"cluster": NAME})
        tab = opened.value
        tab.wait_for_load_state()
        assert "Dask" in tab.title(), tab.title()
        tab.locator("canvas").first.wait_for(timeout=60_000)
        assert tab.evaluate("() => window.opener") is None  # no handle on the JupyterLab window
        _assert_contained(tab.evaluate(ATTACKS), jupyter_lab)
        tab.close()
    finally:
        _api(jupyter_lab, "DELETE", f"clusters/{NAME}")
        _wait_status(jupyter_lab, NAME, None)


@pytest.fixture
def forged_lab(chromium, tmp_path, monkeypatch):
    """A JupyterLab of its own, run by the victim's identity, inside a fresh AWS sandbox with IAM enforced;
    someone's instance serves a hostile page and the intruder tagged it as the victim's cluster."""
    from dask_aws_magic import sandbox
    from dask_aws_magic.aws.tags import TAG_CLUSTER, TAG_CLUSTER_ID, TAG_OWNER, TAG_PROTOCOL, TAG_ROLE

    from ..conftest import sandbox_identity
    from ..test_trust import FORGED_DASHBOARD, _remove_instances_of_someone, _run_as, _someones_instance, _tag
    from .lab import JupyterLab

    with sandbox.Sandbox() as sb:
        sb.victim = sandbox_identity(sb, "victim", "AdministratorAccess")
        sb.intruder = sandbox_identity(sb, "intruder", "ReadOnlyAccess", allow=["ec2:CreateTags"])
        sb.someone = sandbox_identity(sb, "someone", "AdministratorAccess")
        lab = JupyterLab(root=tmp_path / "notebooks", home=tmp_path / "dask-aws-magic-home")
        with monkeypatch.context() as env, sb.enforce_iam():
            _run_as(env, "victim")
            victim = sb.victim.client("sts").get_caller_identity()["Arn"]
            forged = _someones_instance(sb, FORGED_DASHBOARD)
            _tag(sb, [forged], **{TAG_CLUSTER: "prod", TAG_CLUSTER_ID: "dam-0f0f0f0f0f0f", TAG_ROLE: "scheduler",
                                  TAG_PROTOCOL: "tcp", TAG_OWNER: victim})
            try:
                lab.start(tmp_path)
                yield lab, sb, forged
            finally:
                lab.stop()
                _remove_instances_of_someone(sb)
        assert not sb.resources(), sb.resources()


@pytest.fixture
def forged_lab_page(request, browser, forged_lab, artifacts, pytestconfig):
    from .conftest import _page

    yield from _page(request, browser, forged_lab[0], artifacts, pytestconfig)


@pytest.mark.sandbox
@pytest.mark.timeout(300)
def test_a_forged_cluster_is_shown_unverified_and_never_proxied(forged_lab, forged_lab_page):
    lab, sb, forged = forged_lab
    page = forged_lab_page.open(lab.write_notebook("forged.ipynb", [""]))
    forged_lab_page.command("dask-aws-magic:open-sidebar")
    sidebar = page.locator("#dask-aws-magic-sidebar")
    note = sidebar.locator(".dam-unverified")
    note.wait_for(timeout=60_000)
    assert forged in note.inner_text() and "nothing proves" in note.inner_text()
    assert sidebar.locator(".dam-cluster-prod").count() == 0
    forged_lab_page.screenshot("unverified", sidebar)
    served = sb.console_output(forged).count("GET /status")
    # Opened by hand (a link someone sent): the proxy answers 404 and never reaches the instance.
    answer = page.request.get(f"{lab.url}dask-aws-magic/dashboard/prod/status?token={lab.token}")
    assert answer.status == 404 and "unverified" in json.loads(answer.text())["message"]
    assert sb.console_output(forged).count("GET /status") == served
    assert not (lab.root / "pwned.txt").exists()
