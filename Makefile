# Two commands for a newcomer: `make run` serves, `make test` tests.
# Both create .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test unit integration fuzz lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[server,test]'
	touch $(STAMP)

## run: serve the webhook on https://localhost:8443 (dev certs made in certs/ on first run)
run: $(STAMP)
	$(BIN)/heartbeat-webhook serve

## test: lint, type-check, then the unit and the real-apiserver integration suites
test: lint $(STAMP)
	@assets="$$(bash tests/envtest/assets.sh | tail -n 1)" && \
	  KUBEBUILDER_ASSETS="$$assets" $(BIN)/python -m pytest

## unit: the unit tests only (no apiserver)
unit: $(STAMP)
	$(BIN)/python -m pytest -m 'not integration'

## fuzz: a larger property-based run of the parser and mutation core, on demand
fuzz: $(STAMP)
	HEARTBEAT_FUZZ_EXAMPLES=$${HEARTBEAT_FUZZ_EXAMPLES:-200000} $(BIN)/python -m pytest -q tests/test_fuzz.py

lint: $(STAMP)
	$(BIN)/ruff check webhook tests
	$(BIN)/ruff format --check webhook tests
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
