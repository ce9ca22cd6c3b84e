# mmdet_like set-up commands. `make test` and `make demo` work from a fresh clone.
#
# Each step leaves a stamp file in .venv, so running a target twice redoes nothing that has
# not changed: dependencies are reinstalled only when a requirements file changes, and the
# compiled ops are rebuilt only when setup.py or a source under ops/ changes (and then ninja
# recompiles only the changed files, in build/temp).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
MAX_JOBS ?= 2
OP_SOURCES := $(shell find ops -name '*.cpp' -o -name '*.cu' -o -name '*.h' -o -name '*.cuh')

.PHONY: install test test-slow lint format bench-ops clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.deps: requirements.txt requirements/build.txt requirements/tests.txt | $(VENV)/bin/python
	$(PIP) install --upgrade pip
	$(PIP) install -r requirements.txt -r requirements/build.txt -r requirements/tests.txt
	touch $@

$(VENV)/.ops: $(VENV)/.deps setup.py pyproject.toml $(OP_SOURCES)
	MAX_JOBS=$(MAX_JOBS) $(PIP) install -e . --no-build-isolation --no-deps
	touch $@

install: $(VENV)/.ops

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

bench-ops: install
	$(PY) tools/benchmark_ops.py --out docs/benchmarks.md

clean:
	rm -rf build *.egg-info mmdet_like/_ext*.so $(VENV)/.ops
