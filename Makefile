# tapewire — `make help` lists the targets. CI runs `make test`, exactly as a person does.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PROTOS := $(wildcard proto/tapewire/v1/*.proto)
PYTEST_ARGS ?=
DASHBOARD := dashboard
NPM_INSTALLED := $(DASHBOARD)/node_modules/.installed
DASHBOARD_BUILT := $(DASHBOARD)/.next/BUILD_ID
DASHBOARD_SOURCES := $(shell find $(DASHBOARD)/app $(DASHBOARD)/components $(DASHBOARD)/lib -type f 2>/dev/null) \
	$(DASHBOARD)/next.config.ts $(DASHBOARD)/tsconfig.json
export NEXT_TELEMETRY_DISABLED := 1

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

.PHONY: install
install: $(INSTALLED) ## create .venv and install tapewire with its dev tools

$(NPM_INSTALLED): $(DASHBOARD)/package.json $(DASHBOARD)/package-lock.json
	# `npm install` (not `npm ci`): it installs the locked versions all the same, but does not
	# refuse a lock file that lacks other platforms' optional SWC binaries, as one made on Linux does.
	cd $(DASHBOARD) && npm install --no-audit --no-fund --loglevel=error
	touch $@

$(DASHBOARD_BUILT): $(NPM_INSTALLED) $(DASHBOARD_SOURCES)
	cd $(DASHBOARD) && npm run --silent build

.PHONY: dashboard
dashboard: $(DASHBOARD_BUILT) ## install and build the Next.js dashboard (dashboard/)

.PHONY: dashboard-check
dashboard-check: $(NPM_INSTALLED) ## type-check, lint, format-check (Prettier) and unit-test the dashboard
	cd $(DASHBOARD) && npm run --silent typecheck && npm run --silent lint && npm run --silent format:check && npm run --silent test:unit

.PHONY: chromium
chromium: ## install Chromium (Debian package) for the browser tests, unless one is there
	$(PYTHON) -m tools.devstack chromium

.PHONY: jaeger
jaeger: ## build Jaeger (the OTLP receiver of the tracing test and `make run JAEGER=1`) from the Go module proxy, unless it is there
	$(PYTHON) -m tools.devstack jaeger

.PHONY: haproxy
haproxy: ## install HAProxy (Debian package) for the load balancer's tests, unless it is there
	$(PYTHON) -m tools.devstack haproxy

.PHONY: prometheus
prometheus: ## install Prometheus and promtool (Debian package) for the rules' tests, unless they are there
	$(PYTHON) -m tools.devstack prometheus

.PHONY: proto
proto: $(INSTALLED) ## regenerate tapewire/v1/ from proto/
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. $(PROTOS)

.PHONY: proto-check
proto-check: $(INSTALLED) ## fail if tapewire/v1/ is stale against proto/
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=$$tmp --pyi_out=$$tmp --grpc_python_out=$$tmp $(PROTOS) && \
	for f in $$(cd $$tmp && find . -name '*_pb2*'); do \
	  cmp -s $$tmp/$$f $$f || { echo "stale generated code: $$f (run: make proto)"; exit 1; }; \
	done && echo "generated code is current"

.PHONY: lint
lint: $(INSTALLED) ## ruff (lint + format check) and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

.PHONY: compose-check
compose-check: $(INSTALLED) ## validate compose.yaml without a Docker engine (docker-compose config)
	$(BIN)/python -m pytest -q tests/test_compose.py

.PHONY: containers
containers: ## install podman (Debian packages, root, once) and build every image compose.yaml needs without a registry (compose.local.yaml)
	$(PYTHON) -m tools.containers build

.PHONY: compose-up
compose-up: $(INSTALLED) containers ## the whole suite in containers on the local images (set POSTGRES_PASSWORD, and AUTH_HS256_SECRET or AUTH_ALLOW_ANONYMOUS=true)
	$(BIN)/python -m tools.containers compose up --detach --wait

.PHONY: compose-down
compose-down: $(INSTALLED) ## stop and remove the containers of `make compose-up` (volumes kept; add `-v` by hand to drop them)
	POSTGRES_PASSWORD=$${POSTGRES_PASSWORD:-unused} $(BIN)/python -m tools.containers compose down

.PHONY: infra
infra: ## start local Kafka, Redis and PostgreSQL unless *_URL / KAFKA_BOOTSTRAP_SERVERS point elsewhere
	$(PYTHON) -m tools.devstack up

.PHONY: down
down: ## stop the local servers (data is kept; `$(PYTHON) -m tools.devstack down --wipe` deletes it)
	$(PYTHON) -m tools.devstack down

.PHONY: run
run: $(INSTALLED) dashboard infra ## set up, then run the whole suite and the dashboard, the simulator feeding it (PROMETHEUS=1: and a Prometheus with the alert rules; JAEGER=1: and Jaeger with the traces)
	$(BIN)/python -m tools.suite $(if $(PROMETHEUS),--prometheus) $(if $(JAEGER),--jaeger)

.PHONY: check
check: $(INSTALLED) proto-check lint ## the quick loop: generated code, ruff, mypy --strict and the unit tests; no servers, no browser
	$(BIN)/python -m pytest -q tests/unit

.PHONY: test
test: $(INSTALLED) proto-check lint dashboard-check dashboard chromium prometheus jaeger haproxy infra containers ## set up, then run every test against real servers, the browser's and the containers' included
	eval "$$($(PYTHON) -m tools.devstack env)" && $(BIN)/python -m pytest --cov --cov-report=term -m "not cluster" $(PYTEST_ARGS)
	# The integration tests once more, on Kafka, Redis and PostgreSQL that testcontainers starts.
	env -u KAFKA_BOOTSTRAP_SERVERS -u REDIS_URL -u DATABASE_URL TAPEWIRE_TEST_SERVERS=containers \
	  $(BIN)/python -m pytest -q -p no:cacheprovider tests/integration $(PYTEST_ARGS)

BENCH_INSTALLED := $(VENV)/.bench-installed
$(BENCH_INSTALLED): $(INSTALLED) pyproject.toml
	$(BIN)/pip install -q -e ".[dev,bench]"
	touch $@

.PHONY: test-cluster
test-cluster: $(INSTALLED) infra ## the pipeline on a 3-node Kafka cluster: partition leader, active controller and an emptied broker killed under load (75–150 s; `make test` runs the leader kill alone, see docs/guarantees.md)
	eval "$$($(PYTHON) -m tools.devstack env)" && $(BIN)/python -m pytest -s -m cluster $(PYTEST_ARGS)

.PHONY: bench
bench: $(BENCH_INSTALLED) infra ## measure tapewire against its peers (about 16 min); report in results/bench/<time>/
	$(BIN)/python -m bench

.PHONY: bench-quick
bench-quick: $(BENCH_INSTALLED) infra ## the same, one repetition and shorter windows (about 4 min): a smoke test, not figures to quote
	$(BIN)/python -m bench --quick

SOAK_MINUTES ?= 60
SOAK_RATE ?= 1000
.PHONY: soak
soak: $(BENCH_INSTALLED) infra ## the whole suite at a steady rate for SOAK_MINUTES (60), sampled each minute; report and verdict in results/soak/<time>/
	$(BIN)/python -m bench.soak --minutes $(SOAK_MINUTES) --rate $(SOAK_RATE)

.PHONY: clean
clean: ## remove the virtualenv and caches (not .local/ data)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info $(DASHBOARD)/node_modules $(DASHBOARD)/.next
