"""The jupyter-server extension: a REST API over the core (``{base_url}/dask-aws-magic/``).

A face like the magics: it calls the core's public functions and renders their records and
operations as JSON. It never opens a default Dask client nor touches dask's config.
"""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "dask_aws_magic.serverext"}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    """Register the handlers with the server's web application."""
    from .proxy import DaskAwsMagicProxy
    from .routes import NAMESPACE, register

    settings = DaskAwsMagicProxy(config=server_app.config)
    server_app.web_app.settings["dask_aws_magic_proxy"] = settings
    register(server_app.web_app)
    server_app.log.info("dask-aws-magic server extension loaded at /%s/", NAMESPACE)
    if settings.allow_plain_http:
        server_app.log.warning("dask-aws-magic: the dashboard proxy also forwards plain-HTTP dashboards "
                               "(DaskAwsMagicProxy.allow_plain_http), which nothing proves are the cluster's")


# The name older jupyter-server / notebook versions look for.
load_jupyter_server_extension = _load_jupyter_server_extension
