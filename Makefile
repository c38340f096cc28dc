# apiwarden's build. `make test` is what CI runs; `make run-local` starts a
# local control plane with apiwarden in it. Every tool comes from the Go module
# proxy at the versions pinned in go.mod (controller-gen through `go tool`) or
# in hack/envtest/*/go.mod (kube-apiserver and etcd for envtest).

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

GO ?= go
CONTROLLER_GEN := $(GO) tool controller-gen
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/apiwarden/apiwarden/internal/version.Version=$(VERSION)
GO_TEST_FLAGS ?= -count=1 -timeout 20m

.PHONY: egctl kustomize helm traefik help
help: ## Show the targets.
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

##@ Code generation

.PHONY: generate
generate: ## Generate DeepCopy methods for the API types.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...

.PHONY: manifests
manifests: ## Generate the CRDs (config/crd/bases) and RBAC (config/rbac/role.yaml, config/rbac/authz/, config/rbac/policyreport-crd-installer/) from markers, and copy them into the Helm chart.
	$(CONTROLLER_GEN) crd rbac:roleName=manager \
		paths=./api/... paths=./controllers/... paths=./webhooks/... paths=./internal/authz/... paths=./cmd/... \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	$(CONTROLLER_GEN) rbac:roleName=authz paths=./internal/authz/... paths=./cmd/manager/... \
		output:rbac:artifacts:config=config/rbac/authz
	$(CONTROLLER_GEN) rbac:roleName=policyreport-crd-installer paths=./internal/policyreport/... \
		output:rbac:artifacts:config=config/rbac/policyreport-crd-installer
	@$(MAKE) --no-print-directory chart-crds

PROMETHEUS_OPERATOR_VERSION := v0.85.0
.PHONY: monitoring-crds
monitoring-crds: ## Refresh the ServiceMonitor and PrometheusRule CRDs the chart's tests install, from the pinned prometheus-operator module.
	@dir="$$(cd "$$(mktemp -d)" && $(GO) mod init tmp >/dev/null 2>&1 && \
		$(GO) mod download -json github.com/prometheus-operator/prometheus-operator@$(PROMETHEUS_OPERATOR_VERSION) | sed -n 's/.*"Dir": "\(.*\)",/\1/p')"; \
	for kind in servicemonitors prometheusrules; do \
	  { echo "# Copied from github.com/prometheus-operator/prometheus-operator $(PROMETHEUS_OPERATOR_VERSION),"; \
	    echo "# example/prometheus-operator-crd/ (Apache-2.0), by 'make monitoring-crds'. Do not edit."; \
	    cat "$$dir/example/prometheus-operator-crd/monitoring.coreos.com_$$kind.yaml"; } > test/crds/monitoring.coreos.com_$$kind.yaml; \
	done

KYVERNO_VERSION := v1.19.1
.PHONY: policyreport-crd
policyreport-crd: ## Refresh the embedded PolicyReport CRD from the pinned Kyverno module.
	@dir="$$(cd "$$(mktemp -d)" && $(GO) mod init tmp >/dev/null 2>&1 && \
		$(GO) mod download -json github.com/kyverno/kyverno@$(KYVERNO_VERSION) | sed -n 's/.*"Dir": "\(.*\)",/\1/p')"; \
	{ echo "# Copied from github.com/kyverno/kyverno $(KYVERNO_VERSION), config/crds/policyreport/ (Apache-2.0),"; \
	  echo "# by 'make policyreport-crd'. Do not edit."; \
	  cat "$$dir/config/crds/policyreport/wgpolicyk8s.io_policyreports.yaml"; } > internal/policyreport/crds/wgpolicyk8s.io_policyreports.yaml

##@ Checks

.PHONY: fmt
fmt: ## Format the Go code.
	$(GO) fmt ./...

.PHONY: verify
verify: verify-fmt vet verify-tidy verify-generated ## Every static check CI runs.

.PHONY: verify-fmt
verify-fmt:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [[ -n "$$out" ]]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

.PHONY: vet
vet:
	$(GO) vet ./...

.PHONY: verify-tidy
verify-tidy:
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }

.PHONY: verify-generated
verify-generated: generate manifests ## Fail when generated files are stale.
	@if [[ -n "$$(git status --porcelain -- api config charts)" ]]; then \
		echo "Generated files are stale; run 'make generate manifests' and commit:"; \
		git status --porcelain -- api config charts; git diff --stat -- api config charts; exit 1; fi

##@ Test

.PHONY: envtest
envtest: ## Provide the kube-apiserver and etcd binaries (cache, setup-envtest, or a build).
	@bash hack/envtest-assets.sh >/dev/null

.PHONY: test
egctl: ## Provide Envoy Gateway's egctl (cache, or a build from the Go module proxy), for the renderer's peer check.
	@bash hack/egctl.sh >/dev/null

traefik: ## Provide Traefik Proxy (cache, or a build from the Go module proxy pinned in hack/traefik/go.mod), for the end-to-end traffic tests.
	@bash hack/traefik.sh >/dev/null

test: verify envtest egctl kustomize helm traefik ## Static checks, unit tests, envtest suites against a real kube-apiserver, egctl's peer check, and traffic through Traefik.
	KUBEBUILDER_ASSETS="$$(bash hack/envtest-assets.sh 2>/dev/null)" EGCTL="$$(bash hack/egctl.sh 2>/dev/null)" \
	KUSTOMIZE="$$(bash hack/kustomize.sh 2>/dev/null)" HELM="$$(bash hack/helm.sh 2>/dev/null)" \
	TRAEFIK="$$(bash hack/traefik.sh 2>/dev/null)" $(GO) test $(GO_TEST_FLAGS) ./...

kustomize: ## Provide kustomize (cache, or a build from the Go module proxy pinned in hack/kustomize/go.mod).
	@bash hack/kustomize.sh >/dev/null

helm: ## Provide Helm (cache, or a build from the Go module proxy pinned in hack/helm/go.mod; minutes, once).
	@bash hack/helm.sh >/dev/null

##@ Build and run

.PHONY: build
build: ## Build the manager and the CLI into bin/.
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/manager ./cmd/manager
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/apiwarden ./cmd/apiwarden
	cp bin/apiwarden bin/kubectl-apiwarden  # kubectl apiwarden coverage

.PHONY: run-local
run-local: build envtest ## Run a local control plane with apiwarden; Ctrl-C stops everything.
	$(GO) run ./hack/run-local --manager bin/manager

.PHONY: demo
demo: build envtest ## The whole story on a local control plane in about a minute and a half; KEEP=1 leaves it running.
	$(GO) run ./hack/demo --manager bin/manager $(if $(KEEP),--keep)

.PHONY: clean
clean: ## Remove build output (not the envtest cache, nor .run-local).
	rm -rf bin dist

##@ Install

# IMG, when set (make install-manifest IMG=registry.example.com/apiwarden:v0.1.0),
# replaces the manager's image through a kustomize overlay made in dist/.
IMG ?=
.PHONY: install-manifest
install-manifest: kustomize ## Render config/default into dist/install.yaml, one file for kubectl apply -f (IMG=repo:tag sets the image).
	@mkdir -p dist/overlay
	@{ echo "apiVersion: kustomize.config.k8s.io/v1beta1"; echo "kind: Kustomization"; \
	  echo "resources: [../../config/default]"; \
	  img="$(IMG)"; name="$${img%:*}"; tag="$${img##*:}"; \
	  if [[ "$$name" == "$$img" || "$$tag" == */* ]]; then name="$$img"; tag=latest; fi; \
	  if [[ -n "$$img" ]]; then echo "images: [{name: ghcr.io/apiwarden/apiwarden, newName: \"$$name\", newTag: \"$$tag\"}]"; fi; \
	} > dist/overlay/kustomization.yaml
	{ echo "# apiwarden $(VERSION): kubectl apply --server-side -f install.yaml (needs cert-manager; see docs/install.md)."; \
	  echo "# Rendered from config/default by 'make install-manifest'; do not edit."; \
	  "$$(bash hack/kustomize.sh 2>/dev/null)" build dist/overlay; } > dist/install.yaml.tmp
	mv dist/install.yaml.tmp dist/install.yaml
	@echo "wrote dist/install.yaml"

.PHONY: chart-crds chart-docs chart-lint
chart-crds: ## Copy the generated CRDs, ClusterRole and webhook configuration into the Helm chart (test/install fails when stale).
	@rm -f charts/apiwarden/crds/*.yaml
	@cp config/crd/bases/*.yaml charts/apiwarden/crds/
	@cp config/rbac/role.yaml charts/apiwarden/files/manager-role.yaml
	@cp config/rbac/authz/role.yaml charts/apiwarden/files/authz-role.yaml
	@cp config/rbac/policyreport-crd-installer/role.yaml charts/apiwarden/files/policyreport-crd-installer-role.yaml
	@cp config/webhook/manifests.yaml charts/apiwarden/files/webhooks.yaml
	@cp config/monitoring/alerts.yaml charts/apiwarden/files/alerts.yaml

chart-docs: ## Generate charts/apiwarden/README.md from the comments in values.yaml.
	$(GO) run ./hack/chart-docs

chart-lint: helm ## Lint the Helm chart with the pinned helm.
	"$$(bash hack/helm.sh 2>/dev/null)" lint charts/apiwarden --strict --kube-version 1.37.2

# IMAGE_ARCH is the image's architecture (GOARCH): make image IMAGE_ARCH=arm64.
IMAGE_ARCH ?= $(shell $(GO) env GOARCH)
.PHONY: image
image: ## Build the manager's OCI image (static, non-root, no Docker) into dist/image (OCI layout) and dist/apiwarden-image.tar (oci-archive).
	$(GO) run ./hack/image --arch $(IMAGE_ARCH) --version $(VERSION) --revision "$$(git rev-parse HEAD 2>/dev/null || true)" \
		--ldflags "-s -w $(LDFLAGS)" --layout dist/image --out dist/apiwarden-image.tar
