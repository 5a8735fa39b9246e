"""Issue 15, packaging: `pip install "dask-aws-magic[s3]"` gives a current s3fs next to boto3.

s3fs depends on aiobotocore, which pins botocore to a narrow range, and boto3 pins botocore to its own
release; with boto3 free, pip once fell back to s3fs 0.4.2 (2020). These tests check what is installed
here and what pip resolves from the package index for our requirements, and fail on such a fallback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import requires, version

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

OLDEST_S3FS = Version("2024.12.0")  # the first releases with aiobotocore 2.x are years older; 0.4.2 predates it


def our_requirements(extra: str) -> list[Requirement]:
    """dask-aws-magic's requirements with ``extra``, as its published metadata lists them."""
    found = []
    for text in requires("dask-aws-magic") or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": extra}):
            found.append(requirement)
    return found


def check_resolution(versions: dict[str, str], declared: dict[str, list[str]], newest: dict[str, str]) -> None:
    """Fail unless ``versions`` (name -> version, what pip chose) are current and agree: the newest s3fs and
    aiobotocore (``newest``), the botocore aiobotocore accepts, and the boto3 of that very botocore.
    ``declared`` holds each package's own requirements."""
    s3fs, botocore, boto3 = Version(versions["s3fs"]), versions["botocore"], versions["boto3"]
    assert s3fs >= OLDEST_S3FS, f"pip fell back to s3fs {s3fs}"
    for name in ("s3fs", "aiobotocore"):
        assert versions[name] == newest[name], f"{name} {versions[name]} is not the newest ({newest[name]})"
    for owner in ("aiobotocore", "boto3"):
        pins = [Requirement(r) for r in declared[owner] if Requirement(r).name == "botocore" and not
                Requirement(r).marker]
        assert pins and all(pin.specifier.contains(botocore) for pin in pins), \
            f"botocore {botocore} does not satisfy {owner}'s {[str(p) for p in pins]}"
    assert Version(boto3) == Version(botocore), f"boto3 {boto3} is not botocore {botocore}'s release"


def test_the_s3_extra_puts_a_floor_under_s3fs():
    s3 = [r for r in our_requirements("s3") if r.name == "s3fs"]
    assert s3 and not s3[0].specifier.contains("0.4.2") and s3[0].specifier.contains(str(OLDEST_S3FS))
    assert "s3fs" not in {r.name for r in our_requirements("")}  # the base install stays without it


def test_what_is_installed_here_is_current_and_consistent():
    from importlib.metadata import metadata

    declared = {name: metadata(name).get_all("Requires-Dist") or [] for name in ("aiobotocore", "boto3")}
    versions = {name: version(name) for name in ("s3fs", "aiobotocore", "botocore", "boto3")}
    check_resolution(versions, declared, {"s3fs": versions["s3fs"], "aiobotocore": versions["aiobotocore"]})


def test_the_check_fails_on_the_old_fallback():
    fallback = {"s3fs": "0.4.2", "aiobotocore": "2.19.0", "botocore": "1.44.8", "boto3": "1.44.8"}
    with pytest.raises(AssertionError, match="fell back to s3fs 0.4.2"):
        check_resolution(fallback, {"aiobotocore": [], "boto3": []}, {"s3fs": "2026.9.0", "aiobotocore": "3.10.0"})
    mismatched = {"s3fs": "2026.9.0", "aiobotocore": "3.10.0", "botocore": "1.44.8", "boto3": "1.44.8"}
    with pytest.raises(AssertionError, match="does not satisfy aiobotocore"):
        check_resolution(mismatched, {"aiobotocore": ["botocore<1.43.118,>=1.43.115"], "boto3": []},
                         {"s3fs": "2026.9.0", "aiobotocore": "3.10.0"})


def _pip_report(*requirements: str) -> dict[str, dict]:
    """What `pip install` would install for ``requirements`` into an empty environment (nothing is
    installed); skipped, saying why, when the package index cannot be reached (a failure where
    DASK_AWS_MAGIC_REQUIRE_INDEX is set, as .ci/run sets it)."""
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--disable-pip-version-check", "--report", "-", *requirements]
    done = subprocess.run(command, capture_output=True, text=True, timeout=540)
    if done.returncode != 0:
        # Connection errors only: "No matching distribution" alone means our requirements cannot be met.
        if any(word in done.stderr for word in ("Max retries", "NewConnectionError", "Temporary failure",
                                                 "Network is unreachable")):
            why = f"the package index cannot be reached: {done.stderr.strip().splitlines()[-1]}"
            if os.environ.get("DASK_AWS_MAGIC_REQUIRE_INDEX"):  # CI reaches the index: failing there is a failure
                raise AssertionError(why)
            pytest.skip(why)
        raise AssertionError(f"pip failed: {done.stderr}")
    report = json.loads(done.stdout)
    return {item["metadata"]["name"].lower(): item["metadata"] for item in report["install"]}


@pytest.mark.network
@pytest.mark.timeout(900)
def test_pip_resolves_a_current_s3fs_beside_boto3():
    # What `pip install "dask-aws-magic[s3]"` must satisfy (markers dropped: they name our extra).
    wanted = [f"{r.name}{'[' + ','.join(sorted(r.extras)) + ']' if r.extras else ''}{r.specifier}"
              for r in our_requirements("s3")]
    assert {"boto3", "s3fs"} <= {Requirement(r).name for r in wanted}
    chosen = _pip_report(*wanted)
    newest = {name: _pip_report("--no-deps", name)[name]["version"] for name in ("s3fs", "aiobotocore")}
    check_resolution({name: chosen[name]["version"] for name in ("s3fs", "aiobotocore", "botocore", "boto3")},
                     {name: chosen[name].get("requires_dist", []) for name in ("aiobotocore", "boto3")}, newest)
