"""Where state lives: ``$DASK_AWS_MAGIC_HOME`` (default ``~/.dask-aws-magic``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

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
    """Create the home and its sub-directories, private to this user (0700); raise a clear error
    when that is impossible or when the home belongs to someone else."""
    root = home()
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        owner = root.stat().st_uid
        if owner != os.getuid():
            raise HomeNotWritable(
                f"The dask-aws-magic home {root} belongs to another user (uid {owner}), who could read your "
                f"clusters' keys or change their records. Point ${HOME_ENV} at a folder of your own, e.g. "
                f"`export {HOME_ENV}=~/.dask-aws-magic`."
            )
        for folder in (root, *(root / sub for sub in SUBDIRS)):
            folder.mkdir(mode=0o700, exist_ok=True)
            if folder.stat().st_mode & 0o077:
                folder.chmod(0o700)
        # A probe of its own (threads of one process share the pid): mkstemp never reuses a name.
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=root / "clusters")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise HomeNotWritable(
            f"The dask-aws-magic home {root} is not writable ({exc.strerror or exc}). "
            f"Fix its permissions, or point ${HOME_ENV} at a folder of your own that you can write, "
            f"e.g. `export {HOME_ENV}=~/.dask-aws-magic`."
        ) from None
    return root


def private_file(path: Path, mode: str = "ab") -> Any:
    """Open ``path`` (created 0600 if new) for this user only: logs and state under the home."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    return os.fdopen(os.open(path, flags, 0o600), mode)
