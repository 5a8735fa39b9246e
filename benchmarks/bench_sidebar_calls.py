"""AWS API calls a minute with a JupyterLab sidebar open, counted by the sandbox's server.

A real Jupyter server runs the extension; its cluster list (`GET {base}/dask-aws-magic/clusters`) is
polled every 2 s, as the sidebar does (labextension/src/index.ts), with 0, 1 and 3 clusters running
(one Fargate cluster with Spot workers and its keeper; then also an EC2 cluster and an EC2 one with
Spot workers and its keeper). Every call the sandbox serves while polling counts: the server's, the
keepers', the clusters' own. Baseline, measured in the same run with the same clusters: a fresh
`inventory.survey()` per poll, what the server did before it kept one shared inventory.
Target: at most 10 calls a minute per region and credentials pair (all are in one here).
Run: python benchmarks/bench_sidebar_calls.py [SECONDS]   (default 120 s per measurement: the
inventory looks every 30 s, so a short window over- or under-counts by a look; the baseline, steady,
is measured over 30 s)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import dask_aws_magic as dam
from dask_aws_magic.core import inventory
from dask_aws_magic.sandbox import Sandbox

POLL = 2.0  # the sidebar's refresh interval
TOKEN = "bench-token"
PROFILES = {
    "fg-spot": "backend: fargate\nregion: us-east-1\nworker: {count: 1, spot: true}\n"
               "ecs:\n  scheduler: {cpu: 0.5, memory: 1GiB}\n  worker: {cpu: 1, memory: 2GiB}\n",
    "ec2": "backend: ec2\nregion: us-east-1\nscheduler: {type: t3.medium}\nworker: {type: m6i.large, count: 1}\n",
    "ec2-spot": "backend: ec2\nregion: us-east-1\nscheduler: {type: t3.medium}\n"
                "worker: {type: m6i.large, count: 1, spot: true}\n",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(home: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", f"--port={port}", "--ip=127.0.0.1", "--no-browser", "--allow-root",
         f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={home}",
         '--ServerApp.jpserver_extensions={"dask_aws_magic.serverext": True}'],
        env=os.environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/dask-aws-magic/clusters"
    deadline = time.monotonic() + 60
    while True:
        try:
            listed(url)
            return server, url
        except OSError:
            if time.monotonic() > deadline:
                server.kill()
                raise
            time.sleep(0.5)


def listed(url: str) -> list[str]:
    request = urllib.request.Request(url, headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        return [c["name"] for c in json.loads(reply.read())["clusters"]]


def per_minute(sb: Sandbox, seconds: float, poll) -> tuple[float, dict[str, int]]:
    """Call ``poll()`` every POLL seconds for ``seconds``; AWS calls a minute, and by action."""
    sb.reset_calls()
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        began = time.monotonic()
        poll()
        time.sleep(max(0.0, POLL - (time.monotonic() - began)))
    elapsed = time.monotonic() - started
    calls = sb.calls()
    return sum(calls.values()) * 60 / elapsed, dict(sorted(calls.items()))


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 120.0
    home = tempfile.mkdtemp(prefix="dam-bench-")
    os.environ["DASK_AWS_MAGIC_HOME"] = home
    os.makedirs(f"{home}/profiles", mode=0o700)
    for name, text in PROFILES.items():
        with open(os.open(f"{home}/profiles/{name}.yaml", os.O_WRONLY | os.O_CREAT, 0o600), "w") as out:
            out.write(text)
    print(f"AWS calls a minute, the cluster list polled every {POLL:g} s for {seconds:g} s")
    with Sandbox() as sb:
        server, url = start_server(home)
        handles = []
        try:
            for count, names in ((0, []), (1, ["fg-spot"]), (3, ["ec2", "ec2-spot"])):
                for name in names:
                    handles.append(dam.up(name, wait_workers=1, progress=False))
                    handles[-1].close()
                time.sleep(2 * POLL)  # the new clusters' first looks are behind us
                assert len(listed(url)) == count
                ours, by_action = per_minute(sb, seconds, lambda: listed(url))
                fresh, _ = per_minute(sb, min(seconds, 30.0), lambda: inventory.survey())
                verdict = "ok" if ours <= 10 else "OVER TARGET"
                print(f"  {count} cluster(s): {ours:5.1f}/min with the shared inventory ({verdict}); baseline, a fresh "
                      f"survey per poll: {fresh:5.1f}/min ({fresh / max(ours, 0.1):.0f}x)")
                print(f"      {', '.join(f'{k} {v}' for k, v in by_action.items()) or 'no call'}")
        finally:
            server.terminate()
            server.wait(30)
            for handle in handles:
                handle.down()
        assert not sb.resources(), sb.resources()


if __name__ == "__main__":
    main()
