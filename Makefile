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

ETCD := $(TOOLS_DIR)/etcd-$(ETCD_VERSION)/etcd
KUBE_APISERVER := $(TOOLS_DIR)/kube-apiserver-$(KUBE_VERSION)/kube-apiserver
MINIO := $(TOOLS_DIR)/minio-$(MINIO_VERSION)/minio
STATICCHECK := $(TOOLS_DIR)/staticcheck-$(STATICCHECK_VERSION)/staticcheck

TEST_TIMEOUT ?= 30m
FUZZTIME ?= 60s

.PHONY: all build tools test unit lint vet fmt-check bench bench-scale demo demo-any-cluster fuzz clean clean-tools help e2e e2e-root e2e-deps compat-readme

all: build

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

# Built as the image builds it: static (no libc mapped in), no symbol tables.
# bench/scale builds its agent (and its memory floors, BUILD_PKG=./bench/scale/floor
# with BUILD_TAGS naming the libraries a variant leaves out) through this
# target, so it measures what ships.
PODCREDS_BIN ?= bin/podcreds
BUILD_PKG ?= ./cmd/podcreds
BUILD_TAGS ?=
build: ## build bin/podcreds
	CGO_ENABLED=0 $(GO) build -trimpath -tags "$(BUILD_TAGS)" -ldflags "-s -w" -o $(PODCREDS_BIN) $(BUILD_PKG)

# Each tool is a file target named by its version: a pinned version that is
# already built is never rebuilt, and bumping a pin builds the new one beside it.
tools: $(ETCD) $(KUBE_APISERVER) $(MINIO) ## build etcd, kube-apiserver and minio (pinned, cached)
	@mkdir -p $(TOOLS_BIN)
	@ln -sf $(ETCD) $(TOOLS_BIN)/etcd
	@ln -sf $(KUBE_APISERVER) $(TOOLS_BIN)/kube-apiserver
	@ln -sf $(MINIO) $(TOOLS_BIN)/minio
	@echo "tools ready in $(TOOLS_BIN): etcd $(ETCD_VERSION), kube-apiserver $(KUBE_VERSION), minio $(MINIO_VERSION)"

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

test: tools e2e-deps ## every test: unit, integration on a real control plane, fuzz seed corpora, then e2e (as root)
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

unit: ## only the tests that need no real control plane
	$(GO) test -race -count=1 -short ./...

demo: build tools ## bring up the control plane and MinIO, run the agent and an unmodified SDK client
	$(GO) build -o bin/s3client ./examples/s3client
	$(GO) run ./hack/demo --agent=bin/podcreds --client=bin/s3client

demo-any-cluster: build tools ## a self-managed cluster: publish its issuer (podcreds issuer publish --once), podcreds doctor, then credentials
	$(GO) build -o bin/s3client ./examples/s3client
	$(GO) run ./hack/demo --any-cluster --agent=bin/podcreds --client=bin/s3client

bench: build tools ## hot path vs a bare net/http server (interleaved), plus handler and cache micro-benchmarks
	$(GO) build -o bin/hotpath ./bench/hotpath
	bin/hotpath -agent bin/podcreds
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./agent/ ./cache/
	$(GO) run ./bench/scale -agent bin/podcreds

bench-scale: build tools ## storm, churn, soak and memory at scale (about 5 min; part of bench)
	$(GO) run ./bench/scale -agent bin/podcreds

# Every fuzz target, FUZZTIME each. Their seed corpora also run in `make test`.
fuzz: ## run each fuzz target for FUZZTIME (default 60s)
	@for pkg in $$($(GO) list ./...); do \
	  for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo ">> $$pkg $$target"; \
	    $(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean: ## remove build output (keeps the tool cache)
	rm -rf bin

clean-tools: ## remove the tool cache
	rm -rf $(TOOLS_DIR)
