"""Cost of `import dask_aws_magic` and of `%load_ext dask_aws_magic`, against what they avoid importing.

Each figure is the median of several fresh interpreters. Target: under 50 ms for both.
Run: python benchmarks/bench_import.py
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys

RUNS = 5


def importtime(module: str) -> float:
    """Cumulative import time of ``module`` in ms, from ``python -X importtime``."""
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                         capture_output=True, text=True, check=True).stderr
    for line in err.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| ?(\S+)$", line.strip())
        if match and match.group(2) == module:
            return int(match.group(1)) / 1000
    raise RuntimeError(f"{module} not in importtime output")


LOAD_EXT = """
import time
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
t = time.perf_counter()
shell.run_line_magic("load_ext", "{ext}")
print((time.perf_counter() - t) * 1000)
"""


def load_ext(ext: str) -> float:
    out = subprocess.run([sys.executable, "-c", LOAD_EXT.format(ext=ext)], capture_output=True, text=True,
                         check=True).stdout
    return float(out.strip().splitlines()[-1])


def median(fn, *args) -> float:
    return statistics.median(fn(*args) for _ in range(RUNS))


def main() -> None:
    ours = median(importtime, "dask_aws_magic")
    print(f"import dask_aws_magic      {ours:8.1f} ms   (target < 50 ms)")
    for heavy in ("distributed", "boto3"):
        cost = median(importtime, heavy)
        print(f"import {heavy:<19} {cost:8.1f} ms   ratio ours/{heavy} = {ours / cost:.3f}")
    ext = median(load_ext, "dask_aws_magic")
    print(f"%load_ext dask_aws_magic   {ext:8.1f} ms   (target < 50 ms)")
    baseline = median(load_ext, "autoreload")
    print(f"%load_ext autoreload       {baseline:8.1f} ms   ratio ours/autoreload = {ext / baseline:.2f}")


if __name__ == "__main__":
    main()
