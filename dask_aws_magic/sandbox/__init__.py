"""An emulated AWS for tests, benchmarks and demos: moto's server plus an instance emulator.

Importing this package is cheap; moto is imported when a Sandbox starts.
"""

from __future__ import annotations

from .core import Sandbox, current
from .software import MachineImage

__all__ = ["MachineImage", "Sandbox", "current", "start", "stop"]


def start(boot_delay: float = 0.0, region: str = "us-east-1") -> Sandbox:
    """Start the process-wide sandbox (or return the running one, with `boot_delay` applied)."""
    sandbox = current()
    if sandbox is None:
        return Sandbox(boot_delay=boot_delay, region=region).start()
    sandbox.boot_delay = boot_delay
    return sandbox


def stop() -> None:
    """Stop the process-wide sandbox, if one is running."""
    sandbox = current()
    if sandbox is not None:
        sandbox.stop()
