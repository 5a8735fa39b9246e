"""Issue 16: the core used from several threads at once (a server's handlers, a CLI's parallel probes)."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import dask_aws_magic as dam
from dask_aws_magic.core import registry
from dask_aws_magic.core.registry import ClusterRecord


def test_registry_writes_from_threads_never_fail(home):
    """Each thread's write probes the home with a file of its own: none deletes another's."""

    def writes(thread: int) -> int:
        for i in range(250):
            registry.write(ClusterRecord(name=f"t{thread}-{i % 5}", cluster_id="dam-000000000000", backend="local",
                                         profile="local"))
        return thread

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert sorted(pool.map(writes, range(4))) == [0, 1, 2, 3]  # any failed write raises here
    records, corrupt = registry.scan()
    assert len(records) == 20 and not corrupt
    assert not [p for p in (home / "clusters").iterdir() if p.name.startswith(".write-test")]


def test_list_of_a_tls_and_a_plain_cluster_imports_distributed_once(home):
    """The terminal's `list` probes both schedulers in parallel threads, in a process that has not
    imported distributed yet: each thread waits for one whole import (no `cannot import name 'Comm'`)."""
    tls = dam.up(name="tls", workers=1, progress=False)
    plain = dam.up(name="plain", workers=1, overrides={"network.tls": False}, progress=False)
    tls.close()
    plain.close()
    try:
        for _ in range(3):  # it failed on every run before
            listed = subprocess.run([sys.executable, "-m", "dask_aws_magic.faces.cli", "list"], capture_output=True,
                                    text=True, env=os.environ, timeout=120)
            assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
            rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[2:4]}
            assert rows["tls"][2:4] == ["running", "1"] and rows["plain"][2:4] == ["running", "1"], listed.stdout
    finally:
        dam.down(all=True)
