"""Execute a notebook in a real kernel with nbclient and print what each cell did.

Usage: python scripts/run_notebook.py examples/quickstart.ipynb
"""

from __future__ import annotations

import sys
import time

import nbformat
from nbclient import NotebookClient


def cell_text(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output["text"])
        elif "data" in output:
            parts.append(output["data"].get("text/plain", "") + "\n")
        elif output.get("output_type") == "error":
            parts.append(f"{output['ename']}: {output['evalue']}")
    return "".join(parts).strip()


def main(path: str) -> int:
    notebook = nbformat.read(path, as_version=4)
    started = time.monotonic()
    NotebookClient(notebook, timeout=300, kernel_name="python3").execute()
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        print(f"In  [{cell.execution_count}]: {cell.source}")
        text = cell_text(cell)
        if text:
            print("Out: " + text.replace("\n", "\n     "))
    print(f"\n{path}: {sum(c.cell_type == 'code' for c in notebook.cells)} cells ran in "
          f"{time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "examples/quickstart.ipynb"))
