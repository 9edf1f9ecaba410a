# henvis developer and CI entry points. CI runs exactly `make test` (via .ci/run).
#
#   make venv             .venv with Python 3.11 and `pip install -e '.[test]'` (reruns only
#                         when pyproject.toml changed)
#   make test             generated-schema check, local PostgreSQL, Kafka jars, chromium,
#                         then the whole pytest suite (PYTEST_ARGS='-m "not kafka"' etc. to narrow)
#   make demo             the end-to-end demo
#   make check-generated  schemas/generated is up to date with the pydantic models

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
VENV_STAMP := $(VENV)/.henvis-installed
HENVIS := $(VENV)/bin/henvis
PYTEST_ARGS ?=
# apt-get needs root; a developer who is not root goes through sudo.
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: venv test demo check-generated helm-check postgres-start postgres-stop

venv: $(VENV_STAMP)

$(VENV_STAMP): pyproject.toml
	if [ ! -x $(VENV)/bin/python ]; then $(PYTHON) -m venv $(VENV); fi
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	touch $@

check-generated: venv
	$(HENVIS) schemas export --check schemas/generated

# HENVIS_TEST_POSTGRES_URL may be given from outside (an existing server); otherwise the
# local throwaway cluster of tools/postgres.sh is started (and left running for reruns).
# The AsyncAPI specification's JSON Schema (npm @asyncapi/specs), to validate our document offline.
ASYNCAPI_SPEC := tools/asyncapi/node_modules/@asyncapi/specs/package.json
$(ASYNCAPI_SPEC): tools/asyncapi/package-lock.json
	npm ci --prefix tools/asyncapi --no-audit --no-fund --silent
	touch $@

# Helm chart: lint, render, validate against Kubernetes schemas, bad values refused.
helm-check:
	tools/helm-check.sh

test: venv check-generated $(ASYNCAPI_SPEC) helm-check
	if [ -z "$${HENVIS_TEST_POSTGRES_URL:-}" ]; then \
	    HENVIS_TEST_POSTGRES_URL="$$(tools/postgres.sh start | tail -n 1)"; \
	fi; \
	export HENVIS_TEST_POSTGRES_URL; \
	echo "PostgreSQL for tests: $$HENVIS_TEST_POSTGRES_URL"; \
	$(HENVIS) broker jars; \
	if [ ! -x /usr/bin/chromium ]; then \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update; \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; \
	fi; \
	rc=0; $(VENV)/bin/python -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ "$$rc" -eq 5 ]; then echo "pytest collected no tests: that is a failure" >&2; fi; \
	exit "$$rc"

demo: venv
	$(HENVIS) demo

postgres-start:
	tools/postgres.sh start

postgres-stop:
	tools/postgres.sh stop
