# kanary developer entry points. Scripts do the work; this file only names them.
SHELL := /bin/bash
export KANARY_CACHE ?= $(HOME)/.cache/kanary
PY := .venv/bin/python

.PHONY: help install lint unit gotest scan integration test cluster-build cluster-up node-install images cluster-down dataplane-install dataplane-build dataplane-up app app-image demo crds operator-up kind-up kind-demo

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

install: ## python venv with kanary and dev tools (.venv)
	hack/install-python.sh

crds: install ## regenerate crds/ from the pydantic models
	$(PY) -m kanary.crdgen --write crds/

lint: install ## ruff + mypy --strict + gofmt/vet + hadolint (both Dockerfiles) + actionlint
	.venv/bin/ruff check operator tests hack
	.venv/bin/mypy --strict operator/kanary hack/demo.py hack/dataplane/runner.py hack/dataplane/load.py hack/dataplane/prometheus_config.py hack/scan/report.py hack/scan/vulndb.py hack/release/sbom_debs.py
	$(MAKE) -C app lint
	cd hack/images && out=$$(gofmt -l .) && [ -z "$$out" ] || { echo "gofmt needed: $$out" >&2; exit 1; }
	cd hack/images && GOTOOLCHAIN=local go vet ./...
	$$(command -v hadolint || echo app/bin/hadolint-venv/bin/hadolint) Dockerfile
	hack/actionlint.sh

unit: install ## fast, pure tests
	$(PY) -m pytest -q tests/unit

gotest: ## go test for the Gin service and the image builder (hack/images)
	$(MAKE) -C app test
	cd hack/images && GOTOOLCHAIN=local go test -count=1 ./...

scan: install ## vulnerability gate: govulncheck (binary + source) on the Gin service against a pinned vulndb; pip-audit with KANARY_SCAN_ONLINE=1; fails on a reachable vulnerability outside hack/scan/allowlist.yaml
	hack/scan/scan.sh

cluster-build: ## build the local cluster's binaries (cached in $KANARY_CACHE)
	hack/cluster/build.sh

cluster-up: install cluster-build dataplane-install dataplane-build app images ## the local cluster: control plane, a real node (kubelet, containerd), kwok nodes, data plane, in netns kanary
	hack/cluster/up.sh
	hack/cluster/node-up.sh
	hack/dataplane/up.sh

node-install: ## Debian's containerd, runc, CNI plugins, iptables, conntrack (pinned; root)
	hack/cluster/node-install.sh

images: node-install app cluster-build dataplane-build ## daemonless images (pause, Gin demo, Traefik, Prometheus, operator) in $KANARY_CACHE/images
	hack/images/build.sh

cluster-down: ## stop the local cluster, its data plane and the operator; remove its namespace
	hack/cluster/down.sh

dataplane-install: ## Debian's Alertmanager (prometheus-alertmanager, pinned; root; its system service stays off)
	hack/dataplane/install.sh

dataplane-build: ## build Traefik and Prometheus (with Kubernetes SD) from source (cached)
	hack/dataplane/build.sh

dataplane-up: install dataplane-install dataplane-build app ## Traefik, Alertmanager, Prometheus and the pod runner in the local cluster
	hack/dataplane/up.sh

operator-up: ## install kanary (CRD, RBAC) and run the operator in the local cluster's netns
	hack/operator-up.sh

demo: ## the whole story on the local cluster: v1, v2 promoted, v3 rolled back
	hack/demo.sh

app: ## build the static Gin binary into app/bin/
	$(MAKE) -C app build

app-image: ## build the OCI image tarball of the Gin service without a daemon
	$(MAKE) -C app image

KIND_KUBECONFIG ?= $(KANARY_CACHE)/kind/kubeconfig
kind-up: ## with Docker + kind: cluster from kind-config.yaml, Traefik, Prometheus, images, kanary
	KIND_KUBECONFIG=$(KIND_KUBECONFIG) hack/kind-up.sh

kind-demo: install ## the demo on kind (after kind-up); load through the Gateway at 127.0.0.1:8000
	$(PY) hack/demo.py --kubeconfig $(KIND_KUBECONFIG)

integration: install cluster-build dataplane-install dataplane-build app images ## integration + e2e tests on the local cluster
	# the scan gate fetches a vulnerable module version from the Go module proxy: outside the
	# cluster's network namespace, which has no route out (a cold module cache failed there)
	$(PY) -m pytest -q -rs tests/integration/test_scan_gate.py
	hack/cluster/exec.sh $(PY) -m pytest -q -rs --ignore=tests/integration/test_scan_gate.py tests/integration tests/e2e

test: lint unit gotest scan integration ## everything CI runs
