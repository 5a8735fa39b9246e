"""``%dask_cluster`` and ``%%dask_cluster``: the notebook face of the core."""

from __future__ import annotations

import shlex
from functools import lru_cache
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from traitlets import Bool, Unicode
from traitlets.config import Configurable

from ..core.errors import DaskAwsMagicError
from .arguments import UsageProblem, build_parser, full_help, parse
from .commands import plugin_commands


@lru_cache(maxsize=1)
def _parser() -> Any:
    """Every command, plugins included (read on the first call, not at ``%load_ext``)."""
    return build_parser()


@magics_class
class DaskClusterMagics(Magics, Configurable):
    """Dask clusters from the notebook. Configure with ``%config DaskClusterMagics.client_var = 'c'``."""

    client_var = Unicode("client", help="Variable that receives the connected distributed.Client.").tag(
        config=True)
    default_profile = Unicode("local", help="Profile used by `up` and `plan` when none is named.").tag(
        config=True)
    progress = Bool(True, help="Show progress while `up` waits.").tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any):
        super().__init__(shell=shell, **kwargs)
        self.handles: dict[str, Any] = {}

    @line_cell_magic
    def dask_cluster(self, line: str, cell: str | None = None) -> Any:
        try:
            args = parse(_parser(), shlex.split(line))
        except UsageProblem as exc:
            if "--help" in line or "-h" in line.split():
                print(str(exc) or full_help(_parser()))
                return None
            raise UsageError(str(exc)) from None
        except ValueError as exc:  # shlex: unbalanced quotes
            raise UsageError(f"%dask_cluster: cannot read the line ({exc}); check the quotes.") from None
        if cell is not None and args.command not in ("up", "plan"):
            raise UsageError("%%dask_cluster takes a profile as its body only with `up` or `plan`.")
        try:
            plugin = plugin_commands().get(args.command)
            if plugin is not None:
                print(plugin.run(args))
                return None
            return getattr(self, f"_{args.command}")(args, cell)
        except DaskAwsMagicError as exc:
            raise UsageError(str(exc)) from None

    # -- subcommands -----------------------------------------------------------------------
    def _up(self, args: Any, cell: str | None) -> None:
        from ..core import lifecycle
        from ..core.operation import follow
        from .handle import ClusterHandle
        from .progress import ProgressReporter

        self._client_var(args.client_var)
        profile = args.profile or ("cell" if cell is not None else self.default_profile)
        name = args.name or (None if cell is None else profile)
        operation = lifecycle.start_up(
            profile, name=name, workers=args.workers, overrides=args.overrides, body=cell, timeout=args.timeout,
            wait_workers=args.wait_workers, keep_on_failure=args.keep_on_failure,
        )
        reporter = ProgressReporter(f"up {operation.cluster}") if self.progress else None
        try:
            record = follow(operation, reporter)
        finally:
            if reporter is not None:
                reporter.finish()
        handle = ClusterHandle(record)
        handle.connect()
        self._inject(handle, args.client_var)

    def _attach(self, args: Any, cell: str | None) -> None:
        from . import api

        self._inject(api.attach(args.name), args.client_var)

    def _client_var(self, client_var: str | None) -> str:
        var = client_var or self.client_var
        if not var.isidentifier():
            raise UsageError(f"--client-var {var!r} is not a Python variable name.")
        return var

    def _inject(self, handle: Any, client_var: str | None) -> None:
        var = self._client_var(client_var)
        previous = self.handles.get(handle.name)
        if previous is not None and previous is not handle:
            previous.close()  # an earlier cluster of that name: no client of it is left behind
        self.handles[handle.name] = handle
        self.shell.push({var: handle.client})
        self._show_link(handle.dashboard_link, f"Cluster {handle.name!r} ready; `{var}` is connected.")

    def _show_link(self, link: str | None, text: str) -> None:
        from .progress import in_notebook

        if in_notebook() and link:
            import html

            from IPython.display import display

            markup = (f'{html.escape(text)} Dashboard: <a href="{html.escape(link)}" '
                      f'target="_blank">{html.escape(link)}</a>')
            display({"text/plain": f"{text} Dashboard: {link}", "text/html": markup}, raw=True)
        else:
            print(f"{text} Dashboard: {link or 'none'}")

    def _down(self, args: Any, cell: str | None) -> None:
        from . import api

        if args.unverified:
            if args.names or args.all:
                raise UsageError("%dask_cluster down --unverified ID ...: alone, without names or --all.")
            for line in api.down(unverified=args.unverified):
                print(line)
            return
        if not args.names and not args.all:
            raise UsageError("%dask_cluster down: name the cluster(s), e.g. `down local`, or pass --all.")
        for line in api.down(args.names, all=args.all, owner=args.owner):
            print(line)
        for name in list(self.handles) if args.all else args.names:
            self.handles.pop(name, None)

    def _list(self, args: Any, cell: str | None) -> None:
        from ..core import inventory
        from . import render

        found = inventory.survey("*" if args.all_owners else args.owner)
        print(render.survey(found))
        incomplete = found.incomplete()
        if incomplete is not None:
            raise incomplete

    def _pick(self, name: str | None) -> str:
        """The cluster a command without a name means: the one this kernel uses, or the only one."""
        if name:
            return name
        if len(self.handles) == 1:
            return next(iter(self.handles))
        from ..core import inventory

        live = [r.name for r in inventory.list_clusters() if r.live]
        if len(live) == 1:
            return live[0]
        raise UsageError(f"Name the cluster: there are {len(live)} running ({', '.join(live) or 'none'}).")

    def _status(self, args: Any, cell: str | None) -> None:
        from ..core import lifecycle
        from . import render

        print(render.status(lifecycle.status(self._pick(args.name))))

    def _scale(self, args: Any, cell: str | None) -> None:
        from ..core import lifecycle

        record = lifecycle.scale(args.name, args.n)
        print(f"Cluster {record.name!r} scaled to {args.n} worker(s).")

    def _adapt(self, args: Any, cell: str | None) -> None:
        from ..core import lifecycle

        lifecycle.adapt(args.name, args.minimum, args.maximum)
        print(f"Cluster {args.name!r} adapts between {args.minimum} and {args.maximum} worker(s).")

    def _plan(self, args: Any, cell: str | None) -> None:
        from ..core import lifecycle
        from . import render

        profile = args.profile or ("cell" if cell is not None else self.default_profile)
        print(render.plan(lifecycle.plan(profile, args.overrides, name=args.name, workers=args.workers,
                                          body=cell)))

    def _profiles(self, args: Any, cell: str | None) -> None:
        from ..core import lifecycle
        from . import render

        print(render.profiles(lifecycle.profiles()))

    def _dashboard(self, args: Any, cell: str | None) -> None:
        from ..core import inventory

        record = inventory.find(self._pick(args.name))
        self._show_link(record.dashboard_link, f"Cluster {record.name!r}.")

    def _logs(self, args: Any, cell: str | None) -> None:
        from ..core import lifecycle
        from . import render

        print(render.logs(lifecycle.logs(args.name)))

    def _panel(self, args: Any, cell: str | None) -> Any:
        from . import api

        return api.panel(args.refresh)

    def _restart(self, args: Any, cell: str | None) -> None:
        from ..core import lifecycle

        lifecycle.restart(args.name)
        print(f"Restarted the workers of {args.name!r}.")


DaskClusterMagics.dask_cluster.__doc__ = (
    "Start, use and stop Dask clusters on AWS or this machine.\n\n"
    "    %dask_cluster up [PROFILE]        start (default profile: local), inject `client`\n"
    "    %%dask_cluster up -n NAME         the cell body is the profile (YAML)\n"
    "    %dask_cluster sandbox start       the emulated AWS (and other commands from plugins)\n\n"
    + full_help(build_parser(plugins=False))
)
