# Two commands for a newcomer: `make run` serves, `make test` tests.
# Both create .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test unit integration fuzz lint clean bench bench-smoke kind-up demo kind-down

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

## unit: the unit tests only (no apiserver, no node)
unit: $(STAMP)
	$(BIN)/python -m pytest -m 'not integration and not node'

## node: the real-node suite alone: kubelet + containerd run a hung worker (root;
## apt-get install containerd runc debootstrap; see tests/node/conftest.py)
.PHONY: node
node: $(STAMP)
	@assets="$$(bash tests/envtest/assets.sh | tail -n 1)" && \
	  KUBEBUILDER_ASSETS="$$assets" $(BIN)/python -m pytest -m node tests/node

## fuzz: a larger property-based run of the parser and mutation core, on demand
fuzz: $(STAMP)
	HEARTBEAT_FUZZ_EXAMPLES=$${HEARTBEAT_FUZZ_EXAMPLES:-200000} $(BIN)/python -m pytest -q tests/test_fuzz.py

## soak: 60 s of steady pod creates through a real kube-apiserver with the webhook
## registered; prints pods, failures, p99 latency, webhook RSS (SOAK_ARGS="--seconds 300")
.PHONY: soak
soak: $(STAMP)
	@assets="$$(bash tests/envtest/assets.sh | tail -n 1)" && \
	  KUBEBUILDER_ASSETS="$$assets" $(BIN)/python -m tests.faults.soak $(SOAK_ARGS)

## bench: the webhook vs a bare ASGI baseline under wrk and vegeta, logging/metrics
## overhead, a py-spy profile and pod creates through kube-apiserver (~8 min; needs
## `apt-get install wrk` and Go; see bench/README.md). Results: bench/results/report.md
bench: $(VENV)/.bench-installed
	$(BIN)/python -m bench $(BENCH_ARGS)

## bench-smoke: the same command at ~1 s per step (checks that it works; no timings)
bench-smoke: $(VENV)/.bench-installed
	$(BIN)/python -m bench --smoke $(BENCH_ARGS)

$(VENV)/.bench-installed: $(STAMP)
	$(BIN)/pip install --quiet -e '.[server,test,bench]'
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check webhook tests bench examples
	$(BIN)/ruff format --check webhook tests bench examples
	$(BIN)/mypy
	$(BIN)/lint-imports

## kind-up: a kind cluster running the webhook (needs docker, kind, kubectl; see hack/kind.sh)
kind-up: $(STAMP)
	HEARTBEAT_CLI=$(BIN)/heartbeat-webhook bash hack/kind.sh up

## demo: deploy examples/ into the kind cluster and watch a hung worker get restarted
demo:
	bash hack/kind.sh demo

## kind-down: delete the kind cluster (the CA in manifests/overlays/kind/generated is kept)
kind-down:
	bash hack/kind.sh down

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
