# pausewatch. `make help` lists the targets.

GO       ?= go
# One pinned clang: regenerated BPF objects must match the committed ones
# byte for byte (Debian 12's clang-14; .ci/run installs it).
CLANG    ?= clang-14
BIN      := bin/pausewatch
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)

.PHONY: help build test test-unit generate check-generated lint demo bench clean kube-bin

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

build: ## build bin/pausewatch (no clang needed: BPF objects are committed)
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./agent/cmd/pausewatch

test: kube-bin ## every test: unit, and as root the end-to-end tests against real runtimes
	$(GO) vet ./...
	$(GO) test -p 1 -count=1 -timeout 30m ./...

test-unit: ## unit tests only (no root, no clang)
	$(GO) test -count=1 -short ./agent/... ./exporters/...

# kube-apiserver and etcd for the Kubernetes e2e test, built once into
# $$HOME/.cache/pausewatch (keyed by version; minutes the first time, nothing
# after). A failed build (no module proxy) is not fatal here: the test then
# skips and says why, except in CI, where it fails.
kube-bin: ## build (or find cached) kube-apiserver and etcd for the Kubernetes e2e test
	@bash test/kube/build.sh >/dev/null || echo "kube-bin: kube-apiserver/etcd not built; the Kubernetes e2e test will skip (CI: fail)"

generate: ## regenerate the BPF objects from bpf/ (needs clang-14, llvm-14, libbpf-dev)
	$(GO) generate ./agent/source/

check-generated: generate ## fail if the committed BPF objects differ from a fresh build
	@git diff --exit-code --stat -- agent/source/ || { echo "generated BPF objects are stale: run make generate and commit"; exit 1; }

lint: ## gofmt, go vet, and the alert rules (promtool, when installed)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	@if command -v promtool >/dev/null; then promtool check rules deploy/alerts.yaml; fi

bench: ## overhead on a saturated server: wrk with and without the agent, interleaved (root, wrk)
	bash examples/bench/overhead.sh

demo: build ## run the example Go service and the agent, then `pausewatch watch` in another shell
	$(GO) build -o bin/example-go ./examples/go
	@echo "example service on :8080, agent on :9464 (Ctrl-C stops both)"
	@OTEL_SERVICE_NAME=example-go bin/example-go -listen 127.0.0.1:8080 & ex=$$!; \
	  trap "kill $$ex" EXIT INT TERM; $(BIN) --listen :9464

clean: ## remove build output
	rm -rf bin
