"""The ``dask_cluster`` command line, shared by the magics and the terminal command."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


class UsageProblem(Exception):
    """The words of a command are wrong; the message says how."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of exiting (a magic must not end the kernel)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageProblem(f"{self.prog}: {message}. See `{self.prog} --help`.")

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        raise UsageProblem(message or "")

    def print_help(self, file: object = None) -> None:
        """``--help`` of this (sub)command only, as the message (a magic prints it, the terminal too)."""
        raise UsageProblem(self.format_help())


def _whole_number(text: str, minimum: int, too_small: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(too_small.format(value=value))
    return value


def positive_int(text: str) -> int:
    return _whole_number(text, 1, "{value} workers is too few; give a whole number >= 1")


def count(text: str) -> int:
    return _whole_number(text, 0, "{value} is negative; give a whole number >= 0")


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value:g} s is not a positive number of seconds")
    return value


def _profile_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--name", help="cluster name (default: the profile's name)")
    parser.add_argument("-w", "--workers", type=positive_int, help="number of workers (worker.count)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a profile field, e.g. --set worker.nthreads=2 (repeatable)")


COMMANDS = ("up", "down", "list", "status", "scale", "adapt", "attach", "plan", "profiles", "dashboard",
            "logs", "restart")


def build_parser(
    prog: str = "%dask_cluster", *, terminal: bool = False, plugins: bool = True
) -> argparse.ArgumentParser:
    """The parser for every subcommand. ``terminal`` leaves out what only makes sense in a kernel;
    ``plugins`` adds the commands of other packages (see :mod:`.commands`)."""
    parser = _Parser(prog=prog, description="Start, use and stop Dask clusters on AWS or this machine.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    up = sub.add_parser("up", help="start a cluster from a profile and connect to it")
    up.add_argument("profile", nargs="?", default=None, help="profile name (default: local)")
    _profile_options(up)
    up.add_argument("--timeout", type=seconds, help="seconds to wait for the scheduler")
    up.add_argument("--wait-workers", type=count, metavar="K",
                    help="return only once K workers have joined (K counts workers as `-w` does: "
                         "instances on AWS, processes locally); default: all of them locally, none on AWS")
    up.add_argument("--keep-on-failure", action="store_true", help="keep what started if `up` fails")
    if not terminal:
        up.add_argument("--client-var", default=None, help="variable for the client (default: client)")

    down = sub.add_parser("down", help="stop clusters and remove everything they created")
    down.add_argument("names", nargs="*", metavar="NAME")
    down.add_argument("--all", action="store_true", help="every cluster of yours, including ones found by tags")
    down.add_argument("--owner", metavar="OWNER",
                      help="another owner's, as `list --all-owners` shows it: with NAME that cluster, with --all "
                           "every cluster of that owner")
    down.add_argument("--unverified", nargs="+", default=[], metavar="ID",
                      help="remove these resources that carry our tags but no proof (ids as `list` shows them)")

    listing = sub.add_parser("list", help="list your clusters (registry reconciled with processes and AWS tags)")
    whose = listing.add_mutually_exclusive_group()
    whose.add_argument("--all-owners", action="store_true", help="everyone's clusters, not only yours")
    whose.add_argument("--owner", metavar="OWNER", help="the clusters of this owner")

    status = sub.add_parser("status", help="workers, threads, memory and tasks of a cluster")
    status.add_argument("name", nargs="?")

    scale = sub.add_parser("scale", help="set the number of workers")
    scale.add_argument("name")
    scale.add_argument("n", type=count, metavar="N")

    adapt = sub.add_parser("adapt", help="scale with the load between bounds")
    adapt.add_argument("name")
    adapt.add_argument("--minimum", type=count, default=0)
    adapt.add_argument("--maximum", type=positive_int, required=True)

    if not terminal:
        attach = sub.add_parser("attach", help="connect this kernel to a running cluster")
        attach.add_argument("name")
        attach.add_argument("--client-var", default=None)

    plan = sub.add_parser("plan", help="show what `up` would create and cost, creating nothing")
    plan.add_argument("profile", nargs="?", default=None)
    _profile_options(plan)

    sub.add_parser("profiles", help="list the profiles")

    dashboard = sub.add_parser("dashboard", help="show the dashboard link")
    dashboard.add_argument("name", nargs="?")

    logs = sub.add_parser("logs", help="show the log of every process or instance")
    logs.add_argument("name")

    restart = sub.add_parser("restart", help="restart the workers (clears their memory)")
    restart.add_argument("name")

    if not terminal:
        panel = sub.add_parser("panel", help="show a widget panel: profiles, plan, Up with progress, every cluster")
        panel.add_argument("--refresh", type=seconds, default=3.0, metavar="SECONDS",
                           help="seconds between two looks at the clusters (default: 3)")

    if plugins:
        from .commands import plugin_commands

        for name, command in plugin_commands(terminal=terminal).items():
            command.add_arguments(sub.add_parser(name, help=command.help))
    return parser


def parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv``; an unknown or missing subcommand is a :class:`UsageProblem`."""
    if not argv:
        raise UsageProblem(f"{parser.prog}: give a command: {', '.join(COMMANDS)}. "
                           f"See `{parser.prog} --help`.")
    if argv[0] not in ("-h", "--help") and not argv[0].startswith("-"):
        choices = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
        if argv[0] not in choices:
            import difflib

            close = difflib.get_close_matches(argv[0], list(choices), n=1)
            hint = f" Did you mean `{close[0]}`?" if close else ""
            raise UsageProblem(f"{parser.prog}: unknown command {argv[0]!r}.{hint} "
                               f"Commands: {', '.join(choices)}.")
    return parser.parse_args(list(argv))


def full_help(parser: argparse.ArgumentParser) -> str:
    """Every command with its arguments, each argument explained once (for ``%dask_cluster?``)."""
    choices = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    summaries = {a.dest: a.help for a in parser._subparsers._group_actions[0]._choices_actions}  # type: ignore[union-attr]
    lines = [f"usage: {parser.prog} COMMAND [ARGUMENTS]   ({parser.prog} COMMAND --help for one command)", ""]
    explained: dict[str, str] = {}
    for name, sub in choices.items():
        usage = sub.format_usage().replace("usage: ", "").replace(" [-h]", "").split()
        lines.append(f"{' '.join(usage)}")
        lines.append(f"    {summaries.get(name) or ''}")
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction) or not action.help:
                continue
            label = ", ".join(action.option_strings) or action.metavar or action.dest
            if label in explained and explained[label] == action.help:
                continue  # shared options (-n, -w, --set...) are explained where they first appear
            explained[label] = action.help
            lines.append(f"      {label:<22} {action.help}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
