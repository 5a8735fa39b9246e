"""The jupyter-server extension's REST API through pytest-jupyter's ``jp_fetch``, on a real server
with unauthenticated access off: every route, with and without the token, bad bodies, unknown
clusters, a failing create, a cancel, and a cluster started by a magic in another process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse

import pytest

# pytest-jupyter's fixtures for this module only (its autouse fixtures must not reach other tests).
from pytest_jupyter.jupyter_core import *  # noqa: F403
from pytest_jupyter.jupyter_server import *  # noqa: F403
from pytest_jupyter.pytest_tornasync import *  # noqa: F403

from dask_aws_magic.aws.tags import TAG_CLUSTER, TAG_CLUSTER_ID, TAG_OWNER, TAG_PROTOCOL, TAG_ROLE
from dask_aws_magic.core import registry

from .test_trust import FORGED_DASHBOARD, _someones_instance, _tag, sb  # noqa: F401 (sb: the sandbox fixture)

API = "dask-aws-magic"
OPERATION_TIMEOUT = 120.0


@pytest.fixture
def jp_server_config():  # noqa: F811
    return {"ServerApp": {"jpserver_extensions": {"dask_aws_magic.serverext": True},
                          "allow_unauthenticated_access": False}}


@pytest.fixture
def api(home, jp_fetch, jp_asyncio_loop):  # noqa: F811
    """``api(method, path, body)`` -> (status, JSON answer), with the token; runs on the test's loop."""

    def call(method: str, path: str, body=None, **kwargs):
        if body is not None and not isinstance(body, (str, bytes)):
            body = json.dumps(body)
        if method in ("POST", "PATCH") and body is None:
            body = ""
        answer = fetch(path, method=method, body=body, **kwargs)
        text = answer.body.decode()
        if answer.headers.get("Content-Type", "").startswith("application/json") and text:
            return answer.code, json.loads(text)
        return answer.code, text

    def fetch(path: str, **kwargs):
        """A request to the API that follows the server's redirects within it (pytest-jupyter's client
        cannot follow them itself)."""
        kwargs.setdefault("raise_error", False)
        answer = jp_asyncio_loop.run_until_complete(jp_fetch(API, path, follow_redirects=False, **kwargs))
        if answer.code in (301, 302, 303, 307, 308):
            location = urllib.parse.urlsplit(answer.headers["Location"])
            kwargs["params"] = dict(urllib.parse.parse_qsl(location.query))
            return fetch(urllib.parse.unquote(location.path.split(f"/{API}/", 1)[1]), **kwargs)
        return answer

    call.loop = jp_asyncio_loop
    call.fetch = fetch
    call.jp_fetch = jp_fetch  # pytest-jupyter's own: a coroutine, for requests made at once
    return call


def follow(api, started) -> dict:
    """Poll the operation a 202 answer points at until it ends; its last JSON (with every event)."""
    code, data = started
    assert code == 202, data
    op_id = data["operation"]["id"]
    deadline = time.monotonic() + OPERATION_TIMEOUT
    while time.monotonic() < deadline:
        code, op = api("GET", f"operations/{op_id}")
        assert code == 200, op
        if op["state"] != "running":
            return op
        api.loop.run_until_complete(_sleep(0.2))
    raise AssertionError(f"operation {op_id} still running: {op}")


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


ROUTES = [
    ("GET", "profiles", None), ("GET", "profiles/local", None), ("POST", "profiles/local/plan", "{}"),
    ("GET", "clusters", None), ("POST", "clusters", '{"profile": "local"}'), ("GET", "clusters/x", None),
    ("PATCH", "clusters/x", '{"workers": 1}'), ("DELETE", "clusters/x", None), ("GET", "clusters/x/logs", None),
    ("GET", "operations", None), ("GET", "operations/op-00", None), ("POST", "operations/op-00/cancel", ""),
    ("GET", "operations/op-00/events", None), ("GET", "dashboard/x/status", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_every_route_refuses_requests_without_the_token(home, jp_fetch, jp_asyncio_loop, method, path, body):  # noqa: F811
    answer = jp_asyncio_loop.run_until_complete(
        jp_fetch(API, path, method=method, body=body, headers={"Authorization": ""}, raise_error=False))
    assert answer.code == 403, (answer.code, answer.body[:200])
    assert not (home / "clusters").exists() or not list((home / "clusters").iterdir())


def test_profiles_one_profile_and_plan(api, home):
    code, data = api("GET", "profiles")
    assert code == 200 and "local" in [p["name"] for p in data["profiles"]]
    assert data["folder"] == str(home / "profiles")
    code, one = api("GET", "profiles/local")
    assert code == 200 and one["backend"] == "local" and isinstance(one["data"], dict)
    assert api("GET", "profiles/no-such")[0] == 404
    code, plan = api("POST", "profiles/local/plan", {"name": "planned", "workers": 3,
                                                     "overrides": {"worker.nthreads": 2}})
    assert code == 200, plan
    assert plan["name"] == "planned" and plan["workers"] == 3 and plan["threads_per_worker"] == 2
    assert plan["hourly_cost"] == 0 and plan["resources"]
    assert not list((home / "clusters").glob("*.json")) if (home / "clusters").exists() else True


@pytest.mark.parametrize(("path", "body", "field"), [
    ("profiles/local/plan", {"workers": "two"}, "'workers'"),
    ("profiles/local/plan", {"workers": 0}, "'workers'"),
    ("profiles/local/plan", {"overrides": ["worker.count=2"]}, "'overrides'"),
    ("profiles/local/plan", {"overrides": {"worker.nthreads": "many"}}, "worker.nthreads"),
    ("profiles/local/plan", {"colour": "blue"}, "'colour'"),
    ("profiles/local/plan", "[1, 2]", "JSON object"),
    ("profiles/local/plan", "{not json", "not valid JSON"),
    ("clusters", {"profile": "local", "name": "Bad Name!"}, "name"),
    ("clusters", {"profile": 3}, "'profile'"),
    ("clusters", {"profile": "local", "workers": True}, "'workers'"),
    ("clusters", {"profile": "no-such-profile"}, "no-such-profile"),
    ("clusters", {"profile": "local", "name": "zz\n"}, "'zz\\n' cannot be used"),  # issue 16.8: `$` took it
    ("clusters", '{"profile": "local", "overrides": ' + "[" * 50_000 + "]" * 50_000 + "}", "nests"),  # 16.10
    ("profiles/local/plan", {"overrides": {"a": [[[[[[[[1]]]]]]]]}}, "more than 8 deep"),
])
def test_bad_bodies_are_answered_400_naming_the_field(api, home, path, body, field):
    code, data = api("POST", path, body)
    assert code == 400, data
    assert field in data["message"], data["message"]
    assert not (home / "clusters").exists() or not list((home / "clusters").glob("*.json"))


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "clusters/ghost", None), ("PATCH", "clusters/ghost", {"workers": 2}),
    ("PATCH", "clusters/ghost", {"adapt": {"minimum": 0, "maximum": 2}}), ("DELETE", "clusters/ghost", None),
    ("GET", "clusters/ghost/logs", None), ("GET", "operations/op-0123", None),
    ("POST", "operations/op-0123/cancel", None), ("GET", "dashboard/ghost/status", None),
])
def test_an_unknown_cluster_or_operation_is_404(api, method, path, body):
    code, data = api(method, path, body)
    assert code == 404, data
    assert "ghost" in data["message"] or "op-0123" in data["message"]


def test_bad_patch_bodies(api):
    for body, field in (({}, "'workers'"), ({"workers": 1, "adapt": {}}, "'adapt'"),
                        ({"workers": -1}, "'workers'"), ({"adapt": {"minimum": 0}}, "'maximum'"),
                        ({"adapt": 3}, "'adapt'")):
        code, data = api("PATCH", "clusters/ghost", body)
        assert code == 400 and field in data["message"], (body, data)


def test_a_create_that_fails_reports_why_and_leaves_nothing(api, home):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        started = api("POST", "clusters", {"profile": "local", "name": "doomed", "workers": 1,
                                           "overrides": {"scheduler.port": busy.getsockname()[1]}})
        assert started[1]["follow"].endswith(f"/dask-aws-magic/operations/{started[1]['operation']['id']}")
        op = follow(api, started)
    assert op["state"] == "failed" and "scheduler process exited" in op["error"], op
    assert op["events"][-1]["stage"] == "failed"
    assert registry.get("doomed") is None
    assert api("GET", "clusters/doomed")[0] == 404


def test_a_create_can_be_cancelled(api, home):
    started = api("POST", "clusters", {"profile": "local", "name": "cancelme", "workers": 1})
    op_id = started[1]["operation"]["id"]
    code, listed = api("GET", "clusters")
    row = next(c for c in listed["clusters"] if c["name"] == "cancelme")
    assert row["status"] == "starting" and row["operation"] == op_id
    code, data = api("POST", f"operations/{op_id}/cancel")
    assert code == 202 and data["cancelled"] is True
    op = follow(api, started)
    assert op["state"] == "cancelled" and "torn down" in op["error"], op
    assert registry.get("cancelme") is None


def test_create_follow_scale_adapt_logs_dashboard_and_delete(api, home):
    started = api("POST", "clusters", {"profile": "local", "name": "sidebar", "workers": 1})
    op_id = started[1]["operation"]["id"]
    assert op_id in [o["id"] for o in api("GET", "operations")[1]["operations"]]
    op = follow(api, started)
    assert op["state"] == "succeeded", op
    stages = [e["stage"] for e in op["events"]]
    assert stages[0] == "plan" and "boot" in stages and stages[-1] == "succeeded"
    code, later = api("GET", f"operations/{op_id}", params={"since": len(op["events"]) - 1})
    assert [e["stage"] for e in later["events"]] == ["succeeded"]
    code, stream = api("GET", f"operations/{op_id}/events")
    assert code == 200 and stream.count("\ndata: ") == len(op["events"]) and "event: succeeded" in stream

    code, listed = api("GET", "clusters")
    row = next(c for c in listed["clusters"] if c["name"] == "sidebar")
    assert row["status"] == "running" and row["workers"] == 1 and row["hourly_cost"] == 0
    assert row["dashboard_link"].startswith("http://127.0.0.1:") and row["age"] >= 0
    assert "settings" not in row and "resources" not in row
    assert api("GET", "clusters/sidebar")[1]["name"] == "sidebar"

    scaled = follow(api, api("PATCH", "clusters/sidebar", {"workers": 2}))
    assert scaled["state"] == "succeeded", scaled
    assert registry.read("sidebar").workers == 2
    code, adapted = api("PATCH", "clusters/sidebar", {"adapt": {"minimum": 1, "maximum": 2}})
    assert code == 200 and adapted["adaptive"] == {"minimum": 1, "maximum": 2}

    code, logs = api("GET", "clusters/sidebar/logs")
    assert code == 200 and logs["logs"] and any("Scheduler" in text for text in logs["logs"].values())

    code, page = api("GET", "dashboard/sidebar/status")
    assert code == 200 and "Dask" in page and "<html" in page.lower()
    code, info = api("GET", "dashboard/sidebar/info/main/workers.html")
    assert code == 200 and "Worker" in info

    down = follow(api, api("DELETE", "clusters/sidebar"))
    assert down["state"] == "succeeded", down
    assert api("GET", "clusters/sidebar")[0] == 404


MAGIC = """
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
shell.run_line_magic("load_ext", "dask_aws_magic")
shell.run_line_magic("dask_cluster", "up -n magicked -w 1")
"""


def test_a_cluster_started_by_a_magic_in_another_process_shows_up(api, home):
    process = subprocess.Popen([sys.executable, "-c", MAGIC], env=os.environ, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    seen: list[str] = []
    try:
        deadline = time.monotonic() + OPERATION_TIMEOUT
        while time.monotonic() < deadline:
            code, listed = api("GET", "clusters")
            row = next((c for c in listed["clusters"] if c["name"] == "magicked"), None)
            if row is not None:
                seen.append(row["display_status"])
                if row["status"] == "running" and process.poll() is not None:
                    break
            api.loop.run_until_complete(_sleep(0.1))
        assert process.wait(30) == 0
        assert seen and seen[-1] == "running", seen
        assert row["operation"] is None and row["workers"] == 1  # not this server's operation
    finally:
        if process.poll() is None:
            process.kill()
    # It outlived the process that started it, and the server can stop it.
    down = follow(api, api("DELETE", "clusters/magicked"))
    assert down["state"] == "succeeded", down


def test_both_extensions_are_installed_enabled_and_ok():
    jupyter = [sys.executable, "-m", "jupyter"]
    server = subprocess.run([*jupyter, "server", "extension", "list"], capture_output=True, text=True, timeout=60)
    lines = (server.stdout + server.stderr).splitlines()
    assert any("dask_aws_magic.serverext" in line and "enabled" in line for line in lines), lines
    assert any("dask_aws_magic.serverext" in line and "OK" in line for line in lines), lines
    lab = subprocess.run([*jupyter, "labextension", "list"], capture_output=True, text=True, timeout=60)
    row = next((line for line in (lab.stdout + lab.stderr).splitlines() if "dask-aws-magic" in line), "")
    assert "enabled" in row and "OK" in row, lab.stdout + lab.stderr


class Upstream:
    """A stand-in for a cluster's dashboard (a page, a websocket echo) that records what it was sent."""

    def __init__(self, loop, context=None, answer_headers=None):
        import tornado.web
        import tornado.websocket

        self.seen: list[dict] = []
        upstream = self

        class Page(tornado.web.RequestHandler):
            def get(self):
                upstream.seen.append({"path": self.request.path, "query": self.request.query,
                                      "headers": dict(self.request.headers)})
                for key, value in (answer_headers or {}).items():
                    self.set_header(key, value)
                self.write(f"<html><title>Dask: {self.request.path}?{self.request.query}</title></html>")

        class Echo(tornado.websocket.WebSocketHandler):
            def check_origin(self, origin):
                return True

            def open(self):
                upstream.seen.append({"path": self.request.path, "query": self.request.query,
                                      "headers": dict(self.request.headers)})

            def on_message(self, message):
                self.write_message(f"echo {message}")

        app = tornado.web.Application([(r"/status/ws", Echo), (r"/.*", Page)])
        self.server = loop.run_until_complete(_listen(app, context))
        self.port = next(iter(self.server._sockets.values())).getsockname()[1]
        self.scheme = "https" if context is not None else "http"

    @property
    def link(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/status"


def _tls_material(tmp_path, name):
    """A cluster CA and its identities (``aws.tls``), as files the dashboard serves with."""
    from dask_aws_magic.aws.tls import new_cluster_material

    material = new_cluster_material(name)
    folder = tmp_path / name
    folder.mkdir()
    files = {"ca.pem": material.ca, "scheduler.pem": material.scheduler.cert, "scheduler.key": material.scheduler.key,
             "client.pem": material.client.cert, "client.key": material.client.key}
    for filename, text in files.items():
        (folder / filename).write_text(text)
    return folder


def _serving_context(folder, require_client=True):
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(folder / "ca.pem"))
    context.load_cert_chain(folder / "scheduler.pem", folder / "scheduler.key")
    if require_client:
        context.verify_mode = ssl.CERT_REQUIRED  # as the cluster's own client, or not at all
    return context


@pytest.fixture
def tls_dashboard(home, tmp_path, jp_asyncio_loop):  # noqa: F811
    """A stand-in for a TLS cluster's dashboard (HTTPS with a certificate of the cluster's CA, client
    certificates required) and the record of its cluster (a local one: its TLS folder holds the CA and
    the client's identity, as `up` writes it)."""
    from dask_aws_magic.core.registry import ClusterRecord

    folder = _tls_material(tmp_path, "secure")
    upstream = Upstream(jp_asyncio_loop, _serving_context(folder))
    record = ClusterRecord(name="secure", cluster_id="dam-0123456789ab", backend="local", profile="local",
                           status="running", dashboard_link=upstream.link,
                           resources={"run_dir": str(tmp_path), "tls_dir": str(folder)})
    registry.write(record)
    upstream.record = record
    yield upstream
    upstream.server.stop()
    registry.remove("secure")


async def _listen(app, context):
    from tornado.httpserver import HTTPServer

    server = HTTPServer(app, ssl_options=context)
    server.listen(0, "127.0.0.1")
    return server


def test_the_dashboard_of_a_tls_cluster_is_reached_as_its_client(api, tls_dashboard, jp_ws_fetch):  # noqa: F811
    code, page = api("GET", "dashboard/secure/individual-task-stream", params={"a": "1"})
    assert code == 200 and "Dask: /individual-task-stream?a=1" in page, page

    async def talk():
        socket = await jp_ws_fetch(API, "dashboard", "secure", "status", "ws")
        await socket.write_message("hello")
        answer = await socket.read_message()
        socket.close()
        return answer

    assert api.loop.run_until_complete(talk()) == "echo hello"


JUPYTER_SECRETS = {"Cookie": "username-127-0-0-1=jupyter-login-cookie; _xsrf=jupyter-xsrf-cookie",
                   "X-XSRFToken": "jupyter-xsrf-header", "Origin": "http://127.0.0.1:8888",
                   "Referer": "http://127.0.0.1:8888/lab?token=jupyter-token-in-referer"}


def test_the_upstream_gets_none_of_jupyters_credentials(api, tls_dashboard, jp_auth_header):  # noqa: F811
    token = jp_auth_header["Authorization"].split()[-1]
    answer = api.fetch("dashboard/secure/status", params={"token": token, "_xsrf": "q", "workers": "1"},
                       headers={**JUPYTER_SECRETS, "Accept": "text/html"})
    assert answer.code == 200 and b"Dask: /status" in answer.body
    assert "/~" in answer.effective_url  # redirected to the capability path, which the browser keeps using
    [request] = tls_dashboard.seen
    assert request["query"] == "workers=1"  # the page's own arguments, never Jupyter's token
    sent = {k.lower(): v for k, v in request["headers"].items()}
    assert sent["accept"] == "text/html"
    for header in ("cookie", "authorization", "x-xsrftoken", "referer", "origin", "x-forwarded-for"):
        assert header not in sent, (header, sent)
    everything = json.dumps(request)
    for secret in (token, "jupyter-login-cookie", "jupyter-xsrf", "jupyter-token-in-referer"):
        assert secret not in everything


def test_every_proxied_page_is_sandboxed_and_cannot_set_jupyters_cookies(api, home, tmp_path, jp_asyncio_loop):
    from dask_aws_magic.core.registry import ClusterRecord

    folder = _tls_material(tmp_path, "hostile")
    upstream = Upstream(jp_asyncio_loop, _serving_context(folder, require_client=False), answer_headers={
        "Set-Cookie": "username-127-0-0-1=forged; Path=/", "Clear-Site-Data": '"cookies", "storage"',
        "Content-Security-Policy": "default-src *", "Access-Control-Allow-Origin": "*",
        "Service-Worker-Allowed": "/"})
    registry.write(ClusterRecord(name="hostile", cluster_id="dam-00000000000a", backend="local", profile="local",
                                 status="running", dashboard_link=upstream.link,
                                 resources={"run_dir": str(tmp_path), "tls_dir": str(folder)}))
    try:
        code, page = api("GET", "dashboard/hostile/status")
        assert code == 200 and "Dask" in page
        entry = api.fetch("dashboard/hostile/status")
        capability_path = urllib.parse.unquote(entry.effective_url.split(f"/{API}/", 1)[1])
        answer = api.fetch(capability_path, headers={"Authorization": "", "Origin": "null"})  # as the browser
        assert answer.code == 200
        policies = answer.headers.get_list("Content-Security-Policy")
        assert any(p.startswith("sandbox") and "allow-scripts" in p for p in policies), policies
        assert not any("allow-same-origin" in p for p in policies), policies
        assert answer.headers["Referrer-Policy"] == "no-referrer"
        for header in ("Set-Cookie", "Clear-Site-Data", "Access-Control-Allow-Origin", "Service-Worker-Allowed"):
            assert header not in answer.headers, header
    finally:
        upstream.server.stop()


def test_the_capability_opens_one_clusters_dashboard_and_nothing_else(api, tls_dashboard, tmp_path):  # noqa: F811
    from dask_aws_magic.core.registry import ClusterRecord

    answer = api.fetch("dashboard/secure/status")
    capability_path = urllib.parse.unquote(answer.effective_url.split(f"/{API}/", 1)[1])  # dashboard/secure/~CAP/...
    cap = capability_path.split("/")[2]
    registry.write(ClusterRecord(name="other", cluster_id="dam-00000000000b", backend="local", profile="local",
                                 status="running", dashboard_link=tls_dashboard.link,
                                 resources={**tls_dashboard.record.resources, "run_dir": str(tmp_path / "o")}))

    def bare(path, **params):  # no token, no cookie, the opaque origin: what a sandboxed page sends
        return api.fetch(path, params=params, headers={"Authorization": "", "Origin": "null"}).code

    assert bare(capability_path) == 200
    assert bare(capability_path.replace("status", "individual-task-stream"), x="1") == 200
    assert bare(f"dashboard/other/{cap}/status") == 403  # another cluster's dashboard
    assert bare("dashboard/secure/~" + "0" * 32 + "/status") == 403
    assert bare(f"dashboard/nosuch/{cap}/status") == 403  # answered from the registry: no discovery, no AWS call
    assert bare("dashboard/secure/status") == 403  # the entry route needs Jupyter's login
    assert bare("clusters") == 403  # and nothing else of the API opens with it
    registry.remove("other")


def test_a_dashboard_signed_by_another_ca_is_refused(api, home, tmp_path, jp_asyncio_loop):
    """Someone else's server at the cluster's address (a forged scheduler, a reused IP) cannot show a
    certificate the cluster's CA signed: the proxy sends it nothing, with no fallback."""
    from dask_aws_magic.core.registry import ClusterRecord

    ours, theirs = _tls_material(tmp_path, "ours"), _tls_material(tmp_path, "theirs")
    upstream = Upstream(jp_asyncio_loop, _serving_context(theirs, require_client=False))
    registry.write(ClusterRecord(name="spoofed", cluster_id="dam-00000000000c", backend="local", profile="local",
                                 status="running", dashboard_link=upstream.link,
                                 resources={"run_dir": str(tmp_path), "tls_dir": str(ours)}))
    try:
        code, answer = api("GET", "dashboard/spoofed/status")
        assert code == 502 and "did not answer" in answer["message"], answer
        assert upstream.seen == []
    finally:
        upstream.server.stop()


def test_the_proxy_trusts_the_clusters_ca_alone():
    from dask_aws_magic.aws.tls import client_security, new_cluster_material
    from dask_aws_magic.core.connection import DashboardIdentity
    from dask_aws_magic.serverext.proxy import ssl_context

    material = new_cluster_material("alone")
    context = ssl_context(DashboardIdentity(security=client_security(material.ca, material.client.cert,
                                                                      material.client.key)))
    [ca] = context.get_ca_certs()  # the cluster's CA: no system trust store behind it
    assert ca["subject"] == ((("commonName", "dask-aws-magic alone CA"),),)
    assert context.verify_mode.name == "CERT_REQUIRED"


def test_a_plain_http_dashboard_is_proxied_only_when_proven_or_allowed(api, home, tmp_path, jp_asyncio_loop,
                                                                        jp_web_app):  # noqa: F811
    import subprocess as sp

    from dask_aws_magic.core.registry import ClusterRecord

    upstream = Upstream(jp_asyncio_loop)
    stranger = sp.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        from dask_aws_magic.core.processes import create_time

        # A cluster on EC2 with `network.tls: false`: nothing proves who answers at its address.
        registry.write(ClusterRecord(name="plain", cluster_id="dam-00000000000d", backend="ec2", profile="x",
                                     status="running", dashboard_link=upstream.link,
                                     resources={"region": "us-east-1", "protocol": "tcp"}))
        # A local cluster whose dashboard port is held by some other process than its scheduler.
        registry.write(ClusterRecord(name="squatted", cluster_id="dam-00000000000e", backend="local",
                                     profile="local", status="running", dashboard_link=upstream.link,
                                     resources={"run_dir": str(tmp_path), "scheduler": {
                                         "pid": stranger.pid, "started": create_time(stranger.pid)}}))
        for name in ("plain", "squatted"):
            code, answer = api("GET", f"dashboard/{name}/status")
            assert code == 403 and "not proxied" in answer["message"] and "allow_plain_http" in answer["message"]
        assert upstream.seen == []
        jp_web_app.settings["dask_aws_magic_proxy"].allow_plain_http = True  # the server's opt-in
        code, page = api("GET", "dashboard/plain/status")
        assert code == 200 and "Dask" in page and len(upstream.seen) == 1
    finally:
        jp_web_app.settings["dask_aws_magic_proxy"].allow_plain_http = False
        stranger.kill()
        stranger.wait()
        upstream.server.stop()


@pytest.mark.sandbox
def test_a_forged_clusters_dashboard_is_never_proxied(api, sb, home):  # noqa: F811
    """Issue 16, case 1, through the server: an instance someone tagged as the victim's cluster (its
    scheduler, plain TCP) serves a page that would use the Jupyter API. The sidebar lists it apart, as
    unverified, and the proxy never connects to it."""
    import urllib.request

    forged = _someones_instance(sb, FORGED_DASHBOARD)
    _tag(sb, [forged], **{TAG_CLUSTER: "prod", TAG_CLUSTER_ID: "dam-0f0f0f0f0f0f", TAG_ROLE: "scheduler",
                          TAG_PROTOCOL: "tcp", TAG_OWNER: sb.victim_arn})
    reply = sb.someone.client("ec2").describe_instances(InstanceIds=[forged])
    page = f"http://{reply['Reservations'][0]['Instances'][0]['PrivateIpAddress']}:8787/status/"
    deadline = time.monotonic() + 30
    while True:  # it serves: a proxy that tried would reach it
        try:
            with urllib.request.urlopen(page, timeout=2) as answer:
                assert b"/api/contents" in answer.read()
            break
        except OSError:
            assert time.monotonic() < deadline, sb.console_output(forged)
            time.sleep(0.2)
    served = sb.console_output(forged).count("GET /status")
    assert served >= 1  # its log shows who came (our own look above)

    code, listed = api("GET", "clusters")
    assert code == 200 and listed["clusters"] == []
    assert [u["resources"] for u in listed["unverified"]] == [[forged]]
    assert "no manifest" in listed["unverified"][0]["reason"]
    code, answer = api("GET", "dashboard/prod/status")
    assert code == 404 and "unverified" in answer["message"], answer
    assert sb.console_output(forged).count("GET /status") == served  # never contacted
    assert not list((home / "clusters").glob("*.json"))


SIDE_EC2 = """\
backend: ec2
region: us-east-1
scheduler: {type: t3.medium}
worker: {type: m6i.large, count: 1}
"""


def aws_calls(sandbox) -> int:
    return sum(sandbox.calls().values())


@pytest.mark.sandbox
def test_the_list_is_exact_after_up_scale_and_down_and_aws_is_asked_at_most_every_30_s(api, home):
    """Issue 16 item 19: one inventory for the whole server, refreshed from AWS at most every 30 s and
    right after an action, each scheduler read at every look; `list` exact after every action."""
    from .conftest import aws_sandbox

    with aws_sandbox(home, {"side": SIDE_EC2}) as sandbox:  # IAM enforced, as the user admin
        assert api("GET", "clusters")[1]["clusters"] == []
        before = aws_calls(sandbox)
        for _ in range(4):  # sidebars polling for seconds: the registry and schedulers are read, not AWS
            api.loop.run_until_complete(_sleep(1.1))
            assert api("GET", "clusters")[0] == 200
        assert aws_calls(sandbox) == before

        up = follow(api, api("POST", "clusters", {"profile": "side", "name": "side"}))
        assert up["state"] == "succeeded", up
        [row] = api("GET", "clusters")[1]["clusters"]
        assert (row["name"], row["status"], row["workers"]) == ("side", "running", 1)
        deadline = time.monotonic() + 60
        while row["reported_workers"] != 1:  # read from the scheduler at every look: no AWS call
            assert time.monotonic() < deadline, row
            calls = aws_calls(sandbox)
            [row] = api("GET", "clusters")[1]["clusters"]
            assert aws_calls(sandbox) == calls
            api.loop.run_until_complete(_sleep(0.5))

        scaled = follow(api, api("PATCH", "clusters/side", {"workers": 2}))
        assert scaled["state"] == "succeeded", scaled
        [row] = api("GET", "clusters")[1]["clusters"]
        assert (row["status"], row["workers"]) == ("running", 2)
        while row["reported_workers"] != 2:
            assert time.monotonic() < deadline + 60, row
            api.loop.run_until_complete(_sleep(0.5))
            [row] = api("GET", "clusters")[1]["clusters"]

        down = follow(api, api("DELETE", "clusters/side"))
        assert down["state"] == "succeeded", down
        assert api("GET", "clusters")[1]["clusters"] == []
        assert not sandbox.resources()


def test_simultaneous_posts_each_get_their_own_answer(api, home):
    """Issue 16 item 16: the home's write probe was named by pid only, so handler threads deleted each
    other's and 2 of 9 simultaneous POSTs failed with "home not writable"."""
    import asyncio

    from dask_aws_magic.core.processes import create_time
    from dask_aws_magic.core.registry import ClusterRecord

    # A name an `up` of this process is still starting: every POST reserves it under the registry's lock
    # (probing the home first) and is refused, so no cluster starts.
    registry.write(ClusterRecord(name="taken", cluster_id="dam-0123456789ab", backend="local", profile="local",
                                 up_process={"pid": os.getpid(), "started": create_time(os.getpid())}))

    async def all_at_once():
        calls = [api.jp_fetch(API, "clusters", method="POST", body=json.dumps({"profile": "local", "name": "taken"}),
                           raise_error=False) for _ in range(9)]
        return await asyncio.gather(*calls)

    try:
        for _ in range(3):
            answers = api.loop.run_until_complete(all_at_once())
            messages = [json.loads(a.body)["message"] for a in answers]
            assert [a.code for a in answers] == [400] * 9 and all("already running" in m for m in messages), messages
    finally:
        registry.remove("taken")
