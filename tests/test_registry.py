"""The registry: atomic records, safe concurrent writers, corrupt files skipped, unwritable homes."""

from __future__ import annotations

import multiprocessing

import pytest

from dask_aws_magic.core import paths, registry
from dask_aws_magic.core.errors import ClusterNotFound, HomeNotWritable
from dask_aws_magic.core.registry import ClusterRecord


def record(name="c1", **kw):
    return ClusterRecord(name=name, cluster_id="dam-1", backend="local", profile="local", **kw)


def test_write_read_remove(home):
    registry.write(record(workers=3))
    assert registry.read("c1").workers == 3
    assert not list((home / "clusters").glob("*.tmp"))
    registry.remove("c1")
    with pytest.raises(ClusterNotFound):
        registry.read("c1")


def _bump(home_dir: str, times: int) -> None:
    import os

    os.environ["DASK_AWS_MAGIC_HOME"] = home_dir
    for _ in range(times):
        registry.update("shared", lambda r: setattr(r, "workers", r.workers + 1))


def test_concurrent_updates_lose_nothing(home):
    registry.write(record("shared"))
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_bump, args=(str(home), 25)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert registry.read("shared").workers == 100


def test_corrupt_record_is_reported_and_skipped(home):
    registry.write(record("good"))
    (home / "clusters" / "bad.json").write_text("{not json")
    records, problems = registry.scan()
    assert [r.name for r in records] == ["good"]
    assert len(problems) == 1 and "bad.json" in problems[0]
    assert (home / "clusters" / "bad.json").exists()


def test_home_not_writable(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("DASK_AWS_MAGIC_HOME", str(blocker / "home"))
    with pytest.raises(HomeNotWritable, match="DASK_AWS_MAGIC_HOME"):
        paths.ensure_home()
    with pytest.raises(HomeNotWritable):
        registry.write(record())


def test_remove_leaves_a_newer_cluster_of_the_same_name(home):
    registry.write(ClusterRecord(name="c1", cluster_id="dam-new", backend="local", profile="local"))
    registry.remove("c1", "dam-old")  # the old cluster's teardown finishing late
    assert registry.read("c1").cluster_id == "dam-new"
    registry.remove("c1", "dam-new")
    assert registry.get("c1") is None


@pytest.mark.parametrize("content", [
    "[]", "null", '"text"', '{"name": "x"}',
    '{"name": "bad", "cluster_id": "dam-1", "backend": "local", "profile": "p", "workers": "two"}',
    '{"name": "bad", "cluster_id": "dam-1", "backend": "local", "profile": "p", "resources": []}',
    '{"name": "../../etc", "cluster_id": "dam-1", "backend": "local", "profile": "p"}',
    '{"name": "other", "cluster_id": "dam-1", "backend": "local", "profile": "p"}',
])
def test_wrong_shaped_record_is_reported_as_corrupt(home, content):
    import dask_aws_magic as dam
    from dask_aws_magic.faces.cli import main

    paths.ensure_home()
    (paths.clusters_dir() / "bad.json").write_text(content)
    records, problems = registry.scan()
    assert records == [] and len(problems) == 1 and "bad.json" in problems[0]
    with pytest.raises(ClusterNotFound, match="corrupt"):
        registry.read("bad")
    assert dam.list_clusters() == []  # neither list ...
    assert main(["down", "--all"]) == 0  # ... nor down --all crash on it
