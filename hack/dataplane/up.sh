#!/usr/bin/env bash
# Start the data plane of the local cluster inside its network namespace,
# after hack/cluster/up.sh:
#   traefik     Gateway API implementation (GatewayClass "traefik"), entryPoint
#               "web" on 127.0.0.1:8000 = the Gateway listener port; ping/API on
#               127.0.0.1:8080
#   alertmanager Debian's prometheus-alertmanager (hack/dataplane/install.sh), one route
#               to a receiver that sends nothing (read alerts from its API v2), on
#               127.0.0.1:9093 and the node IP 10.243.0.1:9093 (pods on the real node)
#   prometheus  v2.42.0 built by build.sh (Debian's package lacks kubernetes_sd),
#               the project's manifests/prometheus scrape config (kubernetes_sd
#               against this API server) and alert rules, 1s scrape and rule
#               evaluation interval, alerts to the Alertmanager above, 127.0.0.1:9090
#   pod-runner  starts app/bin/gin-demo for each Running pod of kanary/gin-demo:<tag>,
#               bound to the pod IP (hack/dataplane/runner.py)
# and applies manifests/namespace.yaml + manifests/gateway/. Idempotent: what
# runs (per its pid file) is left alone. Needs root, the running cluster, the
# binaries of hack/dataplane/build.sh, Alertmanager (hack/dataplane/install.sh),
# app/bin/gin-demo (make app) and .venv.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

START=$SECONDS
WAIT_TIMEOUT="${KANARY_WAIT_TIMEOUT:-120}"
WATCH=("${DATAPLANE_COMPONENTS[@]}")  # what wait_for checks is still alive
# Traefik's own default (2s): minimum time between two configuration reloads.
TRAEFIK_THROTTLE="${KANARY_TRAEFIK_THROTTLE:-2s}"
SCRAPE_INTERVAL="${KANARY_SCRAPE_INTERVAL:-1s}"

[[ ${EUID} -eq 0 ]] || die "needs root (ip netns); run as root"
[[ -x "${BIN_TRAEFIK}/traefik" ]] || die "missing ${BIN_TRAEFIK}/traefik: run hack/dataplane/build.sh first"
[[ -x "${BIN_PROMETHEUS}/prometheus" ]] || die "missing ${BIN_PROMETHEUS}/prometheus: run hack/dataplane/build.sh first"
[[ -x "${BIN_ALERTMANAGER}" ]] || die "missing ${BIN_ALERTMANAGER}: run 'make dataplane-install' (hack/dataplane/install.sh) first"
[[ -x "${APP_BIN}" ]] || die "missing ${APP_BIN}: run 'make app' first"
[[ -x "${VENV_PY}" ]] || die "missing ${VENV_PY}: run 'make install' first"
PROMETHEUS_PATH="${BIN_PROMETHEUS}/prometheus"

kc() { in_netns "${KUBECTL}" --kubeconfig "${KUBECONFIG_PATH}" --request-timeout=10s "$@"; }

netns_exists || die "network namespace ${KANARY_NETNS} missing: run hack/cluster/up.sh first"
if [[ ! -f "${KUBECONFIG_PATH}" ]] || ! kc get --raw /readyz >/dev/null 2>&1; then
  die "the cluster is not up (no /readyz on ${APISERVER_URL} in netns ${KANARY_NETNS}): run hack/cluster/up.sh first"
fi

# Serialize with hack/cluster/{up,down}.sh (their state lock, when lib.sh has it).
if declare -F lock_state >/dev/null; then lock_state; fi
mkdir -p "${DATAPLANE_STATE}" "${RUNNER_LOG_DIR}" "${PID_DIR}/pods" "${LOG_DIR}"

# ---------------------------------------------------- Gateway manifests ---
[[ -d "${GATEWAY_MANIFESTS}" ]] || die "${GATEWAY_MANIFESTS} missing"
kc apply -f "${REPO_ROOT}/manifests/namespace.yaml" -f "${GATEWAY_MANIFESTS}/" >/dev/null
log "applied manifests/namespace.yaml and manifests/gateway/"

# ---------------------------------------------------------------- traefik ---
# No outbound traffic: no version check, no usage statistics, no plugins.
dp_start traefik "${BIN_TRAEFIK}/traefik" env "KUBECONFIG=${KUBECONFIG_PATH}" "${BIN_TRAEFIK}/traefik" \
  --global.checknewversion=false \
  --global.sendanonymoususage=false \
  --log.level=INFO --log.noColor=true \
  --entryPoints.web.address="127.0.0.1:${GATEWAY_PORT}" \
  --entryPoints.web.transport.lifeCycle.requestAcceptGraceTimeout=0s \
  --entryPoints.web.transport.lifeCycle.graceTimeOut=1s \
  --entryPoints.traefik.address="127.0.0.1:${TRAEFIK_API_PORT}" \
  --entryPoints.traefik.transport.lifeCycle.graceTimeOut=1s \
  --ping=true \
  --api=true --api.insecure=true --api.dashboard=false \
  --metrics.prometheus=true \
  --metrics.prometheus.buckets=0.005,0.01,0.025,0.05,0.1,0.25,0.5,1,2.5,5,10 \
  --providers.providersThrottleDuration="${TRAEFIK_THROTTLE}" \
  --providers.kubernetesgateway=true \
  --providers.kubernetesgateway.statusaddress.ip=127.0.0.1

# ----------------------------------------------------------- alertmanager ---
alertmanager_start

# ------------------------------------------------------------- prometheus ---
[[ -d "${PROMETHEUS_MANIFESTS}" ]] || die "${PROMETHEUS_MANIFESTS} missing (the project's scrape config)"
# Discovery runs as the prometheus ServiceAccount of manifests/prometheus/rbac.yaml
# (pods get/list/watch only), as on kind: its RBAC is exercised. The token is
# renewed on every up.sh (Prometheus re-reads the file).
kc apply -f "${PROMETHEUS_MANIFESTS}/namespace.yaml" -f "${PROMETHEUS_MANIFESTS}/rbac.yaml" >/dev/null
PROM_SA_NS=monitoring   # the ServiceAccount monitoring/prometheus of rbac.yaml
PROM_TOKEN_FILE="${DATAPLANE_STATE}/prometheus-sa-token"
(umask 077; kc -n "${PROM_SA_NS}" create token prometheus --duration=48h > "${PROM_TOKEN_FILE}.tmp") \
  || die "cannot create a token for ServiceAccount ${PROM_SA_NS}/prometheus"
mv -f "${PROM_TOKEN_FILE}.tmp" "${PROM_TOKEN_FILE}"
PROM_CONFIG="$(in_netns "${VENV_PY}" "${HACK_DATAPLANE_DIR}/prometheus_config.py" \
  --source "${PROMETHEUS_MANIFESTS}" --kubeconfig "${KUBECONFIG_PATH}" \
  --token-file "${PROM_TOKEN_FILE}" \
  --out-dir "${DATAPLANE_STATE}" --interval "${SCRAPE_INTERVAL}" \
  --alertmanager "${ALERTMANAGER_ADDR}" --traefik "127.0.0.1:${TRAEFIK_API_PORT}")"
"${PROMETHEUS_PATH}" --version >/dev/null 2>&1 || die "${PROMETHEUS_PATH} does not run"
if component_pid prometheus >/dev/null; then  # already running: load the new config
  in_netns curl -fsS --max-time 5 -X POST "http://${PROMETHEUS_ADDR}/-/reload" >/dev/null \
    || log "WARNING: prometheus did not reload ${PROM_CONFIG}"
fi
dp_start prometheus "${PROMETHEUS_PATH}" "${PROMETHEUS_PATH}" \
  --config.file="${PROM_CONFIG}" \
  --storage.tsdb.path="${DATAPLANE_STATE}/prometheus" \
  --storage.tsdb.retention.time=6h \
  --web.listen-address="${PROMETHEUS_ADDR}" \
  --web.enable-lifecycle \
  --log.level=info

# ------------------------------------------------------------- pod runner ---
dp_start pod-runner "${HACK_DATAPLANE_DIR}/runner.py" "${VENV_PY}" -u "${HACK_DATAPLANE_DIR}/runner.py" \
  --kubeconfig "${KUBECONFIG_PATH}" \
  --log-dir "${RUNNER_LOG_DIR}" \
  --pid-dir "${PID_DIR}/pods" \
  --pod-cidr "${POD_CIDR}" \
  --map "kanary/gin-demo=${APP_BIN}"

# ------------------------------------------------------------------ waits ---
gateways() { # namespace/name of every Gateway in manifests/gateway/
  kc get -f "${GATEWAY_MANIFESTS}/" --no-headers \
    -o custom-columns=KIND:.kind,NS:.metadata.namespace,NAME:.metadata.name \
    | awk '$1 == "Gateway" {print $2 "/" $3}'
}
gateway_programmed() {
  [[ "$(kc -n "${1%/*}" get gateway "${1#*/}" \
    -o jsonpath='{.status.conditions[?(@.type=="Programmed")].status}')" == True ]]
}

wait_for "traefik ping" http_ok "http://127.0.0.1:${TRAEFIK_API_PORT}/ping"
while read -r gw; do
  [[ -n "${gw}" ]] && wait_for "Gateway ${gw} Programmed" gateway_programmed "${gw}"
done < <(gateways)
alertmanager_wait
wait_for "prometheus ready" http_ok "http://${PROMETHEUS_ADDR}/-/ready"
wait_for "pod-runner watching" grep -q "watching pods" "${LOG_DIR}/pod-runner.log"
check_alive "${WATCH[@]}"

log "data plane up in $((SECONDS - START))s"
cat >&2 <<EOF

Inside network namespace '${KANARY_NETNS}' (hack/cluster/exec.sh CMD):
  Gateway (Traefik entryPoint web)   http://127.0.0.1:${GATEWAY_PORT}/   (Traefik API: http://127.0.0.1:${TRAEFIK_API_PORT}/api/http/services)
  Prometheus                          http://${PROMETHEUS_ADDR}/   (rules: /api/v1/rules)
  Alertmanager                        http://${ALERTMANAGER_ADDR}/   (alerts: /api/v2/alerts; pods on the real node: http://${ALERTMANAGER_NODE_ADDR}/)
  Load:  hack/cluster/exec.sh .venv/bin/python hack/dataplane/load.py --host HOST --rate 100 --duration 10
Logs: ${LOG_DIR}/{traefik,alertmanager,prometheus,pod-runner}.log, ${RUNNER_LOG_DIR}/<ns>_<pod>_<container>.log
Stop: hack/dataplane/down.sh (hack/cluster/down.sh stops it too)
EOF
