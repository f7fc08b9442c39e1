# podcreds — the front door. Every target works on a fresh machine with only Go
# and apt: whatever else is needed is built from the Go module proxy (pinned)
# and cached under $(TOOLS_DIR), which git ignores.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
GO ?= go

TOOLS_DIR ?= $(CURDIR)/.tools
TOOLS_BIN := $(TOOLS_DIR)/bin
export PODCREDS_TOOLS_BIN := $(TOOLS_BIN)

# Pinned tool versions. etcd and kube-apiserver are pinned by their wrapper
# modules' go.mod (read here so the version lives in one place).
modversion = $(shell awk -v m=$(1) '{ for (i = 1; i < NF; i++) if ($$i == m && $$(i+1) ~ /^v/) { print $$(i+1); exit } }' $(2))
ETCD_VERSION := $(call modversion,go.etcd.io/etcd/server/v3,hack/tools/etcd/go.mod)
KUBE_VERSION := $(call modversion,k8s.io/kubernetes,hack/tools/kube-apiserver/go.mod)
ifeq ($(ETCD_VERSION),)
$(error cannot read the etcd version from hack/tools/etcd/go.mod)
endif
ifeq ($(KUBE_VERSION),)
$(error cannot read the Kubernetes version from hack/tools/kube-apiserver/go.mod)
endif
MINIO_VERSION := v0.0.0-20260212201848-7aac2a2c5b7c
STATICCHECK_VERSION := v0.8.2
HELM_VERSION := v3.22.0
# Prometheus' Go module is tagged v0.<minor>.<patch> for Prometheus 3.<minor>.<patch>.
PROMETHEUS_VERSION := v0.316.0

ETCD := $(TOOLS_DIR)/etcd-$(ETCD_VERSION)/etcd
KUBE_APISERVER := $(TOOLS_DIR)/kube-apiserver-$(KUBE_VERSION)/kube-apiserver
MINIO := $(TOOLS_DIR)/minio-$(MINIO_VERSION)/minio
STATICCHECK := $(TOOLS_DIR)/staticcheck-$(STATICCHECK_VERSION)/staticcheck
HELM := $(TOOLS_DIR)/helm-$(HELM_VERSION)/helm
PROMTOOL := $(TOOLS_DIR)/promtool-$(PROMETHEUS_VERSION)/promtool

TEST_TIMEOUT ?= 30m
FUZZTIME ?= 60s

.PHONY: all build tools deploy-tools test unit lint vet fmt-check bench bench-scale demo demo-any-cluster fuzz clean clean-tools help e2e e2e-root e2e-deps compat-readme monitoring-sync chart-flags image image-test image-deps

all: build

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

# Built as the image builds it: static (no libc mapped in), no symbol tables.
# bench/scale builds its agent through this target, so it measures what ships.
PODCREDS_BIN ?= bin/podcreds
BUILD_PKG ?= ./cmd/podcreds
# `podcreds version` prints what is stamped here: VERSION is `git describe`
# (a tag once there is one, else the short commit; "-dirty" for a modified
# tree) and COMMIT the full revision. Without git both stay empty and the
# binary falls back to what the Go toolchain records (cmd/podcreds/version.go).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)$(shell git diff --quiet HEAD 2>/dev/null || echo +dirty)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
build: ## build bin/podcreds, stamped with VERSION and COMMIT
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(PODCREDS_BIN) $(BUILD_PKG)

# The links in $(TOOLS_BIN) are relative, so a .tools directory shared by
# several checkouts (a symlink to one cache) or moved keeps working.
toolslink = $(patsubst $(TOOLS_DIR)/%,../%,$(1))

# Each tool is a file target named by its version: a pinned version that is
# already built is never rebuilt, and bumping a pin builds the new one beside it.
tools: $(ETCD) $(KUBE_APISERVER) $(MINIO) ## build etcd, kube-apiserver and minio (pinned, cached)
	@mkdir -p $(TOOLS_BIN)
	@ln -sfn $(call toolslink,$(ETCD)) $(TOOLS_BIN)/etcd
	@ln -sfn $(call toolslink,$(KUBE_APISERVER)) $(TOOLS_BIN)/kube-apiserver
	@ln -sfn $(call toolslink,$(MINIO)) $(TOOLS_BIN)/minio
	@echo "tools ready in $(TOOLS_BIN): etcd $(ETCD_VERSION), kube-apiserver $(KUBE_VERSION), minio $(MINIO_VERSION)"

# Only the tests of the chart and the alert rules need these; demo, bench
# and e2e do not wait for them.
deploy-tools: $(HELM) $(PROMTOOL) ## build helm and promtool (pinned, cached)
	@mkdir -p $(TOOLS_BIN)
	@ln -sfn $(call toolslink,$(HELM)) $(TOOLS_BIN)/helm
	@ln -sfn $(call toolslink,$(PROMTOOL)) $(TOOLS_BIN)/promtool
	@echo "deploy tools ready in $(TOOLS_BIN): helm $(HELM_VERSION), promtool $(PROMETHEUS_VERSION)"

$(ETCD):
	@echo ">> building etcd $(ETCD_VERSION)"
	@mkdir -p $(dir $@)
	cd hack/tools/etcd && $(GO) build -o $@.tmp go.etcd.io/etcd/server/v3 && mv $@.tmp $@

$(KUBE_APISERVER):
	@echo ">> building kube-apiserver $(KUBE_VERSION) (a cold build takes several minutes)"
	@mkdir -p $(dir $@)
	cd hack/tools/kube-apiserver && $(GO) build -o $@.tmp k8s.io/kubernetes/cmd/kube-apiserver && mv $@.tmp $@

$(MINIO):
	@echo ">> building minio $(MINIO_VERSION)"
	@mkdir -p $(dir $@)
	GOBIN=$(dir $@) $(GO) install github.com/minio/minio@$(MINIO_VERSION)

# helm and promtool: `make test` runs `helm lint`, renders the chart and runs
# `promtool test rules` (deploy/helm, deploy/monitoring).
$(HELM):
	@echo ">> building helm $(HELM_VERSION)"
	@mkdir -p $(dir $@)
	GOBIN=$(dir $@) $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

$(PROMTOOL):
	@echo ">> building promtool $(PROMETHEUS_VERSION)"
	@mkdir -p $(dir $@)
	GOBIN=$(dir $@) $(GO) install github.com/prometheus/prometheus/cmd/promtool@$(PROMETHEUS_VERSION)

$(STATICCHECK):
	@mkdir -p $(dir $@)
	GOBIN=$(dir $@) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

vet: ## go vet (the e2e suite is behind a build tag: vet it too)
	$(GO) vet ./...
	$(GO) vet -tags e2e ./test/e2e/

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "not gofmt-formatted:"; echo "$$out"; exit 1; fi

lint: vet fmt-check $(STATICCHECK) ## go vet, gofmt and staticcheck (pinned)
	$(STATICCHECK) -tags e2e ./...

test: tools deploy-tools e2e-deps ## every test: unit, integration on a real control plane, fuzz seed corpora, then e2e (as root)
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...
	$(MAKE) e2e

# End to end (test/e2e): a node network namespace with the control plane,
# MinIO and the agent (setting up its own addresses with --link-setup), pods
# as network namespaces, and unmodified AWS clients in them. Needs root.
E2E_APT := iproute2 nftables awscli python3-boto3
NODECLIENT := test/e2e/nodeclient

e2e: e2e-root tools e2e-deps ## end to end as root: agent and unmodified Go, AWS CLI, boto3 and JS clients in network namespaces
	$(GO) test -tags e2e -count=1 -v -timeout 10m ./test/e2e/
	@$(MAKE) --no-print-directory compat-readme

e2e-root:
	@if [ "$$(id -u)" != 0 ]; then echo "make e2e: FAIL: the e2e suite needs root (it creates network namespaces, veth pairs and nftables rules): run it as root, e.g. sudo make e2e" >&2; exit 1; fi

# What the e2e suite (and netsetup's root tests) use, from Debian; node and
# npm only if missing (the machine's Node.js may come from elsewhere). Then
# the Node client's packages, exactly as package-lock.json pins them.
e2e-deps: $(NODECLIENT)/node_modules/.package-lock.json
	@missing=""; 	for p in $(E2E_APT); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; done; 	if [ -n "$$missing" ]; then 	  if [ "$$(id -u)" != 0 ]; then echo "make e2e-deps: FAIL: missing Debian packages:$$missing; installing them needs root" >&2; exit 1; fi; 	  echo ">> apt-get install$$missing"; 	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; 	fi

$(NODECLIENT)/node_modules/.package-lock.json: $(NODECLIENT)/package.json $(NODECLIENT)/package-lock.json
	@if ! command -v npm >/dev/null; then 	  if [ "$$(id -u)" != 0 ]; then echo "make e2e-deps: FAIL: node and npm are missing; installing them needs root" >&2; exit 1; fi; 	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm; 	fi
	cd $(NODECLIENT) && npm ci --no-audit --no-fund --loglevel=error

# The e2e run writes test/e2e/compat.md; the README shows it between markers.
compat-readme:
	@grep -q '<!-- compat:begin -->' README.md && grep -q '<!-- compat:end -->' README.md || { echo "README.md lacks the compat markers" >&2; exit 1; }
	@awk 'FNR == NR { table = table $$0 "\n"; next } \
	  /<!-- compat:end -->/ { skip = 0 } \
	  skip { next } \
	  { print } \
	  /<!-- compat:begin -->/ { printf "%s", table; skip = 1 }' test/e2e/compat.md README.md > README.md.tmp && mv README.md.tmp README.md
	@echo "README.md: compatibility table updated from test/e2e/compat.md"

# The image, built and run here with Debian's buildah: no Docker engine, no
# registry, nothing pulled (hack/image/image.sh says what goes in). The
# Dockerfile builds the same image for Docker users, from golang and
# distroless base images.
IMAGE ?= localhost/podcreds:$(VERSION)
IMAGE_ARCHIVE ?= bin/podcreds-image.tar
IMAGE_APT := buildah ca-certificates

image: image-deps build ## build the agent's OCI image with buildah (no Docker engine), also as bin/podcreds-image.tar
	hack/image/image.sh build $(PODCREDS_BIN) $(IMAGE) $(VERSION) $(COMMIT) $(IMAGE_ARCHIVE)

image-test: image-deps ## run the image's binary with buildah run --isolation chroot: version, CA bundle, refusal
	hack/image/image.sh test $(IMAGE) $(VERSION) $(COMMIT)

image-deps:
	@missing=""; for p in $(IMAGE_APT); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "make image: FAIL: missing Debian packages:$$missing; installing them needs root" >&2; exit 1; fi; \
	  echo ">> apt-get install$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

unit: ## only the tests that need no real control plane
	$(GO) test -race -count=1 -short ./...

demo: build tools ## bring up the control plane and MinIO, run the agent and an unmodified SDK client
	$(GO) build -o bin/s3client ./examples/s3client
	$(GO) run ./hack/demo --agent=bin/podcreds --client=bin/s3client

demo-any-cluster: build tools ## a self-managed cluster: publish its issuer (podcreds issuer publish --once), podcreds doctor, then credentials
	$(GO) build -o bin/s3client ./examples/s3client
	$(GO) run ./hack/demo --any-cluster --agent=bin/podcreds --client=bin/s3client

bench: build tools ## hot path vs a bare net/http server (interleaved and together), plus handler and cache micro-benchmarks
	$(GO) build -o bin/hotpath ./bench/hotpath
	bin/hotpath -agent bin/podcreds
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./agent/ ./cache/
	$(GO) run ./bench/scale -agent bin/podcreds

bench-scale: build tools ## storm, churn, soak and memory at scale (about 5 min; part of bench)
	$(GO) run ./bench/scale -agent bin/podcreds

# Every fuzz target, FUZZTIME each. Their seed corpora also run in `make test`.
fuzz: ## run each fuzz target for FUZZTIME (default 60s)
	GO=$(GO) FUZZTIME=$(FUZZTIME) hack/fuzz.sh

# values.schema.json's agent flags come from `podcreds agent -h`;
# test/chart fails when they drift and this target rewrites them.
chart-flags: ## regenerate the Helm chart's agent flag schema from `podcreds agent -h`
	$(GO) test -count=1 -run '^TestSchemaHasEveryAgentFlag$$' ./test/chart/ -update

# The alert rules live in deploy/monitoring/podcreds.rules.yaml; the
# PrometheusRule beside it and the Helm chart's copy are generated from it
# (test/monitoring fails when they drift).
RULES := deploy/monitoring/podcreds.rules.yaml
monitoring-sync: ## regenerate deploy/monitoring/prometheusrule.yaml and the chart's rules from podcreds.rules.yaml
	@mkdir -p deploy/helm/podcreds/files
	cp $(RULES) deploy/helm/podcreds/files/podcreds.rules.yaml
	cp deploy/monitoring/podcreds-dashboard.json deploy/helm/podcreds/files/
	{ printf '%s\n' '# Generated from podcreds.rules.yaml by `make monitoring-sync`: edit that file.' \
	    'apiVersion: monitoring.coreos.com/v1' 'kind: PrometheusRule' 'metadata:' '  name: podcreds' \
	    '  namespace: podcreds-system' '  labels:' '    app.kubernetes.io/name: podcreds' 'spec:'; \
	  sed -n '/^groups:/,$$p' $(RULES) | sed 's/^/  /'; } > deploy/monitoring/prometheusrule.yaml

clean: ## remove build output (keeps the tool cache)
	rm -rf bin

clean-tools: ## remove the tool cache
	rm -rf $(TOOLS_DIR)
