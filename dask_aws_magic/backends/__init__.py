"""Backends: where clusters run. Each implements :class:`.base.Backend` and is found by name
through the ``dask_aws_magic.backends`` entry points, so third-party backends plug in the same way."""

from __future__ import annotations

from functools import cache, lru_cache
from typing import Any

from .base import (
    Backend,
    BackendDefaults,
    Context,
    Discovered,
    Discovery,
    NodeCredentials,
    Plan,
    PlannedResource,
    Poll,
    Unverified,
)

ENTRY_POINTS = "dask_aws_magic.backends"

__all__ = ["Backend", "BackendDefaults", "Context", "Discovered", "Discovery", "NodeCredentials", "Plan",
           "PlannedResource", "Poll", "Unverified", "available", "get_backend", "discoverable_backends"]


@lru_cache(maxsize=1)
def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINTS)}


def available() -> list[str]:
    """The names of every installed backend."""
    return sorted(_entry_points())


@cache
def _load(name: str) -> type:
    entry = _entry_points()[name]
    try:
        return entry.load()
    except (ImportError, AttributeError) as exc:
        from ..core.errors import ProfileError

        raise ProfileError(
            f"The backend {name!r} is installed ({entry.value}) but cannot be loaded: {type(exc).__name__}: {exc}. "
            "Reinstall the package that provides it, or uninstall it."
        ) from None


def get_backend(name: str) -> Backend:
    """The backend called ``name`` (imported on first use)."""
    if name not in _entry_points():
        from ..core.errors import ProfileError

        raise ProfileError(
            f"The backend {name!r} is not installed (installed: {', '.join(available()) or 'none'}). "
            "Fix `backend:` in the profile, or install the package that provides it."
        )
    return _load(name)()


def discoverable_backends() -> list[Backend]:
    """Every installed backend worth asking for clusters here (AWS ones only with credentials). A
    backend that cannot be loaded is skipped with a warning: one broken plugin must not hide the
    clusters of the others."""
    import warnings

    from ..core.errors import ProfileError

    found = []
    for name in available():
        try:
            if _load(name).discoverable():
                found.append(get_backend(name))
        except ProfileError as exc:
            warnings.warn(str(exc), RuntimeWarning, stacklevel=2)
    return found
