"""Browser tests: a real JupyterLab in headless Chromium (run apart from the rest: `pytest -m browser`)."""
