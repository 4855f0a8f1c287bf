SHELL := /bin/bash

# Every Go module in the repository: the core module and those under contrib/.
MODULES := $(shell find . -name go.mod -not -path './.git/*' -printf '%h\n' | sort)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME ?= 10s
TESTFLAGS ?=
# Model-based property tests (pgregory.net/rapid): cases per test, actions per case.
export RAPID_CHECKS ?= 1000
export RAPID_STEPS ?= 100

.PHONY: test integration bench fuzz lint deps ci verify

## test: gofmt check, go vet and go test -race over every module, never
## from the test cache, then the allocation tests without the race
## detector (which allocates on its own); prints each package's result,
## each skipped test with its reason, and failures
test:
	@unformatted=$$(gofmt -l $(MODULES)); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	@set -eo pipefail; for m in $(MODULES); do \
		echo "== $$m"; \
		(cd $$m && go vet ./... && go test -race -count=1 -v -timeout 12m $(TESTFLAGS) ./... 2>&1 | \
			grep -vE '^ *(=== (RUN|PAUSE|CONT|NAME) |--- PASS: |PASS$$|([^ ]+\.go:[0-9]+: )?\[rapid\] OK)'); \
	done
	@echo "== allocations, without the race detector"
	@set -eo pipefail; for m in $(MODULES); do \
		(cd $$m && go test -count=1 -run 'Alloc|Observed/NoAllocs|ObservedCatchesBrokenPolicies/allocates' ./... 2>&1 | \
			{ grep -vE 'no test files|no tests to run' || true; }); \
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

## fuzz: every fuzz target for FUZZTIME (10s) each, FUZZJOBS (one per CPU)
## at a time
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

## verify: the Spin models of verify/ checked exhaustively: every property
## holds and every mutation is refuted; prints each check's states and time
verify:
	verify/run

## ci: everything but bench
ci: deps lint integration fuzz verify
