#!/usr/bin/env bash
# Install kanary on the local cluster the way README's "On kind or a real cluster" does, with
# the same manifests, as pods on the real node (after up.sh and node-up.sh):
#   Gateway API CRDs (up.sh) -> Traefik (manifests/traefik) -> Prometheus (manifests/prometheus)
#   -> kanary CRD, namespace, RBAC, operator (manifests/) -> the Gateway (manifests/gateway)
# The images are the ones hack/images/build.sh built and node-up.sh imported (nothing is
# pulled). The Gateway answers on the node's hostPort: http://${NODE_IP}:8000 in the netns.
# Idempotent. Not together with hack/dataplane/up.sh or a kanary operator process on the same
# cluster: two Traefiks would program one Gateway, two operators act on every Rollout.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "${REPO_ROOT}"

START=$SECONDS
WAIT_TIMEOUT="${KANARY_WAIT_TIMEOUT:-180}"
WATCH=(kube-apiserver kubelet containerd)
kc() { in_netns "${KUBECTL}" --kubeconfig "${KUBECONFIG_PATH}" --request-timeout=30s "$@"; }

[[ ${EUID} -eq 0 ]] || die "needs root (ip netns); run as root"
kc get --raw /readyz >/dev/null 2>&1 || die "the cluster is not up: run hack/cluster/up.sh first"
component_pid kubelet >/dev/null || die "the real node is not up: run hack/cluster/node-up.sh first"
for p in traefik prometheus pod-runner kanary-operator; do
  if component_pid "${p}" >/dev/null 2>&1; then
    die "${p} runs as a process on this cluster (hack/dataplane/up.sh, hack/operator-up.sh): stop it (make cluster-down) or use another KANARY_NETNS/KANARY_STATE"
  fi
done

log "Traefik (manifests/traefik) and Prometheus (manifests/prometheus)"
kc apply -k manifests/traefik >/dev/null
kc apply -k manifests/prometheus >/dev/null
log "kanary: CRD, namespace, RBAC, operator (manifests/)"
kc apply --server-side --force-conflicts --field-manager=kanary-install -f crds/ >/dev/null
# Not `kubectl wait --for=condition=Established`: right after the apply the CRD's
# status.conditions can still be null, and kubectl 1.34 then fails at once (CI: ".status.conditions
# accessor error: <nil> is of the type <nil>") instead of waiting.
established() {
  local crd
  for crd in rollouts.kanary.dev alertproviders.kanary.dev; do
    [[ "$(kc get crd "${crd}" -o jsonpath='{.status.conditions[?(@.type=="Established")].status}')" == True ]] \
      || return 1
  done
}
wait_for "CRDs Established" established
kc apply -f manifests/namespace.yaml -f manifests/rbac.yaml -f manifests/operator.yaml >/dev/null
kc apply -f manifests/gateway/ >/dev/null

rolled_out() { kc -n "$1" rollout status "deployment/$2" --timeout=2s; }
wait_for "Traefik pod Ready" rolled_out traefik traefik
wait_for "Prometheus pod Ready" rolled_out monitoring prometheus
wait_for "kanary operator pod Ready" rolled_out kanary-system kanary
programmed() {
  [[ "$(kc -n kanary-system get gateway kanary-gateway \
    -o jsonpath='{.status.conditions[?(@.type=="Programmed")].status}')" == True ]]
}
wait_for "Gateway kanary-system/kanary-gateway Programmed" programmed
gateway_answers() { in_netns curl -s --max-time 2 -o /dev/null "http://${NODE_IP}:8000/"; }
wait_for "Gateway answering on ${NODE_IP}:8000 (hostPort)" gateway_answers
log "kanary installed in-cluster in $((SECONDS - START))s"
