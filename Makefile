# henvis developer and CI entry points. CI runs exactly `make test` (via .ci/run).
#
#   make venv             .venv with Python 3.11: exactly the pinned, hash-checked versions of
#                         requirements.lock, then henvis itself (`pip install --no-deps -e .`);
#                         reruns when pyproject.toml or requirements.lock changed
#   make lock             recompile requirements.lock from pyproject.toml (runtime + `test` extra)
#   make lint             ruff (lint and format) and mypy (tools/typecheck.sh): the gates of make test
#   make test             lint, generated-schema check, the image (when podman is there), local
#                         PostgreSQL, Kafka jars, Keycloak (with a Java 21+), chromium,
#                         then the whole pytest suite (PYTEST_ARGS='-m "not kafka"' etc. to narrow)
#   make image            the container image, offline, with podman (tools/image.sh): a Debian
#                         base from mmdebstrap, wheels built outside, an SBOM beside it in
#                         build/image; make test builds it when podman is there, and its smoke
#                         test (tests/integration/test_image_smoke.py) runs it
#   make demo             the end-to-end demo
#   make check-generated  schemas/generated is up to date with the pydantic models, the
#                         chart README's values table with values.schema.json, and the
#                         Keycloak realm (tools/keycloak/henvis-realm.json) with the registry
#   make chart-readme     regenerate that table

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

.PHONY: venv lock lint test demo check-generated chart-readme helm-check image postgres-start postgres-stop

# The lock: every runtime and `test` dependency pinned with its hashes, for CPython 3.11 on
# Linux x86_64 (Debian 12's glibc 2.36). `make lock` compiles it with uv, installed into a
# throwaway venv; it keeps the pins already in the file where pyproject.toml still allows
# them (LOCK_ARGS=--upgrade moves everything to the newest allowed, LOCK_ARGS='--upgrade-package
# NAME' one package).
LOCK := requirements.lock
# The same versions without the test tools, for the image (Dockerfile).
RUNTIME_LOCK := requirements-runtime.lock
PIP_VERSION := 26.3
UV_VERSION := 0.13.9
LOCK_ARGS ?=

venv: $(VENV_STAMP)

# pip check fails when pyproject.toml asks for something the lock lacks (run `make lock`).
$(VENV_STAMP): pyproject.toml $(LOCK)
	if [ ! -x $(VENV)/bin/python ]; then $(PYTHON) -m venv $(VENV); fi
	$(VENV)/bin/python -m pip install --quiet 'pip==$(PIP_VERSION)'
	$(VENV)/bin/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(VENV)/bin/python -m pip install --quiet --no-deps -e .
	$(VENV)/bin/python -m pip check
	touch $@

lock:
	tool="$$(mktemp -d)"; trap 'rm -rf -- "$$tool"' EXIT; \
	$(PYTHON) -m venv "$$tool"; \
	"$$tool/bin/python" -m pip install --quiet 'uv==$(UV_VERSION)'; \
	"$$tool/bin/uv" pip compile --quiet --no-config --generate-hashes --extra test \
	    --python-version 3.11 --python-platform x86_64-manylinux_2_36 \
	    --custom-compile-command 'make lock' $(LOCK_ARGS) -o $(LOCK) pyproject.toml; \
	"$$tool/bin/uv" pip compile --quiet --no-config --generate-hashes --constraint $(LOCK) \
	    --python-version 3.11 --python-platform x86_64-manylinux_2_36 \
	    --custom-compile-command 'make lock' -o $(RUNTIME_LOCK) pyproject.toml

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	tools/typecheck.sh

check-generated: venv
	$(HENVIS) schemas export --check schemas/generated
	$(VENV)/bin/python -m henvis_dev.chart_readme --check
	$(VENV)/bin/python -m henvis_dev.keycloak_realm --check

# helm/henvis/README.md's values table, regenerated from values.schema.json and values.yaml.
chart-readme: venv
	$(VENV)/bin/python -m henvis_dev.chart_readme

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

# The image: base, wheels, podman build, SBOM; figures in build/image/figures.txt.
image:
	tools/image.sh

test: venv lint check-generated $(ASYNCAPI_SPEC) helm-check
	if [ "$${HENVIS_REQUIRE_IMAGE:-}" = 1 ] || { command -v podman && [ "$$(id -u)" -eq 0 ]; } >/dev/null 2>&1; then \
	    $(MAKE) --no-print-directory image; \
	else \
	    echo "no image built (make image needs podman, as root): its smoke test will skip"; \
	fi
	if [ -z "$${HENVIS_TEST_POSTGRES_URL:-}" ]; then \
	    HENVIS_TEST_POSTGRES_URL="$$(tools/postgres.sh start | tail -n 1)"; \
	fi; \
	export HENVIS_TEST_POSTGRES_URL; \
	echo "PostgreSQL for tests: $$HENVIS_TEST_POSTGRES_URL"; \
	$(HENVIS) broker jars; \
	if $(HENVIS) keycloak java >/dev/null 2>&1; then \
	    $(HENVIS) keycloak dist; \
	else \
	    echo "no Java 21+ for Keycloak (.ci/run finds or installs one): its tests will skip"; \
	fi; \
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
