# Safeclose. `make help` lists the targets.
SHELL := /bin/bash
GO    ?= go
BIN   := bin/safeclose
PLUGINS_BIN := plugins/bin

# DEV ONLY: a fixed, public sealing key so `make run` can store tokens out of
# the box. Anyone can read it here; never use it with real Plaid credentials.
DEV_KEYS := dev1:8yBPGR+DgGqrPjBHnaw/TmzLUchqDp7dsRSjcA1wbGw=

.PHONY: help build plugins run test short integration bench fuzz check cover vuln testdata clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/safeclose
	$(GO) build -trimpath -o $(BIN) ./cmd/safeclose

plugins: ## build the example Wasm plugins into plugins/bin
	bash plugins/build.sh

run: build plugins ## run the proxy on 127.0.0.1:8080 with the dev config and the embedded Plaid emulator
	@echo "!!! make run: using the PUBLIC DEV sealing key (SAFECLOSE_KEYS=$(DEV_KEYS)). Dev only. !!!" >&2
	SAFECLOSE_KEYS="$${SAFECLOSE_KEYS-$(DEV_KEYS)}" ./$(BIN) serve $(if $(CONFIG),-config $(CONFIG),)

test: ## all tests with the race detector, shuffled
	$(GO) test -race -shuffle=on -timeout 20m ./...

short: ## quick tests
	$(GO) test -short ./...

integration: build ## tests that run the real binary (SIGKILL crash test)
	$(GO) test -race -tags integration -timeout 20m ./cmd/...

bench: build plugins ## Go benchmarks (-count=10) and the wrk load harness vs plain fasthttp and nginx
	$(GO) test -run '^$$' -bench . -benchmem -count=$${COUNT:-10} ./... | tee bench.txt
	bash internal/bench/load.sh

fuzz: ## run each fuzz target for FUZZTIME (default 20s)
	@set -e; for p in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$p | grep '^Fuzz' || true); do \
	    echo "== $$p $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $${FUZZTIME:-20s} $$p; \
	  done; done

check: ## gofmt, vet, go mod tidy, no tracked binaries; fails on a dirty tree
	bash scripts/check-tracked.sh
	test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...
	$(GO) mod tidy && git diff --exit-code go.mod go.sum

cover: ## coverage report
	$(GO) test -coverprofile=cover.out ./... && $(GO) tool cover -func=cover.out | tail -1

vuln: ## govulncheck (needs network)
	$(GO) run golang.org/x/vuln/cmd/govulncheck@v1.1.4 ./...

clean: ## remove build outputs (not ./data)
	rm -rf bin $(PLUGINS_BIN) cover.out bench.txt
