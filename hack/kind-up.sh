#!/usr/bin/env bash
# make kind-up: kanary on a kind cluster (Docker), the same pieces as the local cluster's demo.
#   kind cluster (kind-config.yaml) -> Gateway API CRDs -> Traefik -> Prometheus
#   -> images (Gin demo v1..v3, operator) -> kanary CRD, RBAC, operator -> Gateway
# Idempotent: an existing cluster is reused and everything is re-applied.
# Needs docker, kind, kubectl and go on PATH, and what hack/images/build.sh needs for the
# operator image (root or sudo, apt-get + dpkg-deb, Debian's archive keyring, python3 + pip).
# Writes the cluster's kubeconfig to ${KIND_KUBECONFIG:-${KANARY_CACHE}/kind/kubeconfig}
# (your ~/.kube/config is left alone).
#
# Never run on the development machine (no Docker there). Every manifest applied below is
# dry-run against a real API server by tests/integration/test_kind_manifests.py.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=cluster/lib.sh
source "$(dirname "$0")/cluster/lib.sh"   # GATEWAY_API_VERSION, go_module_dir, log, die
cd "${REPO_ROOT}"

KIND_CLUSTER="${KIND_CLUSTER:-kanary}"
KIND_KUBECONFIG="${KIND_KUBECONFIG:-${KANARY_CACHE}/kind/kubeconfig}"
OPERATOR_IMAGE="kanary/operator:0.1.0"   # manifests/operator.yaml
DEMO_VERSIONS=(v1 v2 v3)                 # the tags hack/demo.py rolls out

for tool in docker kind kubectl go; do
  command -v "${tool}" >/dev/null || die "${tool} not found on PATH"
done
kc() { kubectl --kubeconfig "${KIND_KUBECONFIG}" "$@"; }
# Polled: `kubectl wait` fails at once while a new CRD has no status.conditions yet.
wait_established() {
  local crd state
  for crd in "$@"; do
    for _ in $(seq 1 120); do
      state=$(kc get crd "${crd}" -o jsonpath='{.status.conditions[?(@.type=="Established")].status}')
      [[ "${state}" == True ]] && break
      sleep 0.5
    done
    [[ "${state}" == True ]] || die "CRD ${crd} not Established after 60s"
  done
}

log "kind cluster ${KIND_CLUSTER}"
if ! kind get clusters 2>/dev/null | grep -qx "${KIND_CLUSTER}"; then
  kind create cluster --name "${KIND_CLUSTER}" --config kind-config.yaml --wait 120s
fi
mkdir -p "$(dirname "${KIND_KUBECONFIG}")"
kind get kubeconfig --name "${KIND_CLUSTER}" > "${KIND_KUBECONFIG}"

log "Gateway API ${GATEWAY_API_VERSION} standard CRDs (Go module cache)"
GW_MOD="$(go_module_dir "sigs.k8s.io/gateway-api@${GATEWAY_API_VERSION}")"
[[ -d "${GW_MOD}/config/crd/standard" ]] || die "no gateway-api ${GATEWAY_API_VERSION} in the Go module cache"
kc apply --server-side -f "${GW_MOD}/config/crd/standard/"
wait_established gatewayclasses.gateway.networking.k8s.io gateways.gateway.networking.k8s.io \
  httproutes.gateway.networking.k8s.io

log "Traefik (manifests/traefik) and Prometheus (manifests/prometheus)"
kc apply -k manifests/traefik
kc apply -k manifests/prometheus

log "images: Gin demo ${DEMO_VERSIONS[*]}, operator ${OPERATOR_IMAGE} (daemonless tarballs, signed)"
# hack/images/build.sh builds, SBOMs and signs them (the operator's build chroots: root);
# hack/release/verify.sh refuses a tarball whose signature does not verify before kind loads it.
images=("${DEMO_VERSIONS[@]/#/gin-demo-}" operator)
if (( EUID == 0 )); then
  hack/images/build.sh "${images[@]}"
else
  sudo env "PATH=${PATH}" "KANARY_CACHE=${KANARY_CACHE}" hack/images/build.sh "${images[@]}"
fi
tars=()
for i in "${images[@]}"; do tars+=("${KANARY_CACHE}/images/${i}.tar"); done
hack/release/verify.sh "${tars[@]}" || die "refusing to load images whose signature does not verify (above)"
for t in "${tars[@]}"; do kind load image-archive "${t}" --name "${KIND_CLUSTER}"; done

log "kanary: CRD, namespace, RBAC, operator; the Gateway"
kc apply --server-side --force-conflicts -f crds/
wait_established rollouts.kanary.dev
kc apply -f manifests/namespace.yaml -f manifests/rbac.yaml -f manifests/operator.yaml
kc apply -f manifests/gateway/

log "waiting for Traefik, Prometheus, the operator and the Gateway"
kc -n traefik rollout status deployment/traefik --timeout=180s
kc -n monitoring rollout status deployment/prometheus --timeout=180s
kc -n kanary-system rollout status deployment/kanary --timeout=180s
kc -n kanary-system wait --for=condition=Programmed gateway/kanary-gateway --timeout=120s

log "ready. KUBECONFIG=${KIND_KUBECONFIG}; Gateway on http://127.0.0.1:8000; next: make kind-demo"
