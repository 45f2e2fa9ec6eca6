# The few commands people run. Each sets up what it needs first.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
COMPILED := $(VENV)/.compiled
LOCK := requirements.lock
# The lock's resolver, installed on demand into a directory of its own (never into the venv,
# which holds exactly the lock). Pinned so that `make lock` resolves the same way everywhere.
UV_VERSION := 0.13.8
UV := .uv/$(UV_VERSION)/bin/uv
# `make lock` re-resolves everything to the newest releases; `make lock UPGRADE=` only adds
# and drops what pyproject.toml changed, keeping every other pin.
UPGRADE ?= --upgrade

.PHONY: up test check lint bench services lock

# The virtualenv: exactly the locked versions (hash-checked, no resolver at install time),
# then slipway itself without dependencies (its router modules compiled in place by setup.py,
# with the locked mypy). Rebuilt from scratch when the lock, pyproject.toml or setup.py
# changes, so nothing from an older lock lingers in it.
$(STAMP): $(LOCK) pyproject.toml setup.py
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11) and "slipway needs Python 3.11 (the lock is for it): run make PYTHON=python3.11")'
	$(PYTHON) -m venv --clear $(VENV)
	$(PY) -m pip install -q --require-hashes --no-deps -r $(LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)
	touch $(COMPILED)  # after the stamp, so make does not compile twice

# The router's hot modules compiled in place with mypyc (setup.py), again whenever one of
# the router's modules changes, so a compiled module never hides a newer .py file.
# SLIPWAY_PURE_PYTHON=1 (or no C compiler) keeps them interpreted.
$(COMPILED): $(STAMP) $(wildcard router/*.py)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(COMPILED)

# Refresh the lock on purpose: every dependency of pyproject.toml (runtime, dev extra,
# build-system) and pip itself, direct and transitive, pinned with hashes for CPython 3.11
# on Linux x86_64. Review the diff, run `make test`, commit requirements.lock.
lock: $(UV)
	$(PYTHON) -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], "pip", sep="\n")' \
	  | $(UV) pip compile pyproject.toml - --extra dev --generate-hashes $(UPGRADE) \
	      --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	      --custom-compile-command 'make lock' -o $(LOCK)

$(UV):
	$(PYTHON) -m venv --clear .uv/$(UV_VERSION)
	.uv/$(UV_VERSION)/bin/pip install -q uv==$(UV_VERSION)

# The main job: slipway with the demo app.
up: $(COMPILED)
	$(BIN)/slipway up examples/apps.toml

# The whole test suite, with the lint and type checks, after starting the servers it needs;
# then the router's tests once more on its interpreted modules (what runs without a compiler).
test: $(COMPILED) services check
	$(BIN)/pytest
	SLIPWAY_PURE_PYTHON=1 $(BIN)/pytest tests/router \
		--deselect tests/router/test_build.py::test_the_hot_modules_compile_and_pass_the_router_tests_compiled

check: $(STAMP)
	$(PY) .ci/check_lock.py
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

services:
	bash .ci/services

bench: $(COMPILED) services
	$(PY) bench/router.py
	$(PY) bench/wake.py
	$(PY) bench/exporters.py
	$(PY) bench/logs.py
	$(PY) bench/control.py
	$(PY) bench/build.py
