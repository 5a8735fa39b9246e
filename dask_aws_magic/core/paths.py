"""Where state lives: ``$DASK_AWS_MAGIC_HOME`` (default ``~/.dask-aws-magic``)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import HomeNotWritable

HOME_ENV = "DASK_AWS_MAGIC_HOME"
SUBDIRS = ("profiles", "clusters", "logs")


def home() -> Path:
    """The home directory (not created)."""
    configured = os.environ.get(HOME_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".dask-aws-magic"


def profiles_dir() -> Path:
    return home() / "profiles"


def clusters_dir() -> Path:
    return home() / "clusters"


def logs_dir() -> Path:
    return home() / "logs"


def ensure_home() -> Path:
    """Create the home and its sub-directories; raise a clear error when that is impossible."""
    root = home()
    try:
        for sub in SUBDIRS:
            (root / sub).mkdir(parents=True, exist_ok=True)
        probe = root / "clusters" / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise HomeNotWritable(
            f"The dask-aws-magic home {root} is not writable ({exc.strerror or exc}). "
            f"Fix its permissions, or point ${HOME_ENV} at a writable directory, "
            f"e.g. `export {HOME_ENV}=/tmp/dask-aws-magic`."
        ) from None
    return root
