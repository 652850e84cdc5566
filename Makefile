PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BENCH_VENV := .bench-venv
LUIGI_SQLA_VENV := .bench-luigi-venv

.PHONY: demo serve test bench bench-engines bench-fairshare lint clean bench-containers

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.demo: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[demo]'
	touch $@

$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,demo]'
	touch $@ $(VENV)/.demo

demo: $(VENV)/.demo
	$(BIN)/conveyor run examples/sales/pipeline.py:daily_sales
	@echo "The report (Markdown, PNG chart, CSV) is in demo-output/report/; see what ran: $(BIN)/conveyor runs"

# The web UI and REST API on http://127.0.0.1:8080/ over the demo's store (conveyor.toml lists it).
serve: $(VENV)/.demo
	$(BIN)/conveyor server

test: $(VENV)/.test
	$(BIN)/ruff check src tests bench examples
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -rs

# The peers (Luigi, Dask, Prefect) live in their own venv, never in the project's.
$(BENCH_VENV)/.installed: bench/requirements-peers.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -r bench/requirements-peers.txt
	touch $@

# Scenario h's Luigi: its SQLAlchemy contrib runs on SQLAlchemy 1.4 only, Prefect needs 2.
$(LUIGI_SQLA_VENV)/.installed: bench/requirements-luigi-sqla.txt
	$(PYTHON) -m venv $(LUIGI_SQLA_VENV)
	$(LUIGI_SQLA_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LUIGI_SQLA_VENV)/bin/python -m pip install --quiet -r bench/requirements-luigi-sqla.txt
	touch $@

# BENCH_QUICK=1 for a smoke run; BENCH_ARGS="--only a,b" and the like for part of it.
bench: $(VENV)/.demo $(BENCH_VENV)/.installed $(LUIGI_SQLA_VENV)/.installed
	$(BIN)/python bench/harness.py $(BENCH_ARGS)

# Conveyor on Dask and Ray beside their own APIs, on one local cluster each.
bench-engines: $(VENV)/.test
	$(BIN)/python bench/engines.py $(BENCH_ARGS)

# The podman executor's cost per attempt beside `podman run` in a loop; image builds cold and cached (~2 min).
bench-containers: $(VENV)/.test
	$(BIN)/python bench/containers.py $(BENCH_ARGS)

# The quota policy alone: admission decisions per second and the fairness error (pure, ~20 s).
bench-fairshare: $(VENV)/.test
	$(BIN)/python bench/fairshare.py $(BENCH_ARGS)

# Fair share live: three teams, three schedulers, a throwaway PostgreSQL; draws docs/images/fair-shares.png.
bench-shares: $(VENV)/.test
	$(BIN)/python bench/shares.py $(BENCH_ARGS)

lint: $(VENV)/.test
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(BENCH_VENV) $(LUIGI_SQLA_VENV) .conveyor demo-output
