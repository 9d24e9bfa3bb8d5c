# pausewatch. `make help` lists the targets.

GO       ?= go
# One pinned clang: regenerated BPF objects must match the committed ones
# byte for byte (Debian 12's clang-14; .ci/run installs it).
CLANG    ?= clang-14
BIN      := bin/pausewatch
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# The image deploy/ references (the chart's appVersion, rendered into
# deploy/kubernetes/pausewatch.yaml; TestDeployImageName checks they agree).
IMAGE_VERSION ?= 0.1.0
IMAGE    ?= ghcr.io/pausewatch/pausewatch:$(IMAGE_VERSION)
BUILDAH  ?= buildah
# Extra buildah storage options, e.g. --root DIR --runroot DIR --storage-driver vfs
BUILDAH_STORAGE ?=

# Helm, run as a tool (never a module requirement: its Kubernetes libraries
# would pin the agent's). Built once into a gitignored cache: 3 min of CPU
# cold, a link with a warm Go build cache, nothing once built (docs/deploy.md,
# "Checks and what they cost").
HELM_VERSION ?= v3.22.0
HELM_DIR     := .cache/helm-$(HELM_VERSION)
HELM         ?= $(HELM_DIR)/helm
CHART        := deploy/helm/pausewatch
RULES        := $(CHART)/files/pausewatch.rules.yaml
GENERATED    := deploy/kubernetes $(CHART)/files/dashboards

.PHONY: help build image test test-unit generate check-generated lint demo bench clean \
	manifests dashboards check-rules check-dashboards check-manifests check-chart check-deploy kube-bin

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

build: ## build bin/pausewatch (no clang needed: BPF objects are committed)
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./agent/cmd/pausewatch

image: ## build the container image $(IMAGE) with buildah: FROM scratch, the static agent (deploy/Dockerfile)
	rm -rf bin/image && mkdir -p bin/image
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o bin/image/pausewatch ./agent/cmd/pausewatch
	$(BUILDAH) $(BUILDAH_STORAGE) bud --isolation chroot -f deploy/Dockerfile \
	  --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) -t $(IMAGE) bin/image

test: check-deploy kube-bin ## every test: deploy/ (chart, manifests, dashboards, rules), unit, and as root the end-to-end tests against real runtimes
	$(GO) vet ./...
	$(GO) test -p 1 -count=1 -timeout 60m ./...

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
	cd deploy/gen && $(GO) vet ./...
	@if command -v promtool >/dev/null; then $(MAKE) --no-print-directory check-rules; else echo "promtool not installed: rules not checked"; fi

check-rules: ## the alerting/recording rules: promtool check and unit tests (every alert fires and stays silent)
	promtool check rules $(RULES)
	promtool test rules deploy/prometheus/rules_test.yaml

$(HELM):
	GOBIN=$(CURDIR)/$(HELM_DIR) $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

manifests: $(HELM) ## render deploy/kubernetes/ from the chart (plain manifests for users without Helm)
	@mkdir -p deploy/kubernetes
	{ echo "# Generated from $(CHART) by make manifests: do not edit."; \
	  $(HELM) template pausewatch $(CHART) --namespace pausewatch --set createNamespace=true; } > deploy/kubernetes/pausewatch.yaml
	{ echo "# Generated from $(CHART) by make manifests: do not edit. Needs the Prometheus Operator's CRDs."; \
	  $(HELM) template pausewatch $(CHART) --namespace pausewatch --set podMonitor.enabled=true,prometheusRule.enabled=true \
	    --show-only templates/podmonitor.yaml --show-only templates/prometheusrule.yaml; } > deploy/kubernetes/prometheus-operator.yaml

dashboards: ## regenerate the Grafana dashboards (Go, grafana-foundation-sdk) into the chart
	cd deploy/gen && $(GO) run ./cmd/dashboards ../helm/pausewatch/files/dashboards

check-dashboards: dashboards ## fail if the committed dashboards differ from the generator's output
	@test -z "$$(git status --porcelain -- $(CHART)/files/dashboards)" || { git status --short -- $(CHART)/files/dashboards; git diff --stat -- $(CHART)/files/dashboards; echo "dashboards are stale: run make dashboards and commit"; exit 1; }

check-manifests: manifests ## fail if deploy/kubernetes/ differs from the chart's rendering
	@test -z "$$(git status --porcelain -- deploy/kubernetes)" || { git status --short -- deploy/kubernetes; git diff -- deploy/kubernetes | head -50; echo "deploy/kubernetes is stale: run make manifests and commit"; exit 1; }

check-chart: $(HELM) ## helm lint for the default and opt-in values; rendered objects strictly decoded into the Kubernetes and Prometheus Operator types
	$(HELM) lint --strict $(CHART)
	for f in $(CHART)/ci/*-values.yaml; do $(HELM) lint --strict $(CHART) -f $$f || exit 1; done
	cd deploy/gen && HELM=$(CURDIR)/$(HELM) $(GO) test -count=1 ./...

check-deploy: check-rules check-dashboards check-manifests check-chart ## everything under deploy/: rules, dashboards, manifests, chart

bench: ## what the agent costs, as a markdown table, in < 10 min (root; wrk, perl, java, python3.11; bpftrace for the peer). BENCH_FLAGS=-quick: a < 60 s smoke test
	$(GO) build -o bin/bench ./examples/bench
	bin/bench $(BENCH_FLAGS)

demo: build ## run the example Go service under load and the agent (SLO 20ms); `pausewatch watch` / `report` in another shell
	$(GO) build -o bin/example-go ./examples/go
	$(GO) build -o bin/loadgen ./examples/loadgen
	@echo "example service on :8080 (a deliberate pause every second), 200 req/s of load, agent on :9464 with --slo 20ms (Ctrl-C stops all)"
	@OTEL_SERVICE_NAME=example-go bin/example-go -listen 127.0.0.1:8080 -pause-every 1s -ballast-mb 8 & ex=$$!; \
	  (while sleep 1; do bin/loadgen -url http://127.0.0.1:8080/ -rate 200 -duration 10s >/dev/null 2>&1; done) & lg=$$!; \
	  trap "kill $$ex $$lg 2>/dev/null" EXIT INT TERM; $(BIN) --listen :9464 --slo 20ms

clean: ## remove build output
	rm -rf bin
