"""User-data scripts that turn a fresh instance into a Dask scheduler or worker: EC2's way of
delivering the Dask command line of :mod:`..dask_commands`.

The script asks the instance-metadata service (IMDSv2) for its own address, fetches the cluster's
node secret (its TLS identity and ``software.env``) from Secrets Manager with the instance role's
credentials, installs the client's Python and dask versions only if the image lacks them, runs
Dask, and powers the instance off when Dask exits (launched with shutdown behaviour ``terminate``,
that ends the instance and its bill). ``max_lifetime`` is a timer on the instance itself. Nothing
secret is ever written here: user-data is readable by anyone allowed ``ec2:DescribeInstanceAttribute``
(AWS's ReadOnlyAccess policy included); it carries only the secret's name.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from .. import dask_commands

EC2_USER_DATA_LIMIT = 16 * 1024
HOME = "/opt/dask-aws-magic"  # on the instance; the sandbox's emulator puts it under the instance's own root
ROOT_VARIABLE = "SANDBOX_INSTANCE_ROOT"  # set by the sandbox's instance emulator only: empty on EC2
DIR = "$D"  # the script's variable holding HOME under the root
SHELL_VARIABLES = ("$IP", "$ID", DIR)  # set by the script (the address and id from the instance metadata)
TLS_FILES = dask_commands.TLSFiles(ca=f"{DIR}/ca.pem", cert=f"{DIR}/node.pem", key=f"{DIR}/node.key")
IDLE_PRELOAD = f"{DIR}/idle_preload.py"  # the preload's own text, as the package may be absent there
FETCH_SECRET = f"{DIR}/fetch_secret.py"  # likewise the secret fetcher (standard library only)
SYNC = f"{DIR}/sync_environment.py"  # the software sync (standard library only), written from the node secret
SPOT_PRELOAD = f"{DIR}/spot_notice.py"  # a Spot worker's: retires it at EC2's interruption notice
SPOT_MARK_VARIABLE = "DASK_AWS_MAGIC_SPOT_MARK"  # where that preload marks the instance as reclaimed
# The dashboard speaks HTTPS with the scheduler's certificate (distributed's dashboard TLS settings).
DASHBOARD_TLS = dict(zip(dask_commands.DASHBOARD_TLS_VARIABLES, (TLS_FILES.cert, TLS_FILES.key), strict=True))
# Whether a Python has the wanted versions, from the packages' metadata: importing dask and
# distributed to ask them would cost the instance a second or two before the scheduler starts. First
# the installed-package folders by name (a directory listing), then importlib.metadata (~50 ms more)
# for installs that name their metadata otherwise.
QUICK_CHECK = (
    "import os, sys; e = os.environ; n = set(); [n.update(os.listdir(p)) for p in sys.path if os.path.isdir(p)]; "
    "sys.exit(not (sys.version.startswith(e['WANT_PYTHON'] + '.') and 'dask-' + e['WANT_DASK'] + '.dist-info' in n "
    "and 'distributed-' + e['WANT_DISTRIBUTED'] + '.dist-info' in n and (e['WANT_BOKEH'] == '0' "
    "or any(x.startswith('bokeh-') and x.endswith('.dist-info') for x in n))))"
)
VERSIONS_CHECK = (
    "import os, sys; from importlib.metadata import version as v; e = os.environ; sys.exit(not ("
    "sys.version.startswith(e['WANT_PYTHON'] + '.') and v('dask') == e['WANT_DASK'] "
    "and v('distributed') == e['WANT_DISTRIBUTED'] and (e['WANT_BOKEH'] == '0' or v('bokeh'))))"
)


@dataclass
class Software:
    """What the instances run: pinned to the client's versions unless the profile says otherwise."""

    python: str
    dask: str
    distributed: str
    pip: list[str] = field(default_factory=list)
    image: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    sync: dict[str, Any] | None = None  # software.sync: the environments bucket and the lock's key


@dataclass
class NodeSpec:
    """Everything a script needs that differs between clusters and roles."""

    role: str  # "scheduler" | "worker"
    cluster: str
    cluster_id: str
    software: Software
    secret: str  # the name of the cluster's node secret: TLS identities and software.env
    tls: bool = True
    scheduler_ip: str | None = None  # workers only
    nprocs: int = 1
    nthreads: int = 1
    memory: int | None = None
    idle_timeout: float = 0.0
    max_lifetime: float = 0.0
    death_timeout: float = 120.0
    spot: bool = False  # a worker that may run on Spot: it watches for EC2's interruption notice


@cache
def _compact(module: str) -> str:
    """A module of the package as short source for user-data: its docstrings and comments dropped."""
    import ast

    tree = ast.parse(resources.files("dask_aws_magic").joinpath(module).read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def _heredoc(path: str, text: str, tag: str) -> str:
    return f"cat > {_shell_word(path)} <<'{tag}'\n{text.rstrip()}\n{tag}\n"


def _software(spec: NodeSpec, exported: list[str]) -> str:
    sw = spec.software
    if sw.image:
        image = shlex.quote(sw.image)
        # docker run does not inherit the script's env; software.env's names come with the secret.
        passed = "".join(f" -e {name}" for name in exported) + ' $(sed "s/^/-e /" "$D/env.names")'
        return (
            "if ! command -v docker >/dev/null; then (dnf install -y -q docker || apt-get install -y -q docker.io)"
            " || stop 'installing docker failed'; fi\n"
            "systemctl start docker 2>/dev/null || true\n"
            f"docker pull -q {image} || stop 'pulling the image failed'\n"
            f'RUN="docker run --rm --network host{passed} -v {DIR}:{DIR} {image}"\nPY=python\n'
        )
    # The wanted versions reach Python through the environment, never pasted into its source.
    dashboard = ["bokeh>=3.1"] if spec.role == "scheduler" else []  # serves the dashboard
    packages = " ".join(shlex.quote(p) for p in
                        [f"dask=={sw.dask}", f"distributed=={sw.distributed}", *dashboard, *sw.pip])
    lines = [
        f"export WANT_PYTHON={shlex.quote(sw.python)} WANT_DASK={shlex.quote(sw.dask)} "
        f"WANT_DISTRIBUTED={shlex.quote(sw.distributed)} WANT_BOKEH={1 if dashboard else 0}",
        f'want() {{ "$1" -c "{QUICK_CHECK}" 2>/dev/null || "$1" -c "{VERSIONS_CHECK}" 2>/dev/null; }}',
        'RUN=""',
        "if want python3; then",
        "  PY=python3",
    ]
    if sw.pip:  # into a venv that sees the image's packages: the system pip may refuse (PEP 668)
        extras = " ".join(shlex.quote(p) for p in sw.pip)
        lines += [f'  python3 -m venv --system-site-packages "{DIR}/env" && "{DIR}/env/bin/python" -m pip install '
                  f'-q {extras} || stop "installing extra packages failed"', f'  PY="{DIR}/env/bin/python"']
    # uv from a venv of its own: a system pip may refuse to install anything (PEP 668).
    lines += [
        f'elif want "{DIR}/env/bin/python"; then PY="{DIR}/env/bin/python"',
        "else",
        '  echo "dask-aws-magic: installing Python $WANT_PYTHON, dask $WANT_DASK"',
        "  if ! python3 -c 'import ensurepip' 2>/dev/null; then (command -v dnf >/dev/null && dnf install -y -q "
        "python3-pip) || (apt-get update -q && apt-get install -y -q python3-venv) || true; fi",
        f'  python3 -m venv "{DIR}/tools" && "{DIR}/tools/bin/python" -m pip install -q uv '
        "|| stop 'installing uv failed'",
        f'  "{DIR}/tools/bin/uv" venv -q -p "$WANT_PYTHON" "{DIR}/env" || stop "creating the Python env failed"',
        f'  "{DIR}/tools/bin/uv" pip install -q -p "{DIR}/env/bin/python" {packages} || stop "installing dask failed"',
        f'  PY="{DIR}/env/bin/python"',
        "fi",
    ]
    return "\n".join(lines) + "\n"


def _sync(spec: NodeSpec) -> str:
    """Give the node's Python what the kernel's lock wants (software.sync), before Dask starts. The script
    came with the node secret (it would take a third of user-data's 16 KB)."""
    sync = spec.software.sync or {}
    return (f'$PY "{SYNC}" {shlex.quote(sync["bucket"])} {shlex.quote(sync["key"])} {spec.role} "{DIR}/software" '
            "|| stop 'installing the software failed (see above)'\n"
            f'if [ -d "{DIR}/software/site" ]; then '
            f'export PYTHONPATH="{DIR}/software/site${{PYTHONPATH:+:$PYTHONPATH}}"; fi\n')


def _shell_word(arg: str) -> str:
    """``arg`` quoted for bash; the metadata variables in it are left for the shell to expand."""
    if not any(variable in arg for variable in SHELL_VARIABLES):
        return shlex.quote(arg)
    rest = arg
    for variable in SHELL_VARIABLES:
        rest = rest.replace(variable, "")
    if rest and shlex.quote(rest) != rest:
        raise ValueError(f"not safe to expand in double quotes: {arg!r}")
    return f'"{arg}"'


def dask_argv(spec: NodeSpec) -> list[str]:
    """The Dask command's arguments after the interpreter, with this script's paths and variables."""
    protocol = "tls" if spec.tls else "tcp"
    tls = TLS_FILES if spec.tls else None
    if spec.role == "scheduler":
        return dask_commands.scheduler(
            host="$IP", protocol=protocol, dashboard_address=f"$IP:{dask_commands.DASHBOARD_PORT}", tls=tls,
            idle_timeout=spec.idle_timeout, idle_preload=IDLE_PRELOAD,
        )
    return dask_commands.worker(
        scheduler_address=f"{protocol}://{spec.scheduler_ip}:{dask_commands.SCHEDULER_PORT}", host="$IP",
        name="$ID", nworkers=spec.nprocs, nthreads=spec.nthreads, memory_limit=spec.memory,
        local_directory=f"{DIR}/work", death_timeout=spec.death_timeout, tls=tls,
        preload=SPOT_PRELOAD if spec.spot else None,
    )


def user_data(spec: NodeSpec) -> str:
    """The user-data script for one role of one cluster."""
    parts = [
        "#!/bin/bash",
        f"# dask-aws-magic {spec.role} of cluster {spec.cluster} ({spec.cluster_id}). No credentials inside.",
        "set -u",
        f'echo "dask-aws-magic: {spec.role} of {spec.cluster} booting"',
        'stop() { echo "dask-aws-magic: $1; powering off"; shutdown -h now; exit 1; }',
        'IMDS="${AWS_EC2_METADATA_SERVICE_ENDPOINT:-http://169.254.169.254/}"',
        'TOKEN=$(curl -sf -X PUT "${IMDS}latest/api/token" -H "X-aws-ec2-metadata-token-ttl-seconds: 21600")',
        'meta() { curl -sf -H "X-aws-ec2-metadata-token: $TOKEN" "${IMDS}latest/meta-data/$1"; }',
        'IP=$(meta local-ipv4) || stop "no instance metadata"',
        'export AWS_REGION=$(meta placement/region); export AWS_DEFAULT_REGION=$AWS_REGION',  # boto3 needs one
        *(["ID=$(meta instance-id)"] if spec.role == "worker" else []),  # names the worker
    ]
    if spec.max_lifetime:
        parts.append(f"(sleep {spec.max_lifetime:.0f}; echo 'dask-aws-magic: max_lifetime reached'; "
                     "shutdown -h now) &")
    parts += [f'D="${{{ROOT_VARIABLE}:-}}{HOME}"', f'umask 077; mkdir -p "{DIR}/work"; cd "{DIR}"']
    script = "\n".join(parts) + "\n"
    script += _heredoc(FETCH_SECRET, _compact("aws/fetch_secret.py"), "FETCH")
    script += (f'python3 {_shell_word(FETCH_SECRET)} {shlex.quote(spec.secret)} {spec.role} "{DIR}" '
               "|| stop 'reading the cluster secret failed (see above)'\n")
    script += f'. "{DIR}/env.sh"\n'  # software.env, from the secret
    exported: list[str] = ["AWS_REGION", "AWS_DEFAULT_REGION"]
    if spec.tls:
        settings = {"DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True",
                    **(DASHBOARD_TLS if spec.role == "scheduler" else {})}
        for key, value in settings.items():
            script += f"export {key}={_shell_word(value)}\n"
            exported.append(key)
    if spec.role == "scheduler" and spec.idle_timeout:
        script += _heredoc(IDLE_PRELOAD, _compact("core/idle_preload.py"), "PRELOAD")
    if spec.spot:
        script += _heredoc(SPOT_PRELOAD, _compact("backends/ec2/spot_notice.py"), "SPOT")
        script += f'export {SPOT_MARK_VARIABLE}="$D/reclaimed"\n'  # the preload runs from a copy elsewhere
        exported.append(SPOT_MARK_VARIABLE)
    script += _software(spec, exported)
    if spec.software.sync:
        script += _sync(spec)
    script += f'echo "dask-aws-magic: starting the {spec.role} on $IP"\n'
    script += "$RUN $PY " + " ".join(_shell_word(arg) for arg in dask_argv(spec)) + "\n"
    if spec.spot:  # retired at EC2's notice: EC2 ends the instance (its reason tells the keeper to replace it)
        script += ('S=$?; [ -e "$D/reclaimed" ] && { echo "dask-aws-magic: retired; EC2 takes it"; sleep 300; }; '
                   "(exit $S)\n")
    script += 'stop "dask exited with status $?"\n'
    return script
