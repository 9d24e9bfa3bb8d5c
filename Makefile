# pausewatch. `make help` lists the targets.

GO       ?= go
# One pinned clang: regenerated BPF objects must match the committed ones
# byte for byte (Debian 12's clang-14; .ci/run installs it).
CLANG    ?= clang-14
BIN      := bin/pausewatch
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# The image deploy/ references (deploy/daemonset.yaml; TestImage checks
# they agree).
IMAGE_VERSION ?= 0.1.0
IMAGE    ?= ghcr.io/pausewatch/pausewatch:$(IMAGE_VERSION)
BUILDAH  ?= buildah
# Extra buildah storage options, e.g. --root DIR --runroot DIR --storage-driver vfs
BUILDAH_STORAGE ?=

.PHONY: help build image test test-unit generate check-generated lint demo bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

build: ## build bin/pausewatch (no clang needed: BPF objects are committed)
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./agent/cmd/pausewatch

image: ## build the container image $(IMAGE) with buildah: FROM scratch, the static agent (deploy/Dockerfile)
	rm -rf bin/image && mkdir -p bin/image
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o bin/image/pausewatch ./agent/cmd/pausewatch
	$(BUILDAH) $(BUILDAH_STORAGE) bud --isolation chroot -f deploy/Dockerfile \
	  --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) -t $(IMAGE) bin/image

test: ## every test: unit, and as root the end-to-end tests against real runtimes
	$(GO) vet ./...
	$(GO) test -p 1 -count=1 -timeout 30m ./...

test-unit: ## unit tests only (no root, no clang)
	$(GO) test -count=1 -short ./agent/... ./exporters/...

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

demo: build ## run the example Go service under load and the agent (SLO 20ms); `pausewatch watch` / `report` in another shell
	$(GO) build -o bin/example-go ./examples/go
	$(GO) build -o bin/loadgen ./examples/loadgen
	@echo "example service on :8080 (a deliberate pause every second), 200 req/s of load, agent on :9464 with --slo 20ms (Ctrl-C stops all)"
	@OTEL_SERVICE_NAME=example-go bin/example-go -listen 127.0.0.1:8080 -pause-every 1s -ballast-mb 8 & ex=$$!; \
	  (while sleep 1; do bin/loadgen -url http://127.0.0.1:8080/ -rate 200 -duration 10s >/dev/null 2>&1; done) & lg=$$!; \
	  trap "kill $$ex $$lg 2>/dev/null" EXIT INT TERM; $(BIN) --listen :9464 --slo 20ms

clean: ## remove build output
	rm -rf bin
