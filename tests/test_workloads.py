"""What dask's own example notebooks do (array, dataframe, bag, futures; ``client.cluster.scale``),
through a real kernel, on the local backend and on EC2 in the AWS sandbox."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from .test_kernel import outputs

pytestmark = pytest.mark.kernel

WORKLOADS = [
    # dask-examples/array.ipynb: a random array's statistics
    ("import dask.array as da\n"
     "x = da.random.RandomState(42).normal(10, 0.1, size=(2000, 2000), chunks=(500, 500))\n"
     "round(float(x.mean().compute()), 1)", "10.0"),
    # the examples grow the cluster through client.cluster
    ("client.cluster.scale(3)\nclient.wait_for_workers(3, timeout=120)\n"
     "len(client.scheduler_info()['workers'])", "3"),
    # dask-examples/dataframe.ipynb: a groupby on a partitioned frame
    ("import pandas as pd, dask.dataframe as dd\n"
     "df = dd.from_pandas(pd.DataFrame({'a': range(1000), 'b': [i % 7 for i in range(1000)]}), npartitions=4)\n"
     "int(df.groupby('b').a.sum().compute().sum())", str(sum(range(1000)))),
    # dask-examples/bag.ipynb: filter and map over a sequence
    ("import dask.bag as db\n"
     "db.from_sequence(range(1000), npartitions=8).filter(lambda x: x % 2).map(lambda x: x * x).sum().compute()",
     str(sum(x * x for x in range(1000) if x % 2))),
    # dask-examples/futures.ipynb: submit, map, gather, a future of futures
    ("futures = client.map(lambda x: x + 1, range(100))\n"
     "total = client.submit(sum, futures)\n"
     "(sum(client.gather(futures)), total.result())", "(5050, 5050)"),
    ("type(client.cluster).__name__, client.cluster.dashboard_link == client.dashboard_link",
     "('MagicCluster', True)"),
]


def run(cells: list[str]) -> list:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(notebook, timeout=240, kernel_name="python3").execute()
    return notebook.cells


@pytest.mark.parametrize("where", ["local", "ec2-sandbox"])
def test_dask_example_workloads(home, where):
    if where == "local":
        start, stop = ["%load_ext dask_aws_magic\n%dask_cluster up -n work -w 2"], "%dask_cluster down work"
    else:
        start = ["%load_ext dask_aws_magic\n%dask_cluster sandbox start",
                 "%dask_cluster up ec2-small -n work --wait-workers 2"]
        stop = "%dask_cluster down work\n%dask_cluster sandbox stop"
    cells = run([*start, *(code for code, _ in WORKLOADS), stop])
    results = cells[len(start):len(start) + len(WORKLOADS)]
    for cell, (code, expected) in zip(results, WORKLOADS, strict=True):
        assert outputs(cell) == expected, (code, outputs(cell))
    assert "work: " in outputs(cells[-1])
