#!/usr/bin/env bash
# Install kanary into the local cluster and run the operator as a process in its netns, as its
# own ServiceAccount (so manifests/rbac.yaml is what it can do). Idempotent.
#   CRD (crds/), namespace + RBAC (manifests/), a token of kanary-system/kanary, `kanary run`.
# Pid: $KANARY_STATE/pids/kanary-operator.pid (hack/cluster/down.sh stops it with the rest).
# Log: $KANARY_STATE/logs/kanary-operator.log
set -euo pipefail
# shellcheck source=cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/cluster/lib.sh"

kc() { in_netns "${KUBECTL}" --kubeconfig "${KUBECONFIG_PATH}" --request-timeout=20s "$@"; }
OP_KUBECONFIG="${KANARY_STATE}/operator.kubeconfig"
OP_PID="$(pid_file kanary-operator)"
OP_LOG="${LOG_DIR}/kanary-operator.log"
LIVENESS_PORT="${KANARY_OPERATOR_LIVENESS_PORT:-18180}"
METRICS_PORT="${KANARY_OPERATOR_METRICS_PORT:-18181}"

[[ -f "${KUBECONFIG_PATH}" ]] || die "the cluster is not up: run make cluster-up first"
kc apply --server-side --force-conflicts -f "${REPO_ROOT}/crds" >/dev/null
kc apply -f "${REPO_ROOT}/manifests/namespace.yaml" -f "${REPO_ROOT}/manifests/rbac.yaml" >/dev/null
# Polled: `kubectl wait` fails at once while a new CRD has no status.conditions yet.
for _ in $(seq 1 60); do
  established=$(kc get crd rollouts.kanary.dev \
    -o jsonpath='{.status.conditions[?(@.type=="Established")].status}')
  [[ "${established}" == True ]] && break
  sleep 0.5
done
[[ "${established}" == True ]] || die "CRD rollouts.kanary.dev not Established after 30s"
log "CRD, namespace and RBAC applied"

OP_BIN="${REPO_ROOT}/.venv/bin/kanary"
if pid="$(component_pid kanary-operator)"; then
  log "operator already running (pid ${pid})"
  exit 0
fi

token=$(kc create token kanary -n kanary-system --duration=24h)
server=$(in_netns "${KUBECTL}" --kubeconfig "${KUBECONFIG_PATH}" config view --raw \
  -o jsonpath='{.clusters[0].cluster.server}')
ca=$(in_netns "${KUBECTL}" --kubeconfig "${KUBECONFIG_PATH}" config view --raw \
  -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
umask 077
cat > "${OP_KUBECONFIG}" <<YAML
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "${server}", certificate-authority-data: "${ca}"}}]
users: [{name: kanary, user: {token: "${token}"}}]
contexts: [{name: kanary, context: {cluster: local, user: kanary}}]
current-context: kanary
YAML

mkdir -p "${LOG_DIR}" "${PID_DIR}"
# PYTHONMALLOC, MALLOC_ARENA_MAX: as the image sets them (operator/kanary/memtrim.py)
KUBECONFIG="${OP_KUBECONFIG}" PYTHONMALLOC=malloc MALLOC_ARENA_MAX=2 nohup ip netns exec "${KANARY_NETNS}" \
  "${OP_BIN}" run \
  --liveness "http://127.0.0.1:${LIVENESS_PORT}/healthz" --metrics-port "${METRICS_PORT}" \
  --prometheus-url "${KANARY_PROMETHEUS_URL:-http://127.0.0.1:9090}" \
  >>"${OP_LOG}" 2>&1 &
echo $! > "${OP_PID}"
echo "${OP_BIN}" > "${PID_DIR}/kanary-operator.bin"  # down.sh checks the pid still runs this
for _ in $(seq 1 120); do
  if in_netns curl -sf "http://127.0.0.1:${LIVENESS_PORT}/healthz" >/dev/null 2>&1; then
    log "operator running as ServiceAccount kanary-system/kanary (pid $(cat "${OP_PID}"), log ${OP_LOG})"
    exit 0
  fi
  kill -0 "$(cat "${OP_PID}")" 2>/dev/null || { tail -n 40 "${OP_LOG}" >&2; die "operator exited"; }
  sleep 0.5
done
tail -n 40 "${OP_LOG}" >&2
die "operator not live after 60s"
