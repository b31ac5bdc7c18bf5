#!/usr/bin/env bash
# Start only the data plane's Alertmanager (127.0.0.1:9093 and the node IP 10.243.0.1:9093 in
# the cluster's netns) and make it Service monitoring/alertmanager (no selector: a process on
# the node address, like CoreDNS), so pods reach it as http://alertmanager.monitoring.svc:9093.
# make demo uses it: the in-cluster operator's alerts go there (manifests/alerting/oncall.yaml).
# hack/dataplane/up.sh starts it too, with the rest of the process data plane. Idempotent.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

START=$SECONDS
WAIT_TIMEOUT="${KANARY_WAIT_TIMEOUT:-60}"
WATCH=(alertmanager)

[[ ${EUID} -eq 0 ]] || die "needs root (ip netns); run as root"
[[ -x "${BIN_ALERTMANAGER}" ]] \
  || die "missing ${BIN_ALERTMANAGER}: run 'make dataplane-install' (hack/dataplane/install.sh) first"
netns_exists || die "network namespace ${KANARY_NETNS} missing: run hack/cluster/up.sh first"
kc() { in_netns "${KUBECTL}" --kubeconfig "${KUBECONFIG_PATH}" --request-timeout=10s "$@"; }
kc get --raw /readyz >/dev/null 2>&1 || die "the cluster is not up: run hack/cluster/up.sh first"

lock_state
mkdir -p "${DATAPLANE_STATE}" "${PID_DIR}" "${LOG_DIR}"
alertmanager_start
alertmanager_wait
kc create namespace monitoring --dry-run=client -o yaml | kc apply -f - >/dev/null
sed -e "s/@NODE_IP@/${NODE_IP}/g" -e "s/@PORT@/${ALERTMANAGER_PORT}/g" \
  "${HACK_DATAPLANE_DIR}/alertmanager-service.yaml" | kc apply -f - >/dev/null
log "alertmanager up in $((SECONDS - START))s: http://${ALERTMANAGER_NODE_ADDR}/" \
  "(pods: http://alertmanager.monitoring.svc:${ALERTMANAGER_PORT}/)"
