# Parley's one test command: `make test`. It installs what the tests need
# when it is missing (redis-server, haproxy, ...), then checks formatting,
# vets, runs staticcheck (fetched through the Go module proxy) and runs
# every test with the race detector: first the packages, then,
# verbosely so their figures reach the log, the end-to-end tests under test/
# (processes behind a real haproxy; docker compose when an engine answers),
# and last the fault suite on its own: its latency figures and bounds mean
# nothing with another package's clusters on the same cores.

GO ?= go

.PHONY: test deps check build bench fuzz

test: deps check
	$(GO) test -race -count=1 -timeout 20m $$($(GO) list ./... | grep -v '/test/')
	$(GO) test -race -count=1 -timeout 40m -v $$($(GO) list ./test/... | grep -v '/test/faults$$')
	$(GO) test -race -count=1 -timeout 40m -v ./test/faults

deps:
	@./scripts/ensure-deps.sh

check:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o parley ./cmd/parley

bench: deps
	$(GO) test -run '^$$' -bench . -benchmem ./pkg/...

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime 30s ./pkg/protocol
