# Two commands: `make run` starts the service with demo data; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEPS := pyproject.toml constraints.txt

.PHONY: run test lint check-openapi openapi bench lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed-run: $(DEPS) | $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt -e .
	touch $@

$(VENV)/.installed-dev: $(DEPS) | $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/cascade serve --demo $(ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

openapi: $(VENV)/.installed-dev
	$(BIN)/python -m stackcascade.api.snapshot > openapi.json

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/api_throughput.py
	$(BIN)/python bench/runner_overhead.py
	$(BIN)/python bench/webhook_delivery.py
	$(BIN)/python bench/cascade.py
	$(BIN)/python bench/graph_scale.py
	$(BIN)/python bench/pg_statements.py
	$(BIN)/python bench/console_pages.py

lock: | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip freeze --exclude-editable | grep -v '^stackcascade' > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
