"""Extra ``%dask_cluster`` / ``dask-aws-magic`` subcommands, found through the
``dask_aws_magic.commands`` entry points (the AWS sandbox's ``sandbox`` is one).

A command is a class with ``name``, ``help``, ``kernel_only`` (True: not offered by the terminal
command), ``add_arguments(parser)`` and ``run(args) -> str`` (the text to show). Entry points are
read on first use, not at ``%load_ext``: scanning the installed packages costs tens of ms.
"""

from __future__ import annotations

import argparse
from functools import lru_cache
from typing import Any, ClassVar, Protocol

ENTRY_POINTS = "dask_aws_magic.commands"


class Command(Protocol):
    name: ClassVar[str]
    help: ClassVar[str]
    kernel_only: ClassVar[bool]

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> str: ...


@lru_cache(maxsize=1)
def _all() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep.load()() for ep in entry_points(group=ENTRY_POINTS)}


def plugin_commands(*, terminal: bool = False) -> dict[str, Command]:
    """The installed extra commands, by name (without the kernel-only ones for the terminal)."""
    return {name: command for name, command in _all().items() if not (terminal and command.kernel_only)}
