"""The magics through a real Jupyter kernel (nbclient), including a kernel restart."""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import psutil
import pytest
from nbclient import NotebookClient
from nbclient.util import run_sync

from dask_aws_magic.core import registry

pytestmark = pytest.mark.kernel
ROOT = Path(__file__).resolve().parents[1]


def outputs(cell) -> str:
    text = []
    for out in cell.outputs:
        if out.output_type == "stream":
            text.append(out.text)
        elif "data" in out:
            text.append(out.data.get("text/plain", ""))
        elif out.output_type == "error":
            text.append(f"{out.ename}: {out.evalue}")
    return "\n".join(text)


def test_quickstart_notebook_runs(home):
    notebook = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    NotebookClient(notebook, timeout=180, kernel_name="python3").execute()
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert "ready" in outputs(code[1]) and "Dashboard: http://127.0.0.1:" in outputs(code[1])
    assert any("text/html" in o.get("data", {}) for o in code[1].outputs)  # a clickable link
    assert outputs(code[2]) == "3"
    assert outputs(code[3]) == str(sum(x * x for x in range(10_000)))
    assert outputs(code[4]) == "2"
    assert "demo" in outputs(code[5]) and "running" in outputs(code[5])
    assert "demo: stopped 3 process(es)" in outputs(code[6])
    assert registry.get("demo") is None


def test_cluster_survives_kernel_restart(home):
    notebook = nbformat.v4.new_notebook()
    client = NotebookClient(notebook, timeout=180, kernel_name="python3")
    with client.setup_kernel():
        def run(source: str) -> str:
            cell = nbformat.v4.new_code_cell(source)
            notebook.cells.append(cell)
            client.execute_cell(cell, len(notebook.cells) - 1)
            return outputs(cell)

        run("%load_ext dask_aws_magic")
        assert "ready" in run("%dask_cluster up -n keeper -w 1")
        resources = registry.read("keeper").resources
        pids = [resources["scheduler"]["pid"], *(w["pid"] for w in resources["workers"].values())]

        run("marker = 1")
        run_sync(client.km.restart_kernel)(now=True)  # the kernel process is killed and replaced
        run_sync(client.kc.wait_for_ready)(timeout=60)
        time.sleep(0.5)
        assert run("'marker' in dir()") == "False", "the kernel was not restarted"
        assert all(psutil.pid_exists(p) for p in pids), "the cluster died with the kernel"

        run("%load_ext dask_aws_magic")
        assert "connected" in run("%dask_cluster attach keeper")
        assert run("client.submit(lambda: 6 * 7).result()") == "42"
        assert "keeper: stopped 2 process(es)" in run("%dask_cluster down keeper")


@pytest.mark.sandbox
def test_ec2_sandbox_notebook_runs(home):
    notebook = nbformat.read(ROOT / "examples" / "ec2-sandbox.ipynb", as_version=4)
    NotebookClient(notebook, timeout=180, kernel_name="python3").execute()
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert "AWS sandbox running" in outputs(code[0])
    assert "Estimated cost" in outputs(code[1]) and "security-group" in outputs(code[1])
    assert "ready" in outputs(code[2]) and "tls://127." in outputs(code[2])
    assert outputs(code[3]) == "3"
    assert outputs(code[4]).count("127.") == 2  # two workers, each on its own emulated instance
    assert "ec2-small" in outputs(code[5]) and "running" in outputs(code[5])
    assert "terminated 3 instance(s)" in outputs(code[6]) and "deleted security group" in outputs(code[6])
    assert "sandbox stopped" in outputs(code[6])


def test_interrupting_the_kernel_during_up_tears_down(home):
    from jupyter_client.manager import start_new_kernel

    from .conftest import cluster_processes

    km, kc = start_new_kernel(kernel_name="python3")
    try:
        kc.execute_interactive("%load_ext dask_aws_magic", timeout=60)
        msg_id = kc.execute("%dask_cluster up -n stopme -w 2")
        deadline = time.monotonic() + 60
        while not (registry.get("stopme") and registry.read("stopme").resources.get("workers")):
            assert time.monotonic() < deadline, "up never launched"
            time.sleep(0.02)
        km.interrupt_kernel()  # what the notebook's stop button does
        error = None
        while True:
            msg = kc.get_iopub_msg(timeout=60)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "error":
                error = f"{msg['content']['ename']}: {msg['content']['evalue']}"
            elif msg["msg_type"] == "stream" and "UsageError" in msg["content"]["text"]:
                error = msg["content"]["text"]  # how IPython shows a UsageError
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        assert error is not None and "Interrupted while starting 'stopme'" in error and "torn down" in error
        assert registry.get("stopme") is None
        assert not cluster_processes(str(home.resolve()))
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
