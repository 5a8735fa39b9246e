"""The URL of each handler, under ``{base_url}/dask-aws-magic/``."""

from __future__ import annotations

from typing import Any

from jupyter_server.utils import url_path_join

from . import handlers, proxy

NAMESPACE = "dask-aws-magic"  # the API's path under the server's base URL
NAME = r"(?P<name>[^/]+)"
OP = r"(?P<op_id>op-[0-9a-f]+)"

ROUTES: list[tuple[str, Any]] = [
    ("profiles", handlers.ProfilesHandler),
    (f"profiles/{NAME}", handlers.ProfileHandler),
    (r"profiles/(?P<profile>[^/]+)/plan", handlers.PlanHandler),
    ("clusters", handlers.ClustersHandler),
    (f"clusters/{NAME}", handlers.ClusterHandler),
    (f"clusters/{NAME}/logs", handlers.LogsHandler),
    ("operations", handlers.OperationsHandler),
    (f"operations/{OP}", handlers.OperationHandler),
    (f"operations/{OP}/cancel", handlers.CancelHandler),
    (f"operations/{OP}/events", handlers.EventsHandler),
    (rf"dashboard/{NAME}/{proxy.CAPABILITY}/(?P<path>.*)", proxy.CapabilityProxyHandler),  # before the next
    (rf"dashboard/{NAME}/(?P<path>.*)", proxy.DashboardProxyHandler),
]


def register(web_app: Any) -> None:
    base = web_app.settings["base_url"]
    web_app.add_handlers(".*$", [(url_path_join(base, NAMESPACE, path) + "/?$" if not path.endswith("(?P<path>.*)")
                                  else url_path_join(base, NAMESPACE, path) + "$", handler)
                                 for path, handler in ROUTES])
