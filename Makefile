# runway-archiver: the targets people expect. `make demo` and `make test` need only Python 3.11+
# and the package registries: the first call creates .venv and installs everything into it.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: help install demo test unit reliability lint format build clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml uv.lock
	@test -x $(BIN)/uv || { $(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install --quiet --disable-pip-version-check 'uv>=0.5'; }
	$(BIN)/uv sync --frozen --inexact --extra dev --quiet
	@touch $@

install: $(STAMP)  ## create .venv with the runtime, local-run and test dependencies (uv.lock)

demo: $(STAMP)  ## run the archiver locally: moto_server + template.yaml + feed emulator
	$(BIN)/python -m runway_archiver.cli demo

test: $(STAMP) lint  ## lint, type-check, then run the whole test suite
	@$(BIN)/python -m pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$status

reliability: $(STAMP)  ## run the fault-injection suite and rewrite the table in docs/reliability.md
	$(BIN)/python -m pytest tests/faults -q --reliability-report docs/reliability.md

unit: $(STAMP)  ## only the fast unit tests
	$(BIN)/python -m pytest tests/unit -q

lint: $(STAMP)  ## ruff, ruff format, mypy, cfn-lint
	$(BIN)/ruff check functions src tests
	$(BIN)/ruff format --check functions src tests
	$(BIN)/mypy
	$(BIN)/cfn-lint template.yaml

format: $(STAMP)  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix functions src tests
	$(BIN)/ruff format functions src tests

clean:  ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .aws-sam
