# shellcheck shell=bash
# shellcheck disable=SC2034  # variables are used by the scripts that source this file
# Shared settings for hack/dataplane/*.sh. Source it; do not run it.
# Builds on hack/cluster/lib.sh (cache layout, state folder, netns, pid files).

HACK_DATAPLANE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../cluster/lib.sh
source "${HACK_DATAPLANE_DIR}/../cluster/lib.sh"

TRAEFIK_VERSION="v3.6.12"      # github.com/traefik/traefik/v3 (tools/traefik/go.mod)
BIN_TRAEFIK="${KANARY_CACHE}/bin/traefik-${TRAEFIK_VERSION}"
# Prometheus 2.42.0 (the version of Debian's package and of the kind manifest
# manifests/prometheus/deployment.yaml); its Go module is tagged v0.42.0.
PROMETHEUS_VERSION="v2.42.0"
PROMETHEUS_MODULE_VERSION="v0.42.0"   # github.com/prometheus/prometheus (tools/prometheus/go.mod)
BIN_PROMETHEUS="${KANARY_CACHE}/bin/prometheus-${PROMETHEUS_VERSION}"
# Alertmanager: Debian 12's own package at a pinned version (hack/dataplane/install.sh,
# `make dataplane-install`); ALERTMANAGER_VERSION is what its /api/v2/status reports.
ALERTMANAGER_VERSION="0.25.0"
ALERTMANAGER_DEB_VERSION="0.25.0-1+b4"   # apt-cache policy prometheus-alertmanager (bookworm)
BIN_ALERTMANAGER="/usr/bin/prometheus-alertmanager"

# Where the data plane listens inside the netns.
GATEWAY_PORT=8000              # Traefik entryPoint "web" = Gateway listener port
TRAEFIK_API_PORT=8080          # Traefik ping/API entryPoint "traefik" (127.0.0.1 only)
PROMETHEUS_ADDR="127.0.0.1:9090"
# Alertmanager listens on loopback and on the node IP (an address of the netns), so that
# pods on the real node reach it too; never on 0.0.0.0 (that would be every pod IP too).
ALERTMANAGER_PORT=9093
ALERTMANAGER_ADDR="127.0.0.1:${ALERTMANAGER_PORT}"
ALERTMANAGER_NODE_ADDR="${NODE_IP}:${ALERTMANAGER_PORT}"

# The Gin service binary the runner starts for pods of kanary/gin-demo:<tag>.
APP_BIN="${KANARY_APP_BIN:-${REPO_ROOT}/app/bin/gin-demo}"

DATAPLANE_STATE="${KANARY_STATE}/dataplane"   # generated configs, prometheus/alertmanager data
RUNNER_LOG_DIR="${LOG_DIR}/pods"              # one log per pod process

# Started by hack/dataplane/up.sh in this order (after the cluster is up);
# hack/dataplane/down.sh stops them in reverse.
DATAPLANE_COMPONENTS=(traefik alertmanager prometheus pod-runner)

log() { printf '[dataplane %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The manifests the data plane applies (GatewayClass + Gateway): one source of
# truth, owned by the manifests; up.sh applies every YAML file there.
GATEWAY_MANIFESTS="${REPO_ROOT}/manifests/gateway"
# The project's Prometheus config; prometheus_config.py derives the local one.
PROMETHEUS_MANIFESTS="${REPO_ROOT}/manifests/prometheus"
VENV_PY="${KANARY_VENV_PY:-${REPO_ROOT}/.venv/bin/python}"

# dp_start NAME MARKER ARGV... : start a data-plane process inside the netns
# unless its pid file names a live process; same conventions as
# hack/cluster/up.sh: pid file in PID_DIR, pids/NAME.bin = MARKER (an argument
# of the process's command line, so a reused pid is not taken for it), output
# in LOG_DIR/NAME.log (previous log NAME.log.1), fd 9 (the state lock) closed.
# hack/cluster/down.sh stops every pid file in PID_DIR, so "make cluster-down"
# stops the data plane too.
dp_start() {
  local name="$1" marker="$2" pid; shift 2
  if pid="$(component_pid "${name}")"; then
    log "${name} already running (pid ${pid})"
    return 0
  fi
  local logf="${LOG_DIR}/${name}.log"
  [[ -f "${logf}" ]] && mv -f "${logf}" "${logf}.1"
  log "starting ${name}"
  setsid ip netns exec "${KANARY_NETNS}" "$@" >"${logf}" 2>&1 </dev/null 9>&- &
  pid=$!
  echo "${marker}" > "${PID_DIR}/${name}.bin"
  echo "${pid}" > "$(pid_file "${name}")"
  await_exec "${name}" "${pid}"
}

# stop_pid NAME PID [TIMEOUT_TENTHS]: SIGTERM, wait, then SIGKILL.
stop_pid() {
  local name="$1" pid="$2" n="${3:-100}" i
  kill -TERM "${pid}" 2>/dev/null || return 0
  for ((i = 0; i < n; i++)); do
    kill -0 "${pid}" 2>/dev/null || return 0
    sleep 0.1
  done
  log "${name} (pid ${pid}) did not stop in $((n / 10))s; killing it"
  kill -KILL "${pid}" 2>/dev/null || true
}

# http_ok URL: the URL answers 2xx inside the netns.
http_ok() { in_netns curl -fsS --max-time 2 -o /dev/null "$1"; }

# alertmanager_start: write its config and start it (hack/dataplane/up.sh, alertmanager-up.sh).
# One route to a receiver without integrations: alerts are kept (and shown by
# GET /api/v2/alerts), nothing is sent anywhere. No HA gossip (--cluster.listen-address
# empty): it would listen on 0.0.0.0:9094. Two listen addresses, not 0.0.0.0:
# the pod CIDR is local in the netns, so a wildcard would take 9093 on every pod IP.
alertmanager_start() {
  AM_CONFIG="${DATAPLANE_STATE}/alertmanager.yml"
  cat > "${AM_CONFIG}.tmp" <<'EOF'
# written by hack/dataplane/lib.sh: every alert goes to "default", which sends nothing
route:
  receiver: default
receivers:
  - name: default
EOF
  mv -f "${AM_CONFIG}.tmp" "${AM_CONFIG}"
  if component_pid alertmanager >/dev/null; then  # already running: load the config
    in_netns curl -fsS --max-time 5 -X POST "http://${ALERTMANAGER_ADDR}/-/reload" >/dev/null \
      || log "WARNING: alertmanager did not reload ${AM_CONFIG}"
  fi
  dp_start alertmanager "${BIN_ALERTMANAGER}" "${BIN_ALERTMANAGER}" \
    --config.file="${AM_CONFIG}" \
    --storage.path="${DATAPLANE_STATE}/alertmanager" \
    --web.listen-address="${ALERTMANAGER_ADDR}" \
    --web.listen-address="${ALERTMANAGER_NODE_ADDR}" \
    --web.external-url="http://${ALERTMANAGER_ADDR}/" \
    --cluster.listen-address= \
    --log.level=info
}

# alertmanager_wait: until it answers on both addresses (the caller sets WATCH, WAIT_TIMEOUT, START).
alertmanager_wait() {
  wait_for "alertmanager ready" http_ok "http://${ALERTMANAGER_ADDR}/-/ready"
  wait_for "alertmanager on the node IP" http_ok "http://${ALERTMANAGER_NODE_ADDR}/-/ready"
}
