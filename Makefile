# hsmpool developer and CI tasks. CI runs exactly "make test" (see .ci/run); nothing else differs between CI and a
# developer's machine.
#
#   make            build bin/hsmpoold and bin/hsmpool (the default goal)
#   make run        the embedded default: a single-node pool on SoftHSM2 with its data in $(DATA_DIR)
#   make deps       install what the tests need when it is missing: SoftHSM2, the Azure CLI, openssl, Node.js (scripts/deps.sh)
#   make test       all tests with the race detector
#   make bench      PKCS#11 benchmarks, and build bin/hsmpool-load; e.g. make bench BENCH_ARGS='-benchtime 5s'
#   make bench-rest the REST path: a throwaway dev pool measured by hsmpool-load (docs/benchmarks.md)
#   make cluster    a local 3-node pool on loopback, each node with its own SoftHSM2 token, data in $(CLUSTER_DIR)
#   make bench-cluster  a throwaway 3-node pool measured: replicated creates, signing, failover, catch-up (docs/benchmarks.md)
#   make generate   regenerate protobuf/gRPC code from proto/
#   make lint       gofmt, go vet, staticcheck
#   make clean      remove build outputs

# Recipes use bash so that pipelines fail when any command in them fails.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

GO ?= go
DATA_DIR ?= .data
BENCH_ARGS ?=

# make bench-rest: which operations, with how many concurrent clients, and hsmpool-load's other flags; e.g.
# make bench-rest REST_OPS=sign-p256 REST_CLIENTS=1,4 REST_ARGS='--duration 5s --http1'. REST_LISTEN must be free,
# and the port after it too (the dev pool's Raft port).
REST_OPS ?= sign-p256,sign-rsa2048,encrypt-aes256gcm,create
REST_CLIENTS ?= 1,4,16
REST_ARGS ?= --duration 10s --warmup 2s
REST_LISTEN ?= 127.0.0.1:9643

# make cluster: where the three nodes keep their data, and node 1's HTTPS port; node i listens on
# CLUSTER_PORT + 10 * (i - 1), with Raft on the next port and the node API on the one after (scripts/cluster.sh).
CLUSTER_DIR ?= .cluster
CLUSTER_PORT ?= 8543

# make bench-cluster: node 1's port of the throwaway pool (the same layout as make cluster's; 3 x 3 ports from it must
# be free), and what to measure, e.g. make bench-cluster BENCH_CLUSTER_ARGS='--only create,sign --duration 5s'
# (scripts/bench-cluster.sh --help lists the options).
BENCH_CLUSTER_PORT ?= 9743
BENCH_CLUSTER_ARGS ?=

# Stamped into both binaries; printed by "hsmpoold version" and "hsmpool version".
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

# Pinned tool versions. Bump them deliberately, then run make generate / make lint and commit what changes.
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
STATICCHECK_VERSION := v0.8.2

# The protoc plugins are installed here, not in the user's GOBIN.
TOOLS_BIN := $(CURDIR)/bin/tools

# Pass CI through to the tests exactly as it came in: set if it was set, unset if it was not.
ifneq ($(origin CI),undefined)
export CI
endif

.PHONY: build run deps test bench bench-rest cluster bench-cluster generate lint clean

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/ ./cmd/...

# When hsmpoold dev is implemented this target does not change.
run: build
	@scripts/deps.sh softhsm
	./bin/hsmpoold dev --data-dir $(DATA_DIR)

deps:
	@scripts/deps.sh

test: deps
	$(GO) test -race -count=1 ./...

bench:
	@scripts/deps.sh softhsm
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/ ./cmd/hsmpool-load
	$(GO) test -run '^$$' -bench . -benchmem -cpu 1,2 $(BENCH_ARGS) ./internal/hsm/...

# Starts "hsmpoold dev" in a temporary directory, activates it with three throwaway officer keys (the security
# domain is discarded with the directory), runs hsmpool-load once over REST_OPS x REST_CLIENTS (with the pool's CPU
# time per request where /proc has it), then stops the pool and removes the directory, whatever happened. The table
# goes to stdout. The keys that "create" makes stay in the pool, so list it last in REST_OPS.
bench-rest: build
	@scripts/deps.sh softhsm
	@dir=$$(mktemp -d); pid=''; \
	cleanup() { if [[ -n "$$pid" ]]; then kill "$$pid" 2>/dev/null || true; wait "$$pid" 2>/dev/null || true; fi; rm -rf "$$dir"; }; \
	trap cleanup EXIT; \
	./bin/hsmpoold dev --data-dir "$$dir/data" --listen '$(REST_LISTEN)' >"$$dir/hsmpoold.out" 2>"$$dir/hsmpoold.log" & pid=$$!; \
	for _ in $$(seq 600); do \
		if grep -q 'serving on' "$$dir/hsmpoold.out" || ! kill -0 "$$pid" 2>/dev/null; then break; fi; \
		sleep 0.1; \
	done; \
	if ! grep -q 'serving on' "$$dir/hsmpoold.out"; then \
		echo "hsmpool: hsmpoold dev did not start on $(REST_LISTEN):" >&2; cat "$$dir/hsmpoold.log" >&2; exit 1; \
	fi; \
	for o in alice bob carol; do \
		./bin/hsmpool sd officer-keygen --out "$$dir/$$o" --bits 2048 --no-passphrase >/dev/null 2>"$$dir/keygen.log" || \
			{ cat "$$dir/keygen.log" >&2; exit 1; }; \
	done; \
	./bin/hsmpool-load activate --client-file "$$dir/data/client.json" \
		--cert "$$dir/alice.cer" --cert "$$dir/bob.cer" --cert "$$dir/carol.cer" --sd-out "$$dir/sd.json"; \
	srv=(); if [[ -r "/proc/$$pid/stat" ]]; then srv=(--server-pid "$$pid"); fi; \
	./bin/hsmpool-load --client-file "$$dir/data/client.json" --op '$(REST_OPS)' --clients '$(REST_CLIENTS)' "$${srv[@]}" $(REST_ARGS)

# Starts (or resumes) three nodes on loopback and stays in the foreground; Ctrl-C stops all three.
cluster: build
	@scripts/deps.sh softhsm
	CLUSTER_DIR='$(CLUSTER_DIR)' CLUSTER_PORT='$(CLUSTER_PORT)' scripts/cluster.sh

# A throwaway pool in a temporary directory, removed afterwards whatever happened; the figures go to stdout.
bench-cluster: build
	@scripts/deps.sh softhsm
	CLUSTER_PORT='$(BENCH_CLUSTER_PORT)' scripts/bench-cluster.sh $(BENCH_CLUSTER_ARGS)

# protoc runs from proto/ with proto/ as its only import root, so .proto files import each other as
# "hsmpool/v1/x.proto" and each generated file lands beside its .proto. protoc itself comes from Debian
# (protobuf-compiler); the Go plugins are built at the pinned versions into $(TOOLS_BIN).
generate:
	@protos=$$(cd proto && find . -name '*.proto' | sed 's|^\./||' | sort); \
	if [[ -z "$$protos" ]]; then \
		echo "no .proto files under proto/; nothing to generate"; \
		exit 0; \
	fi; \
	scripts/deps.sh protoc; \
	echo "installing protoc-gen-go $(PROTOC_GEN_GO_VERSION) and protoc-gen-go-grpc $(PROTOC_GEN_GO_GRPC_VERSION) into $(TOOLS_BIN)"; \
	GOBIN='$(TOOLS_BIN)' $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION); \
	GOBIN='$(TOOLS_BIN)' $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION); \
	cd proto && set -x && protoc \
		--plugin=protoc-gen-go='$(TOOLS_BIN)/protoc-gen-go' \
		--plugin=protoc-gen-go-grpc='$(TOOLS_BIN)/protoc-gen-go-grpc' \
		-I . \
		--go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative \
		$$protos

# Generated *.pb.go files are exempt from the gofmt check (protoc-gen-go output is what it is).
lint:
	@listed=$$(gofmt -l .); \
	unformatted=$$(grep -v '\.pb\.go$$' <<<"$$listed" || true); \
	if [[ -n "$$unformatted" ]]; then \
		echo "hsmpool: these files need gofmt -w:" >&2; \
		echo "$$unformatted" >&2; \
		exit 1; \
	fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

# Build outputs only. The dev pool's data directory ($(DATA_DIR)) holds its keys and credentials and is left alone:
# remove it yourself to start a fresh pool.
clean:
	rm -rf bin/
