# Tandem's build. `make run` starts a local region; `make test` runs every
# test, installing what they need first (scripts/setup).
GO ?= go
export GOFLAGS := -buildvcs=false
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

.PHONY: all build setup test test-go test-python test-spark run bench clean

all: build

build: ## Build bin/tandem
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o bin/tandem ./cmd/tandem

setup: ## Install Go modules, Debian packages, the Python venv and Azurite
	./scripts/setup

test: setup build test-go test-python test-spark ## Run the whole test suite

test-go: ## Go packages, with the race detector (starts PostgreSQL, Azurite... itself)
	$(GO) vet ./...
	$(GO) test -race -timeout 25m ./...

test-python: build ## The Databricks Python SDK and CLI against a real server
	TANDEM_BIN=$(CURDIR)/bin/tandem .venv/bin/python -m pytest -q tests/python

test-spark: build ## End-to-end tests with real Apache Spark (bounded group)
	TANDEM_BIN=$(CURDIR)/bin/tandem TANDEM_VENV=$(CURDIR)/.venv $(GO) test -race -tags spark -timeout 30m ./e2e/...

run: build ## Start a local Tandem region
	./scripts/run

bench: build ## Run the benchmarks (figures in bench/README.md)
	./bench/run

clean:
	rm -rf bin
