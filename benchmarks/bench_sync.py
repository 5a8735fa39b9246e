"""Seconds that software.sync adds to `up`, in the AWS sandbox: an environment with pandas, pyarrow, s3fs and
scikit-learn, on nodes whose image has only Python, dask, distributed and bokeh, with a local wheel folder
standing in for the package index.

Measured in the same run, each until a client is connected and every worker joined (boot delay B each):
  baked     the same `up` on an image that already has every package (a user with a baked AMI): sync reads
            the lock, finds nothing missing, installs nothing;
  first     on the bare image, with no environment in the bucket: every node installs the missing packages
            with uv; the scheduler uploads the archive;
  second    on the bare image again: every node fetches and unpacks that one archive.
Target: second within 1.2x of baked.

Where the emulated nodes' disks are (DISK): `memory` (the default) puts them on /dev/shm, as an instance's
writes land in its page cache; `disk` on this machine's file system. On this machine that matters: its ext4
spends 4.6 s of kernel time extracting a 350 MB tar that tmpfs takes in 0.54 s, and the three nodes of a
cluster share its two cores where on EC2 each writes on its own. Same DISK for every column.

The kernel is a light venv (this venv's packages through a .pth, plus the four packages and their
dependencies, installed with uv at this venv's versions): the benchmark re-runs itself in it. Its lock is
the closure of dask, distributed, bokeh and the four packages; the rest of the kernel (Jupyter, moto, the
test tools) is left out with `software.exclude`, as a user leaves out kernel-only tools. Everything built
(kernel venv, wheel folder, machine images) is cached under ~/.cache/dask-aws-magic-bench.
Run: python benchmarks/bench_sync.py [BOOT_DELAY] [ROUNDS] [memory|disk]
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dask_aws_magic.backends.environment import canonical

CACHE = Path(os.environ.get("DASK_AWS_MAGIC_BENCH_CACHE") or Path.home() / ".cache" / "dask-aws-magic-bench")
PACKAGES = ["pandas", "pyarrow", "s3fs", "scikit-learn"]
IMAGE_BASE = ["dask", "distributed", "bokeh"]
WORKERS = 2
INNER = "DASK_AWS_MAGIC_BENCH_KERNEL"


# -- set-up, in this venv ------------------------------------------------------------------------
def kernel_venv() -> Path:
    """The benchmark's kernel: a light venv seeing this venv's packages, plus the four packages."""
    from dask_aws_magic.sandbox.software import uv_binary

    venv = CACHE / "kernel"
    python = venv / "bin" / "python"
    done = venv / ".built"
    ours = sysconfig.get_paths()["purelib"]
    if done.exists() and done.read_text() == ours:  # built on this venv's packages (another's may differ)
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", "--without-pip", str(venv)], check=True)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "zz_bench_venv.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    from importlib import metadata

    pins = sorted({f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions()
                   if d.metadata["Name"] and not d.read_text("direct_url.json")})
    constraints = CACHE / "constraints.txt"
    constraints.write_text("\n".join(pins) + "\n")  # this venv's versions: boto3 and moto keep working
    subprocess.run([uv_binary(), "pip", "install", "-q", "--python", str(python), "--constraint", str(constraints),
                    *PACKAGES], check=True)
    done.write_text(ours)
    return python


# -- the benchmark, in the kernel venv -------------------------------------------------------------
def kernel_only() -> list[str]:
    """Every distribution of the kernel outside the closure of the packages the cluster needs."""
    from importlib import metadata

    from dask_aws_magic.core.versions import closure

    wanted = closure([*IMAGE_BASE, *PACKAGES])
    return sorted({d.metadata["Name"] for d in metadata.distributions()
                   if d.metadata["Name"] and canonical(d.metadata["Name"]) not in wanted})


def wheel_folder(pins: list[str]) -> Path:
    """Wheels of every pin, downloaded once (the sandbox's nodes install from here, never from the internet)."""
    folder = CACHE / "wheels"
    folder.mkdir(parents=True, exist_ok=True)
    have = {canonical(f.name.split("-")[0]) + "==" + f.name.split("-")[1] for f in folder.glob("*.whl")}
    missing = [p for p in pins if canonical(p.split("==")[0]) + "==" + p.split("==")[1] not in have]
    if missing:
        print(f"downloading {len(missing)} wheel(s) into {folder}", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                        "-d", str(folder), *missing], check=True)
    return folder


def timed_up(sb, profile: str) -> tuple[float, dict[str, list[str]]]:
    """Seconds to a ready client with every worker; what the nodes said about their software."""
    import dask_aws_magic as dam

    start = time.perf_counter()
    handle = dam.up(profile, workers=WORKERS, wait_workers=WORKERS, progress=False)
    elapsed = time.perf_counter() - start
    assert handle.client.submit(lambda: __import__("sklearn").__version__).result()
    made = handle.record.resources
    said = {i: [line for line in sb.console_output(i).splitlines() if "software:" in line]
            for i in [made["scheduler"], *made["workers"]]}
    handle.down()
    return elapsed, said


@contextlib.contextmanager
def sandbox(delay: float, image: Any, wheels: Path, disk: str) -> Iterator[Any]:
    """A sandbox whose nodes' roots are on ``disk`` (removed after)."""
    from dask_aws_magic.sandbox import Sandbox

    workdir = tempfile.mkdtemp(prefix="dam-bench-nodes-", dir="/dev/shm" if disk == "memory" else None)
    try:
        with Sandbox(boot_delay=delay, image=image, wheels=str(wheels), workdir=workdir) as sb:
            yield sb
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def measure(delay: float, rounds: int, disk: str) -> None:
    from dask_aws_magic.backends import environment
    from dask_aws_magic.sandbox import MachineImage

    exclude = kernel_only()
    lock = environment.lock(python=f"{sys.version_info.major}.{sys.version_info.minor}", arch="x86_64",
                            exclude=exclude)
    assert not lock.wheels and not lock.left_out, (lock.wheels, lock.left_out)
    print(f"the environment: {lock.summary()} (kernel-only tools left out: {len(exclude)})")
    wheels = wheel_folder(lock.pins)
    versions = dict(pin.split("==") for pin in lock.pins)
    bare = MachineImage(tuple(f"{n}=={versions[n]}" for n in IMAGE_BASE), find_links=str(wheels))
    baked = MachineImage(tuple(lock.pins), find_links=str(wheels), name="baked")
    for image in (bare, baked):
        image.python()  # built once, cached
    home = tempfile.mkdtemp(prefix="dam-bench-sync-")
    os.environ["DASK_AWS_MAGIC_HOME"] = home
    os.makedirs(f"{home}/profiles")
    Path(home, "profiles", "bench.yaml").write_text(
        "backend: ec2\nregion: us-east-1\nscheduler: {type: t3.medium}\nworker: {type: m6i.large}\n"
        f"software: {{exclude: [{', '.join(exclude)}]}}\n")
    results: dict[str, list[float]] = {"baked": [], "first": [], "second": []}
    with sandbox(delay, baked, wheels, disk) as sb:
        timed_up(sb, "bench")  # warm: moto's models, imports
    for _ in range(rounds):  # the columns interleaved: a busy moment of the shared machine hits each
        with sandbox(delay, baked, wheels, disk) as sb:
            results["baked"].append(timed_up(sb, "bench")[0])
        with sandbox(delay, bare, wheels, disk) as sb:
            took, said = timed_up(sb, "bench")
            assert all("installing" in " ".join(lines) or "fetched" in " ".join(lines) for lines in said.values())
            results["first"].append(took)
            took, said = timed_up(sb, "bench")
            assert all("fetched the environment archive" in " ".join(lines) for lines in said.values()), said
            results["second"].append(took)
            assert not sb.resources(), sb.resources()
    print("what the nodes said on the last second start:")
    for lines in said.values():
        print("  " + " / ".join(line.split("software: ", 1)[-1] for line in lines))
    base = statistics.median(results["baked"])
    print(f"boot delay {delay:g} s per instance, {WORKERS} workers, nodes' disks in {disk}, median of {rounds} rounds")
    print(f"baked image (nothing to install)  {base:6.2f} s")
    for name in ("first", "second"):
        value = statistics.median(results[name])
        target = " (target <= 1.20)" if name == "second" else ""
        print(f"bare image, {name} start            {value:6.2f} s: +{value - base:5.2f} s, "
              f"ratio {value / base:4.2f}{target}")


def main() -> None:
    delay = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    disk = sys.argv[3] if len(sys.argv) > 3 else "memory"
    if disk not in ("memory", "disk"):
        sys.exit(f"DISK is `memory` or `disk`, not {disk!r}")
    if disk == "memory" and not os.path.isdir("/dev/shm"):
        sys.exit("DISK `memory` needs /dev/shm; run with `disk`")
    if os.environ.get(INNER):
        measure(delay, rounds, disk)
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    python = kernel_venv()
    os.execve(str(python), [str(python), __file__, str(delay), str(rounds), disk], {**os.environ, INNER: "1"})


if __name__ == "__main__":
    main()
