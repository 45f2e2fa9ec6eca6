# The few commands people run. Each sets up what it needs first.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test check lint bench services

# The virtualenv, rebuilt when pyproject.toml changes.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The main job: slipway with the demo app.
up: $(STAMP)
	$(BIN)/slipway up examples/apps.toml

# The whole test suite, with the lint and type checks, after starting the servers it needs.
test: $(STAMP) services check
	$(BIN)/pytest

check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

services:
	bash .ci/services

bench: $(STAMP) services
	$(PY) bench/router.py
	$(PY) bench/wake.py
	$(PY) bench/exporters.py
	$(PY) bench/logs.py
	$(PY) bench/control.py
	$(PY) bench/build.py
