PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench lint clean

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

test: $(VENV)/.test
	$(BIN)/ruff check src tests bench examples
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

bench: $(VENV)/.demo
	$(BIN)/python bench/embedded.py

lint: $(VENV)/.test
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .conveyor demo-output
