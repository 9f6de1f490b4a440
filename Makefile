# Two commands: `make run` (the whole local stack) and `make test` (lint + the whole suite). Both install first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-12)
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(shell sha256sum requirements-checkov.txt | cut -c1-12)

.PHONY: install test lint run bench soak tf-validate clean

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

$(CHECKOV_STAMP): requirements-checkov.txt
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	@rm -f $(CHECKOV_VENV)/.installed-*
	@touch $(CHECKOV_STAMP)

# The browser tests drive Debian's Chromium; installed from the Debian packages when missing (no browser download).
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null

install: $(STAMP) $(CHECKOV_STAMP) $(CHROMIUM)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check shared functions main.py tests

test: lint
	$(BIN)/python -m pytest

run: install
	$(BIN)/python -m infra.devstack $(if $(filter-out 0,$(FRESH)),--fresh)

bench: install
	$(BIN)/python -m tests.benchmarks

soak: install
	$(BIN)/python -m tests.convergence.soak

tf-validate:
	@if command -v terraform >/dev/null 2>&1 && terraform -chdir=terraform init -backend=false -input=false >/dev/null 2>&1; then \
		terraform -chdir=terraform fmt -check -recursive && terraform -chdir=terraform validate; \
	else \
		echo "tf-validate: SKIPPED - no terraform binary with its google provider available (providers cannot be downloaded here); the offline policy tests in tests/terraform run inside make test"; \
	fi

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .run .bench .pytest_cache .ruff_cache .hypothesis
