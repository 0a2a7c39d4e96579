# tapewire — `make help` lists the targets. CI runs `make test`, exactly as a person does.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PROTOS := $(wildcard proto/tapewire/v1/*.proto)
PYTEST_ARGS ?=

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

.PHONY: infra
infra: ## start local Kafka, Redis and PostgreSQL unless *_URL / KAFKA_BOOTSTRAP_SERVERS point elsewhere
	$(PYTHON) tools/devstack.py up

.PHONY: down
down: ## stop the local servers (data is kept; `$(PYTHON) tools/devstack.py down --wipe` deletes it)
	$(PYTHON) tools/devstack.py down

.PHONY: run
run: $(INSTALLED) infra ## set up, then run the whole suite with the simulator feeding it
	$(BIN)/python -m tools.suite

.PHONY: test
test: $(INSTALLED) proto-check lint infra ## set up, then run every test against real servers (compose.yaml included)
	eval "$$($(PYTHON) tools/devstack.py env)" && $(BIN)/python -m pytest $(PYTEST_ARGS)

.PHONY: clean
clean: ## remove the virtualenv and caches (not .local/ data)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
