"""``import dask_aws_magic`` and ``%load_ext`` stay light: heavy libraries load on first use."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("boto3", "botocore", "distributed", "ipywidgets", "jsonschema", "fastjsonschema", "yaml", "moto")


def loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_import_is_light():
    assert not loaded_after("import dask_aws_magic") & set(HEAVY)


def test_load_ext_is_light():
    code = ("from IPython.core.interactiveshell import InteractiveShell\n"
            "InteractiveShell.instance().run_line_magic('load_ext', 'dask_aws_magic')")
    assert not loaded_after(code) & set(HEAVY)
