"""Backends found through entry points: a broken plugin is named, and hides no one else's clusters."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from dask_aws_magic import backends
from dask_aws_magic.core.errors import ProfileError


@pytest.fixture
def broken_plugin(monkeypatch):
    found = dict(backends._entry_points())
    found["broken"] = EntryPoint(name="broken", value="no_such_package.backend:Backend", group=backends.ENTRY_POINTS)
    backends._load.cache_clear()
    monkeypatch.setattr(backends, "_entry_points", lambda: found)
    yield
    backends._load.cache_clear()


def test_a_backend_that_cannot_be_imported_is_named_with_the_fix(broken_plugin):
    with pytest.raises(ProfileError, match=r"'broken' is installed \(no_such_package.backend:Backend\) but cannot "
                                           r"be loaded: ModuleNotFoundError.*Reinstall"):
        backends.get_backend("broken")


def test_a_broken_backend_hides_no_other_backend_from_discovery(broken_plugin):
    with pytest.warns(RuntimeWarning, match="'broken' is installed"):
        found = backends.discoverable_backends()
    assert "local" in [backend.name for backend in found]
