SHELL := /bin/bash

# Every Go module in the repository: the core module and those under contrib/.
MODULES := $(shell find . -name go.mod -not -path './.git/*' -printf '%h\n' | sort)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME ?= 10s
TESTFLAGS ?=
# Model-based property tests (pgregory.net/rapid): cases per test, actions per case.
export RAPID_CHECKS ?= 1000
export RAPID_STEPS ?= 100

.PHONY: test integration bench fuzz lint deps ci

## test: gofmt check, go vet and go test -race over every module, never
## from the test cache; prints each package's result, each skipped test
## with its reason, and failures
test:
	@unformatted=$$(gofmt -l $(MODULES)); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	@set -eo pipefail; for m in $(MODULES); do \
		echo "== $$m"; \
		(cd $$m && go vet ./... && go test -race -count=1 -v -timeout 12m $(TESTFLAGS) ./... 2>&1 | \
			grep -vE '^ *(=== (RUN|PAUSE|CONT|NAME) |--- PASS: |PASS$$|\[rapid\] OK)'); \
	done

## integration: test, with every service required (set the RESILIENCE_* variables)
integration:
	RESILIENCE_REQUIRE_SERVICES=1 $(MAKE) test

## bench: every benchmark of every module
bench:
	@set -e; for m in $(MODULES); do \
		echo "== $$m"; \
		(cd $$m && go test -run '^$$' -bench . -benchmem ./...); \
	done

## fuzz: every fuzz target for FUZZTIME (10s) each
fuzz:
	FUZZTIME=$(FUZZTIME) .ci/fuzz

## lint: staticcheck over every module
lint:
	@set -e; for m in $(MODULES); do \
		echo "== $$m"; \
		(cd $$m && go run $(STATICCHECK) ./...); \
	done

## deps: the core module's library code imports only what it may
deps:
	.ci/deps

## ci: everything but bench
ci: deps lint integration fuzz
