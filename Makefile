# Two commands matter: `make demo` (the main job on this machine) and `make test` (what CI runs).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo demo-aws test lint labextension bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	touch $@

demo: install
	$(BIN)/python scripts/run_notebook.py examples/quickstart.ipynb

demo-aws: install
	$(BIN)/python scripts/run_notebook.py examples/ec2-sandbox.ipynb

lint: install
	$(BIN)/ruff check dask_aws_magic tests benchmarks scripts

# The JupyterLab sidebar (labextension/): node packages from the lock file, the prebuilt extension,
# its jest tests, and the fresh build put where this venv's JupyterLab looks (`make install` copied
# whatever was built then).
LABEXT_SHARE := $(VENV)/share/jupyter/labextensions/dask-aws-magic
labextension: install
	cd labextension && PATH="$(CURDIR)/$(BIN):$$PATH" jlpm install --immutable \
		&& PATH="$(CURDIR)/$(BIN):$$PATH" jlpm build:prod && PATH="$(CURDIR)/$(BIN):$$PATH" jlpm test
	rm -rf $(LABEXT_SHARE) && cp -r dask_aws_magic/labextension $(LABEXT_SHARE)
	cp labextension/install.json $(LABEXT_SHARE)/

# The browser tests (tests/browser) run in a pytest run of their own, after the rest: Playwright's
# event loop and the Jupyter test plugins' clash at teardown.
test: lint labextension
	$(BIN)/python -m pytest -m "not browser" --durations=25
	$(BIN)/python -m pytest -m browser

bench: install
	$(BIN)/python benchmarks/bench_import.py
	$(BIN)/python benchmarks/bench_local_up.py
	$(BIN)/python benchmarks/bench_ec2_ready.py
	$(BIN)/python benchmarks/bench_ec2_calls.py
	$(BIN)/python benchmarks/bench_ecs_ready.py
	$(BIN)/python benchmarks/bench_ecs_calls.py
	$(BIN)/python benchmarks/bench_data_credentials.py ec2
	$(BIN)/python benchmarks/bench_data_credentials.py fargate
	$(BIN)/python benchmarks/bench_sidebar_calls.py

clean:
	rm -rf $(VENV) build dist *.egg-info labextension/node_modules labextension/lib dask_aws_magic/labextension
