"""Fixtures for browser tests: a real ``jupyter lab`` (session), headless Chromium through Playwright
(session), and a fresh page per test with screenshots kept as artifacts.

Every test under this folder is marked ``browser``. Run them in their own pytest run
(``pytest -m browser``): Playwright's event loop and pytest-jupyter's clash at teardown. They are
skipped, with the reason, when Chromium, Playwright or JupyterLab is missing.

    def test_something(lab_page, jupyter_lab):
        path = jupyter_lab.write_notebook("x.ipynb", ["1 + 1"])
        page = lab_page.open(path)
        lab_page.run_all_cells()
        lab_page.screenshot("after")
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..conftest import cluster_processes
from .lab import CHROMIUM_FLAGS, PAGE_TIMEOUT_MS, JupyterLab, LabPage, chromium_path

HERE = Path(__file__).resolve().parent
ARTIFACTS_KEY = pytest.StashKey[list]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    setattr(item, f"report_{report.when}", report)  # lab_page takes a screenshot of a failure
    return report


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    saved = config.stash.get(ARTIFACTS_KEY, [])
    if saved:
        terminalreporter.write_sep("-", "browser screenshots")
        for path in saved:
            terminalreporter.write_line(str(path))


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium binary, or a skip saying what is missing."""
    for module, package in (("playwright", "playwright"), ("jupyterlab", "jupyterlab")):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{package} is not installed (pip install -e '.[test]')")
    path = chromium_path()
    if path is None:
        pytest.skip("Chromium is not installed (apt-get install -y chromium; .ci/run does it as root)")
    return path


@pytest.fixture(scope="session")
def artifacts(pytestconfig: pytest.Config) -> Path:
    """Where screenshots go: ``$DASK_AWS_MAGIC_ARTIFACTS`` or ``tests/browser/artifacts`` (ignored by git)."""
    folder = Path(os.environ.get("DASK_AWS_MAGIC_ARTIFACTS") or HERE / "artifacts").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    pytestconfig.stash[ARTIFACTS_KEY] = []
    return folder


@pytest.fixture(scope="session")
def jupyter_lab(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:
    """A ``jupyter lab`` serving a temporary folder; its kernels use their own DASK_AWS_MAGIC_HOME."""
    workdir = tmp_path_factory.mktemp("jupyter-lab")
    lab = JupyterLab(root=workdir / "notebooks", home=workdir / "dask-aws-magic-home")
    try:
        lab.start(workdir)
        yield lab
    finally:
        lab.stop()


@pytest.fixture(scope="session")
def browser(chromium: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def lab_page(request: pytest.FixtureRequest, browser: Any, jupyter_lab: JupyterLab, artifacts: Path,
             pytestconfig: pytest.Config) -> Iterator[LabPage]:
    """A fresh JupyterLab page. Afterwards: a screenshot if the test failed, every kernel stopped, and
    no cluster process of the lab's home left running."""
    yield from _page(request, browser, jupyter_lab, artifacts, pytestconfig)


@pytest.fixture
def sandbox_lab(chromium: str, tmp_path: Path) -> Iterator[JupyterLab]:
    """A ``jupyter lab`` of its own (with its kernels) inside a fresh AWS sandbox; afterwards no
    sandbox resource may be left."""
    from dask_aws_magic import sandbox

    with sandbox.Sandbox() as sb:
        lab = JupyterLab(root=tmp_path / "notebooks", home=tmp_path / "dask-aws-magic-home")
        try:
            lab.start(tmp_path)  # the sandbox's AWS environment is in os.environ now
            yield lab
        finally:
            lab.stop()
        assert not sb.resources(), sb.resources()


@pytest.fixture
def sandbox_lab_page(request: pytest.FixtureRequest, browser: Any, sandbox_lab: JupyterLab, artifacts: Path,
                     pytestconfig: pytest.Config) -> Iterator[LabPage]:
    """``lab_page`` on ``sandbox_lab``."""
    yield from _page(request, browser, sandbox_lab, artifacts, pytestconfig)


def _page(request: pytest.FixtureRequest, browser: Any, jupyter_lab: JupyterLab, artifacts: Path,
          pytestconfig: pytest.Config) -> Iterator[LabPage]:
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    lab = LabPage(page, jupyter_lab, artifacts, request.node.name.replace("[", "-").replace("]", ""))
    try:
        yield lab
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            with contextlib.suppress(Exception):
                lab.screenshot("failed")
        pytestconfig.stash[ARTIFACTS_KEY].extend(lab.saved)
        context.close()
        jupyter_lab.shutdown_kernels()
        leftovers = cluster_processes(str(jupyter_lab.home.resolve()))
        for process in leftovers:
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)
        assert not leftovers, f"cluster processes left running by the browser test: {[p.pid for p in leftovers]}"
