"""dask-aws-magic: Dask clusters on AWS (or this machine) from a notebook.

``%load_ext dask_aws_magic`` then ``%dask_cluster up``; or ``dask_aws_magic.up()`` from Python.
Everything heavy (boto3, distributed, ipywidgets) is imported on first use.
"""

from __future__ import annotations

from typing import Any

from ._version import __version__

_API = ("up", "attach", "down", "list_clusters", "plan", "profiles", "status", "scale", "adapt", "logs",
        "restart", "panel")

__all__ = ["__version__", "ClusterHandle", *_API, "load_ipython_extension", "unload_ipython_extension"]


def __getattr__(name: str) -> Any:
    if name in _API:
        from .faces import api

        return getattr(api, name)
    if name == "ClusterHandle":
        from .faces.handle import ClusterHandle

        return ClusterHandle
    raise AttributeError(f"module 'dask_aws_magic' has no attribute {name!r}")


def load_ipython_extension(shell: Any) -> None:
    """``%load_ext dask_aws_magic``: register ``%dask_cluster`` / ``%%dask_cluster``."""
    from .faces.magics import DaskClusterMagics

    shell.register_magics(DaskClusterMagics(shell=shell))


def unload_ipython_extension(shell: Any) -> None:
    """``%unload_ext dask_aws_magic``."""
    magics = shell.magics_manager.registry.pop("DaskClusterMagics", None)
    if magics is not None:
        for kind in ("line", "cell"):
            shell.magics_manager.magics[kind].pop("dask_cluster", None)
