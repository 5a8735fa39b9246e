"""Heavy libraries imported on first use, once per process, under a lock.

Two threads importing ``distributed`` at once can meet a partially initialised module
(``ImportError: cannot import name 'Comm'``): every lazy import of it in this package goes through
:func:`distributed`, so the first thread imports the whole package while the others wait.
"""

from __future__ import annotations

import threading
from types import ModuleType

_lock = threading.Lock()
_distributed: ModuleType | None = None


def distributed() -> ModuleType:
    """The ``distributed`` package, imported whole (safe from any thread)."""
    global _distributed
    if _distributed is None:
        with _lock:
            if _distributed is None:
                import distributed as module

                _distributed = module
    return _distributed
