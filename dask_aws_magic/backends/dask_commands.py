"""The command lines of the Dask scheduler and workers, for every backend.

Built here once; how they reach a machine (a local process, EC2 user-data, an ECS container
command) is each backend's job. Each function returns the arguments after the Python
interpreter: ``python -m distributed.cli.dask_scheduler ...``.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEDULER_PORT = 8786
DASHBOARD_PORT = 8787
IDLE_PRELOAD_MODULE = "dask_aws_magic.core.idle_preload"


def endpoints(host: str, protocol: str) -> tuple[str, str]:
    """The scheduler's address and dashboard link on ``host`` (the dashboard speaks HTTPS, with the
    scheduler's certificate, when the cluster speaks TLS)."""
    scheme = "https" if protocol == "tls" else "http"
    return f"{protocol}://{host}:{SCHEDULER_PORT}", f"{scheme}://{host}:{DASHBOARD_PORT}/status"


# distributed's settings for an HTTPS dashboard: the variables name the scheduler's certificate and key.
DASHBOARD_TLS_VARIABLES = ("DASK_DISTRIBUTED__SCHEDULER__DASHBOARD__TLS__CERT",
                           "DASK_DISTRIBUTED__SCHEDULER__DASHBOARD__TLS__KEY")


@dataclass(frozen=True)
class TLSFiles:
    """Paths of the TLS material on the machine that runs the process."""

    ca: str
    cert: str
    key: str

    def flags(self) -> list[str]:
        return ["--tls-ca-file", self.ca, "--tls-cert", self.cert, "--tls-key", self.key]


def scheduler(
    *,
    host: str,
    port: int = SCHEDULER_PORT,
    dashboard_address: str,
    protocol: str = "tcp",
    tls: TLSFiles | None = None,
    scheduler_file: str | None = None,
    idle_timeout: float = 0.0,
    idle_preload: str = IDLE_PRELOAD_MODULE,
) -> list[str]:
    """``dask scheduler``; with ``idle_timeout`` the preload stops it after that long with no tasks
    and no clients (``idle_preload`` is a module name, or a file path where the package is absent)."""
    argv = ["-m", "distributed.cli.dask_scheduler", "--host", host, "--port", str(port),
            "--protocol", protocol, "--dashboard-address", dashboard_address]
    if scheduler_file:
        argv += ["--scheduler-file", scheduler_file]
    if tls:
        argv += tls.flags()
    if idle_timeout:
        argv += ["--preload", idle_preload, "--idle-timeout-seconds", f"{idle_timeout:g}"]
    return argv


def worker(
    *,
    scheduler_address: str | None = None,
    scheduler_file: str | None = None,
    host: str,
    name: str,
    nworkers: int = 1,
    nthreads: int = 1,
    memory_limit: int | str | None = None,
    local_directory: str,
    death_timeout: float = 60.0,
    tls: TLSFiles | None = None,
    preload: str | None = None,
) -> list[str]:
    """``dask worker`` (without its own dashboard, as LocalCluster's workers: it saves each worker
    importing bokeh). With ``nworkers > 1`` Dask names the processes ``NAME-0``, ``NAME-1``, ..."""
    argv = ["-m", "distributed.cli.dask_worker"]
    argv += [scheduler_address] if scheduler_address else ["--scheduler-file", str(scheduler_file)]
    argv += ["--host", host, "--name", name, "--nworkers", str(nworkers), "--nthreads", str(nthreads),
             "--memory-limit", str(memory_limit or "auto"), "--local-directory", local_directory,
             "--death-timeout", f"{death_timeout:g}", "--no-dashboard"]
    if tls:
        argv += tls.flags()
    if preload:
        argv += ["--preload", preload]
    return argv


def worker_names(name: str, nworkers: int) -> list[str]:
    """The Dask worker names that ``worker(name=name, nworkers=nworkers)`` produces."""
    return [name] if nworkers == 1 else [f"{name}-{i}" for i in range(nworkers)]
