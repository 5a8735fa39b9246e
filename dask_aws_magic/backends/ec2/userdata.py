"""User-data scripts that turn a fresh instance into a Dask scheduler or worker.

The script asks the instance-metadata service (IMDSv2) for its own address, installs the client's
Python and dask versions only if the image lacks them, writes the cluster's TLS certificate, runs
Dask, and powers the instance off when Dask exits (launched with shutdown behaviour
``terminate``, that ends the instance and its bill). ``max_lifetime`` is a timer on the instance
itself. No AWS credential is ever written here: instances get AWS access from
``iam_instance_profile``.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from importlib import resources

from ...aws.tls import ClusterTLS

EC2_USER_DATA_LIMIT = 16 * 1024
SCHEDULER_PORT = 8786
DASHBOARD_PORT = 8787
HOME = "/opt/dask-aws-magic"
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class Software:
    """What the instances run: pinned to the client's versions unless the profile says otherwise."""

    python: str
    dask: str
    distributed: str
    pip: list[str] = field(default_factory=list)
    image: str | None = None
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class NodeSpec:
    """Everything a script needs that differs between clusters and roles."""

    role: str  # "scheduler" | "worker"
    cluster: str
    cluster_id: str
    software: Software
    tls: ClusterTLS | None
    scheduler_ip: str | None = None  # workers only
    nprocs: int = 1
    nthreads: int = 1
    memory: int | None = None
    idle_timeout: float = 0.0
    max_lifetime: float = 0.0
    death_timeout: float = 120.0


def _heredoc(path: str, text: str, tag: str) -> str:
    return f"cat > {path} <<'{tag}'\n{text.rstrip()}\n{tag}\n"


def _software(spec: NodeSpec, exported: list[str]) -> str:
    sw = spec.software
    if sw.image:
        image = shlex.quote(sw.image)
        passed = "".join(f" -e {name}" for name in exported)  # docker run does not inherit the script's env
        return (
            "if ! command -v docker >/dev/null; then (dnf install -y -q docker || apt-get install -y -q docker.io)"
            " || stop 'installing docker failed'; fi\n"
            "systemctl start docker 2>/dev/null || true\n"
            f"docker pull -q {image} || stop 'pulling the image failed'\n"
            f'RUN="docker run --rm --network host{passed} -v {HOME}:{HOME} {image}"\nPY=python\n'
        )
    # The wanted versions reach Python through the environment, never pasted into its source.
    check = ("import os, sys, importlib.util, dask, distributed; e = os.environ; sys.exit(not ("
             "sys.version.startswith(e['WANT_PYTHON'] + '.') and dask.__version__ == e['WANT_DASK'] "
             "and distributed.__version__ == e['WANT_DISTRIBUTED'] "
             "and (e['WANT_BOKEH'] == '0' or importlib.util.find_spec('bokeh'))))")
    dashboard = ["bokeh>=3.1"] if spec.role == "scheduler" else []  # serves the dashboard
    packages = " ".join(shlex.quote(p) for p in
                        [f"dask=={sw.dask}", f"distributed=={sw.distributed}", *dashboard, *sw.pip])
    lines = [
        f"export WANT_PYTHON={shlex.quote(sw.python)} WANT_DASK={shlex.quote(sw.dask)} "
        f"WANT_DISTRIBUTED={shlex.quote(sw.distributed)} WANT_BOKEH={1 if dashboard else 0}",
        f'want() {{ "$1" -c "{check}" 2>/dev/null; }}',
        'RUN=""',
        "if want python3; then",
        "  PY=python3",
    ]
    if sw.pip:
        extras = " ".join(shlex.quote(p) for p in sw.pip)
        lines.append(f'  $PY -m pip install -q {extras} || stop "installing extra packages failed"')
    lines += [
        f"elif want {HOME}/env/bin/python; then PY={HOME}/env/bin/python",
        "else",
        '  echo "dask-aws-magic: installing Python $WANT_PYTHON, dask $WANT_DASK"',
        "  (command -v dnf >/dev/null && dnf install -y -q python3-pip) || (apt-get update -q && "
        "apt-get install -y -q python3-pip) || true",
        "  python3 -m pip install -q uv || stop 'installing uv failed'",
        f'  python3 -m uv venv -q -p "$WANT_PYTHON" {HOME}/env || stop "creating the Python env failed"',
        f"  python3 -m uv pip install -q -p {HOME}/env/bin/python {packages} || stop 'installing dask failed'",
        f"  PY={HOME}/env/bin/python",
        "fi",
    ]
    return "\n".join(lines) + "\n"


def _tls_flags(spec: NodeSpec) -> str:
    if spec.tls is None:
        return ""
    return (f" --tls-ca-file {HOME}/cluster.pem --tls-cert {HOME}/cluster.pem --tls-key {HOME}/cluster.key")


def _dask_command(spec: NodeSpec) -> str:
    protocol = "tls" if spec.tls else "tcp"
    if spec.role == "scheduler":
        command = (f'$RUN $PY -m distributed.cli.dask_scheduler --host "$IP" --port {SCHEDULER_PORT} '
                   f'--protocol {protocol} --dashboard-address "$IP:{DASHBOARD_PORT}"{_tls_flags(spec)}')
        if spec.idle_timeout:
            command += f" --preload {HOME}/idle_preload.py --idle-timeout-seconds {spec.idle_timeout:g}"
        return command
    memory = str(spec.memory) if spec.memory else "auto"
    return (f"$RUN $PY -m distributed.cli.dask_worker {protocol}://{spec.scheduler_ip}:{SCHEDULER_PORT} "
            f'--host "$IP" --name "$ID" --nworkers {spec.nprocs} --nthreads {spec.nthreads} '
            f"--memory-limit {memory} --death-timeout {spec.death_timeout:g} --local-directory {HOME}/work "
            "--no-dashboard"
            f"{_tls_flags(spec)}")


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
        "ID=$(meta instance-id)",
    ]
    if spec.max_lifetime:
        parts.append(f"(sleep {spec.max_lifetime:.0f}; echo 'dask-aws-magic: max_lifetime reached'; "
                     "shutdown -h now) &")
    parts += [f"umask 077; mkdir -p {HOME}/work; cd {HOME}"]
    exported = []
    for key, value in spec.software.env.items():
        if not ENV_NAME.match(key):
            raise ValueError(f"not an environment variable name: {key!r}")
        parts.append(f"export {key}={shlex.quote(value)}")
        exported.append(key)
    script = "\n".join(parts) + "\n"
    if spec.tls is not None:
        script += _heredoc(f"{HOME}/cluster.pem", spec.tls.cert, "PEM")
        script += _heredoc(f"{HOME}/cluster.key", spec.tls.key, "KEY")
        script += "export DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION=True\n"
        exported.append("DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION")
    if spec.role == "scheduler" and spec.idle_timeout:
        preload = resources.files("dask_aws_magic").joinpath("core/idle_preload.py").read_text()
        script += _heredoc(f"{HOME}/idle_preload.py", preload, "PRELOAD")
    script += _software(spec, exported)
    script += f'echo "dask-aws-magic: starting the {spec.role} on $IP"\n'
    script += _dask_command(spec) + "\n"
    script += 'stop "dask exited with status $?"\n'
    return script


def certificate_from_user_data(text: str) -> ClusterTLS | None:
    """The cluster's TLS material, read back from a scheduler's user-data (for ``attach`` from
    a machine whose registry does not have it)."""
    begin_cert, begin_key = text.find("-----BEGIN CERTIFICATE-----"), text.find("-----BEGIN PRIVATE KEY-----")
    if begin_cert < 0 or begin_key < 0:
        return None
    end_cert = text.index("-----END CERTIFICATE-----", begin_cert) + len("-----END CERTIFICATE-----")
    end_key = text.index("-----END PRIVATE KEY-----", begin_key) + len("-----END PRIVATE KEY-----")
    return ClusterTLS(cert=text[begin_cert:end_cert] + "\n", key=text[begin_key:end_key] + "\n")
