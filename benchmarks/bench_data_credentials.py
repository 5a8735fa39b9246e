"""A breakdown, not a comparison: the seconds forwarding the data credentials adds to our own `up`, in the
AWS sandbox: the same profile with `data.credentials: none` and with `forward` scoped by `data.s3` (one STS
call before launch, then the scheduler and worker plugins registered through a short TLS client), each
until a client is connected and every worker joined, interleaved in the same run. How `up` compares with
what a user could do without us is bench_ec2_ready.py and bench_ecs_ready.py (a bare launch), where
forwarding is on, as it is by default.

Also the cost of one renewal (STS + registration on a running cluster), as a kernel's refresher pays it.
Run: python benchmarks/bench_data_credentials.py [BACKEND] [ROUNDS]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

from bench_context import time_ours  # this folder is on sys.path when run as a script

from dask_aws_magic.sandbox import Sandbox

PROFILES = {
    "ec2": "backend: ec2\nregion: us-east-1\nscheduler: {type: t3.medium}\nworker: {type: m6i.large}\n",
    "fargate": "backend: fargate\nregion: us-east-1\n"
               "ecs: {scheduler: {cpu: 0.5, memory: 1GiB}, worker: {cpu: 1, memory: 2GiB}}\n",
}


def main() -> None:
    backend = sys.argv[1] if len(sys.argv) > 1 else "ec2"
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    home = tempfile.mkdtemp(prefix="dam-bench-")
    os.environ["DASK_AWS_MAGIC_HOME"] = home
    os.makedirs(f"{home}/profiles")
    for name, data in (("none", "data: {credentials: none}\n"),
                       ("forward", "data: {s3: [s3://bench/in, {url: s3://bench/out, write: true}]}\n")):
        with open(f"{home}/profiles/{name}.yaml", "w") as out:
            out.write(PROFILES[backend] + data)
    with Sandbox() as sb:
        time_ours(1, "forward")  # warm: imports, moto's models
        baseline, forwarding = [], []
        for _ in range(rounds):
            baseline.append(time_ours(2, "none"))
            forwarding.append(time_ours(2, "forward"))
        b, f = statistics.median(baseline), statistics.median(forwarding)
        print(f"{backend}, 2 workers, median of {rounds}: none {b:5.2f} s | forward {f:5.2f} s "
              f"(forwarding adds {f - b:+.2f} s, {f / b:4.2f}x of our own up without it)")

        import dask_aws_magic as dam
        from dask_aws_magic.core import forwarding as fw

        handle = dam.up("forward", workers=1, wait_workers=1, progress=False)
        try:
            from dask_aws_magic.backends import get_backend

            backend_object = get_backend(handle.record.backend)
            times = []
            for _ in range(rounds * 4):
                start = time.perf_counter()
                fw.send(handle.client, fw.make(backend_object, handle.record))
                times.append(time.perf_counter() - start)
            print(f"one renewal (STS + scheduler and worker plugins): median {statistics.median(times) * 1000:.0f} ms")
        finally:
            handle.down()
        assert not sb.resources(), sb.resources()


if __name__ == "__main__":
    main()
