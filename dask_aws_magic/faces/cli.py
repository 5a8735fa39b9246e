"""``dask-aws-magic``: the terminal face (list, status, down, plan, profiles, ...)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ..core.errors import DaskAwsMagicError
from .arguments import UsageProblem, build_parser, full_help, parse
from .commands import plugin_commands


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser("dask-aws-magic", terminal=True)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv in (["-h"], ["--help"]):
        print(full_help(parser))
        return 0
    try:
        args = parse(parser, argv)
        print(run(args))
    except UsageProblem as exc:
        text = str(exc)
        if "--help" in argv or "-h" in argv:
            print(text)
            return 0
        print(text, file=sys.stderr)
        return 2
    except DaskAwsMagicError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def run(args) -> str:
    from ..core import inventory, lifecycle
    from . import render

    command = args.command
    plugin = plugin_commands(terminal=True).get(command)
    if plugin is not None:
        return plugin.run(args)
    if command == "list":
        found = inventory.survey("*" if args.all_owners else args.owner)
        incomplete = found.incomplete()
        if incomplete is not None:
            print(render.survey(found))
            raise incomplete
        return render.survey(found)
    if command == "status":
        if not args.name:
            return render.clusters(inventory.list_clusters())
        return render.status(lifecycle.status(args.name))
    if command == "down":
        if args.unverified:
            from ..core import unverified

            if args.names or args.all:
                raise UsageProblem("dask-aws-magic down --unverified ID ...: alone, without names or --all.")
            return "\n".join(unverified.remove(args.unverified))
        if not args.names and not args.all:
            raise UsageProblem("dask-aws-magic down: name the cluster(s), or pass --all.")
        whose = f" of {args.owner}" if args.owner else ""
        return "\n".join(lifecycle.down(args.names, all=args.all, owner=args.owner)) or f"No clusters{whose} to stop."
    if command == "plan":
        return render.plan(lifecycle.plan(args.profile or "local", args.overrides, name=args.name,
                                           workers=args.workers))
    if command == "profiles":
        return render.profiles(lifecycle.profiles())
    if command == "scale":
        lifecycle.scale(args.name, args.n)
        return f"Cluster {args.name!r} scaled to {args.n} worker(s)."
    if command == "adapt":
        lifecycle.adapt(args.name, args.minimum, args.maximum)
        return f"Cluster {args.name!r} adapts between {args.minimum} and {args.maximum} worker(s)."
    if command == "logs":
        return render.logs(lifecycle.logs(args.name))
    if command == "restart":
        lifecycle.restart(args.name)
        return f"Restarted the workers of {args.name!r}."
    if command == "dashboard":
        if not args.name:
            return render.clusters(inventory.list_clusters())
        return inventory.find(args.name).dashboard_link or "no dashboard"
    if command == "up":
        from ..core.operation import follow
        from .progress import ProgressReporter

        operation = lifecycle.start_up(args.profile or "local", name=args.name, workers=args.workers,
                                       overrides=args.overrides, timeout=args.timeout,
                                       wait_workers=args.wait_workers, keep_on_failure=args.keep_on_failure)
        reporter = ProgressReporter(f"up {operation.cluster}", notebook=False)
        try:
            record = follow(operation, reporter)
        finally:
            reporter.finish()
        return f"Cluster {record.name!r} running at {record.scheduler_address}; dashboard {record.dashboard_link}"
    return full_help(build_parser("dask-aws-magic", terminal=True))


if __name__ == "__main__":
    sys.exit(main())
