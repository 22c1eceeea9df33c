# kvgitops — run KubeVirt's lifecycle from Git.
# `make` lists the targets. Everything a target needs is installed or built
# by the target itself (apt packages, the test control plane).

SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)
LDFLAGS   := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
BIN       := bin/kvgitops
FUZZTIME  ?= 30s
BENCH_SIZES ?= small,medium,large,refs100k
KUBE_VERSION ?= 1.37.2
TESTBIN_DIR  ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/kvgitops/testbin/$(KUBE_VERSION)
export KUBEBUILDER_ASSETS := $(TESTBIN_DIR)
export GIT_CONFIG_NOSYSTEM := 1
IMAGE     ?= ghcr.io/kvgitops/kvgitops:$(VERSION)

FUZZ_TARGETS := ./planner:FuzzParseDesired ./planner:FuzzCatalog ./planner:FuzzCompute \
                ./release:FuzzManifest ./agent:FuzzStatusRoundTrip

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build bin/kvgitops
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/kvgitops

.PHONY: deps
deps: ## install git, openssh-server, iproute2 and unshare with apt when missing
	@if ! command -v git >/dev/null || ! [ -x /usr/sbin/sshd ] || ! command -v ssh-keygen >/dev/null || ! command -v ip >/dev/null || ! command -v unshare >/dev/null; then \
	  echo "deps: installing git, openssh-server, iproute2 and util-linux with apt"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq git openssh-server openssh-client iproute2 util-linux >/dev/null; \
	fi

.PHONY: testbin
testbin: ## build kube-apiserver and etcd from the Go module proxy into the cache (idempotent)
	@KUBE_VERSION=$(KUBE_VERSION) TESTBIN_DIR=$(TESTBIN_DIR) hack/testbin.sh >/dev/null

.PHONY: operators
operators: ## build KubeVirt's virt-operator for the lane's releases from the Go module proxy (idempotent)
	@hack/virt-operator.sh >/dev/null

.PHONY: test
test: deps testbin operators node kubevirt ## run every test: unit, real apiserver, real git server, real virt-operator, a real node, end-to-end (what CI runs)
	@KVGITOPS_NODE_DIR=$$(KUBE_VERSION=$(KUBE_VERSION) hack/node.sh) PROMTOOL=$$(GO=$(GO) hack/tools.sh)/promtool GO=$(GO) hack/test.sh

.PHONY: lane
lane: deps testbin operators ## the real virt-operator lane alone
	$(GO) test -count=1 -timeout 15m -v ./test/lane/...

.PHONY: node
node: ## build a real node's binaries (kubelet, controller-manager, scheduler, kube-proxy) and install containerd, runc, CNI (idempotent)
	@KUBE_VERSION=$(KUBE_VERSION) hack/node.sh >/dev/null

.PHONY: kubevirt
kubevirt: operators ## build KubeVirt's own components (virt-api, -controller, -handler, -launcher) and the launcher's root filesystem for the real node (idempotent)
	@hack/kubevirt.sh >/dev/null

.PHONY: node-lane
node-lane: deps testbin node kubevirt ## the real nodes alone: clusters in their own namespaces run a restricted pod, kvgitops from deploy/ and KubeVirt with VMs live-migrated across two nodes (root)
	KVGITOPS_NODE_DIR=$$(KUBE_VERSION=$(KUBE_VERSION) hack/node.sh) $(GO) test -tags realnode -count=1 -timeout 25m -v ./test/cluster/...

.PHONY: test-unit
test-unit: ## fast tests only (-short: no control plane, no lane, no end-to-end)
	$(GO) test -short ./...

.PHONY: e2e
e2e: deps testbin ## end-to-end tests of the built binary
	$(GO) test -count=1 -timeout 15m ./test/e2e/...

.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME (default 30s)
	@for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; \
	  echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
	  $(GO) test $$pkg -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME); done

.PHONY: bench
bench: deps testbin ## run the benchmarks and write the figures to docs/benchmarks.md (about 5 minutes)
	@GO=$(GO) BENCH_SIZES=$(BENCH_SIZES) hack/bench.sh

.PHONY: demo
demo: deps testbin ## the whole story on an embedded default: install, upgrade hop by hop, teardown
	$(GO) run ./test/demo

.PHONY: fmt
fmt: ## gofmt the tree
	gofmt -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## go vet (the realnode package too)
	$(GO) vet ./...
	$(GO) vet -tags realnode ./test/cluster/...

.PHONY: lint
lint: vet ## gofmt check, go vet, staticcheck, exhaustive switches, complexity (product ≤ 15, test ground ≤ 25)
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "lint: gofmt needed (make fmt): $$out"; exit 1; }
	@tools=$$(GO=$(GO) hack/tools.sh); \
	  $$tools/staticcheck ./... && $$tools/staticcheck -tags realnode ./test/cluster/... && \
	  $$tools/exhaustive -d ./... && \
	  { over=$$($$tools/gocyclo -over 15 -ignore '_test.go$$|^test/|^hack/' . || true; $$tools/gocyclo -over 25 test || true); \
	    [ -z "$$over" ] || { echo "lint: too complex (split it):"; echo "$$over"; exit 1; }; }

.PHONY: verify
verify: lint ## lint, then fail if go mod tidy changes anything (CI runs this before make test)
	$(GO) mod tidy
	@git diff --exit-code -- go.mod go.sum || { echo "verify: go.mod/go.sum are not tidy (run go mod tidy)"; exit 1; }

.PHONY: release release-key
RELEASE_KEY ?=
release: ## a signed release in dist/$(VERSION): images for linux/amd64, arm64, s390x (one OCI index), SBOMs, signatures (needs a vX.Y.Z tag and RELEASE_KEY)
	@for arch in amd64 arm64 s390x; do \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/kvgitops-linux-$$arch ./cmd/kvgitops || exit 1; done
	$(GO) run ./hack/release -version $(VERSION) -key "$(RELEASE_KEY)" -o dist/$(VERSION) \
	  -binary linux/amd64=dist/kvgitops-linux-amd64 -binary linux/arm64=dist/kvgitops-linux-arm64 -binary linux/s390x=dist/kvgitops-linux-s390x

release-key: ## write a new signing key pair (cosign.key, cosign.key.pub) for make release
	$(GO) run ./hack/release -genkey cosign.key

.PHONY: image
image: ## build an OCI image tarball (dist/kvgitops.tar) without a Docker engine
	CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/kvgitops-linux-amd64 ./cmd/kvgitops
	$(GO) run ./hack/image -binary dist/kvgitops-linux-amd64 -tag $(IMAGE) -version $(VERSION) -o dist/kvgitops.tar

.PHONY: deploy
deploy: ## apply deploy/ to the cluster in KUBECONFIG (kubectl with kustomize)
	kubectl apply -k deploy/

.PHONY: clean
clean: ## remove build outputs (not the testbin cache)
	rm -rf bin dist
