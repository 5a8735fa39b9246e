"""What runs in a scheduler or worker container: ECS's way of delivering the Dask command line of
:mod:`..dask_commands`.

The container's command is a short Python program (standard library only: the image may have
nothing else) and a JSON spec. It asks the task metadata endpoint for the task's address and id,
writes the TLS material ECS put in its environment (from the cluster's secret, resolved with the
execution role) to private files and removes it from the environment, installs extra pip packages,
then runs Dask and ends the task when Dask exits (or ``max_lifetime`` passes). The task definition
holds no secret: only secret ARNs.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from .. import dask_commands, software_sync

DATA_DIR = "/data"  # where the EFS file system is mounted, when there is one
TLS_FILES = dask_commands.TLSFiles(ca="{DIR}/ca.pem", cert="{DIR}/node.pem", key="{DIR}/node.key")
IDLE_PRELOAD = "{DIR}/idle_preload.py"
SECRET_VARIABLES = {"DASK_AWS_MAGIC_CA": "ca", "DASK_AWS_MAGIC_CERT": "{role}_cert", "DASK_AWS_MAGIC_KEY": "{role}_key"}
ENV_VARIABLE = "DASK_AWS_MAGIC_ENV"

BOOTSTRAP = r"""
import json, os, signal, socket, subprocess, sys, tempfile, urllib.request
e, spec = os.environ, json.loads(sys.argv[1])
ip, task = None, "task"
try:
    with urllib.request.urlopen(e["ECS_CONTAINER_METADATA_URI_V4"] + "/task", timeout=10) as reply:
        meta = json.load(reply)
    ip = meta["Containers"][0]["Networks"][0]["IPv4Addresses"][0]
    task = meta["TaskARN"].rsplit("/", 1)[-1]
except Exception as exc:
    print("dask-aws-magic: no task metadata (%s); using the hostname's address" % exc, flush=True)
    ip = socket.gethostbyname(socket.gethostname())
d = tempfile.mkdtemp(prefix="dask-aws-magic-")
def private(name, text):
    fd = os.open(os.path.join(d, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
for variable, name in (("DASK_AWS_MAGIC_CA", "ca.pem"), ("DASK_AWS_MAGIC_CERT", "node.pem"),
                       ("DASK_AWS_MAGIC_KEY", "node.key")):
    if variable in e:
        private(name, e.pop(variable))
e.update(json.loads(e.pop("DASK_AWS_MAGIC_ENV", "") or "{}"))
for variable, name in zip(spec.get("dashboard_tls") or [], ("node.pem", "node.key")):
    e[variable] = os.path.join(d, name)  # the dashboard speaks HTTPS with the scheduler's certificate
if spec.get("preload"):
    private("idle_preload.py", spec["preload"])
if spec.get("pip"):
    print("dask-aws-magic: installing " + " ".join(spec["pip"]), flush=True)
    status = subprocess.call([sys.executable, "-m", "pip", "install", "-q", *spec["pip"]])
    if status:
        print("dask-aws-magic: installing extra packages failed (status %d)" % status, flush=True)
        sys.exit(status)
sync = spec.get("sync")
if sync:  # software.sync: what the kernel's lock wants and this image lacks, into a folder on PYTHONPATH
    import base64, zlib
    with open(os.path.join(d, "sync_environment.py"), "wb") as out:
        out.write(zlib.decompress(base64.b64decode(sync["script"])))
    status = subprocess.call([sys.executable, os.path.join(d, "sync_environment.py"), sync["bucket"], sync["key"],
                              spec["role"], os.path.join(d, "software")])
    if status:
        print("dask-aws-magic: installing the software failed (see above)", flush=True)
        sys.exit(status)
    site = os.path.join(d, "software", "site")
    if os.path.isdir(site):
        e["PYTHONPATH"] = site + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
want = spec.get("versions")
if want:  # from the installed packages' folder names: importing dask to ask would cost a second
    names = set()
    for folder in sys.path:
        if os.path.isdir(folder):
            names.update(os.listdir(folder))
    have = {"python": "%d.%d" % sys.version_info[:2]}
    for package in ("dask", "distributed"):
        versions = [n[len(package) + 1:-10] for n in names if n.startswith(package + "-") and n.endswith(".dist-info")]
        have[package] = ([v for v in versions if v[:1].isdigit()] or ["none"])[0]
    if have != want:
        print("dask-aws-magic: the image has %s but the client has %s" % (have, want), flush=True)
        sys.exit(3)
argv = [a.replace("{IP}", ip).replace("{DIR}", d).replace("{TASK}", task) for a in spec["argv"]]
print("dask-aws-magic: starting the %s on %s" % (spec["role"], ip), flush=True)
if not spec.get("max_lifetime"):
    os.execv(sys.executable, [sys.executable, *argv])
child = subprocess.Popen([sys.executable, *argv])
signal.signal(signal.SIGTERM, lambda *_: child.terminate())
try:
    status = child.wait(timeout=spec.get("max_lifetime") or None)
except subprocess.TimeoutExpired:
    print("dask-aws-magic: max_lifetime reached; stopping", flush=True)
    child.terminate()
    try:  # a nanny stopped while its worker starts may never exit: the container's end takes the rest
        status = child.wait(timeout=20)
    except subprocess.TimeoutExpired:
        print("dask-aws-magic: the %s did not stop within 20 s; ending the task" % spec["role"], flush=True)
        status = 0
print("dask-aws-magic: the %s exited with status %s" % (spec["role"], status), flush=True)
sys.exit(status)
""".strip()


def dask_argv(role: str, settings: dict[str, Any], scheduler_ip: str | None) -> list[str]:
    """The Dask command's arguments, with the placeholders the bootstrap fills in."""
    tls = TLS_FILES if settings["tls"] else None
    protocol = "tls" if tls else "tcp"
    if role == "scheduler":
        return dask_commands.scheduler(
            host="{IP}", protocol=protocol, dashboard_address=f"{{IP}}:{dask_commands.DASHBOARD_PORT}", tls=tls,
            idle_timeout=settings["idle_timeout"], idle_preload=IDLE_PRELOAD,
        )
    return dask_commands.worker(
        scheduler_address=f"{protocol}://{scheduler_ip}:{dask_commands.SCHEDULER_PORT}", host="{IP}",
        name="{TASK}", nworkers=settings["nprocs"], nthreads=settings["nthreads"], memory_limit=settings["memory"],
        local_directory="{DIR}/work", death_timeout=120.0, tls=tls,
    )


def command(role: str, settings: dict[str, Any], scheduler_ip: str | None) -> list[str]:
    """The container command of ``role``: the bootstrap and its spec."""
    software = settings["software"]
    spec: dict[str, Any] = {"role": role, "argv": dask_argv(role, settings, scheduler_ip),
                            "pip": software.get("pip") or [], "max_lifetime": settings["max_lifetime"] or None}
    if role == "scheduler" and settings["tls"]:
        spec["dashboard_tls"] = list(dask_commands.DASHBOARD_TLS_VARIABLES)
    if role == "scheduler" and settings["idle_timeout"]:
        spec["preload"] = resources.files("dask_aws_magic").joinpath("core/idle_preload.py").read_text()
    if software.get("sync"):
        spec["sync"] = {"bucket": software["sync"]["bucket"], "key": software["sync"]["key"],
                        "script": software_sync.packed_script()}
    if not software.get("image"):  # our default image: check it really has the client's versions
        spec["versions"] = {"python": software["python"], "dask": software["dask"],
                            "distributed": software["distributed"]}
    return ["python", "-c", BOOTSTRAP, json.dumps(spec, separators=(",", ":"))]


def secrets(role: str, node_secret: str | None, tls: bool) -> list[dict[str, str]]:
    """The container's ``secrets``: ECS reads them from the node secret with the execution role."""
    if not node_secret:
        return []
    keys = dict(SECRET_VARIABLES) if tls else {}
    keys[ENV_VARIABLE] = "env"
    return [{"name": name, "valueFrom": f"{node_secret}:{key.format(role=role)}::"} for name, key in keys.items()]


def definition(role: str, settings: dict[str, Any], *, image: str, scheduler_ip: str | None, node_secret: str | None,
               log_group: str, region: str, cpu: float, memory: int, efs_volume: str | None,
               host_network: bool = False) -> dict[str, Any]:
    """The container definition of ``role``."""
    container: dict[str, Any] = {
        "name": "dask",
        "image": image,
        "essential": True,
        "command": command(role, settings, scheduler_ip),
        "cpu": int(cpu * 1024),
        "memory": memory,
        "environment": [{"name": "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION", "value": "True"}]
        if settings["tls"] else [],
        "secrets": secrets(role, node_secret, settings["tls"]),
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": log_group, "awslogs-region": region, "awslogs-stream-prefix": role}},
        "stopTimeout": 30,
    }
    container["environment"] += [{"name": name, "value": region} for name in ("AWS_REGION", "AWS_DEFAULT_REGION")]
    if role == "scheduler":
        ports = (dask_commands.SCHEDULER_PORT, dask_commands.DASHBOARD_PORT)
        container["portMappings"] = [{"containerPort": port, "protocol": "tcp",
                                      **({"hostPort": port} if host_network else {})} for port in ports]
    if efs_volume:
        container["mountPoints"] = [{"sourceVolume": efs_volume, "containerPath": DATA_DIR}]
    return container
