# shellcheck shell=bash
# shellcheck disable=SC2034  # variables are used by the scripts that source this file
# Shared settings for hack/cluster/*.sh. Source it; do not run it.
# Every version is pinned here and must match the wrapper modules under
# hack/cluster/tools/<component>/go.mod (build.sh checks that).

HACK_CLUSTER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${HACK_CLUSTER_DIR}/../.." && pwd)"

K8S_VERSION="v1.34.4"          # k8s.io/kubernetes (staging modules v0.34.4)
ETCD_VERSION="v3.6.16"         # go.etcd.io/etcd/server/v3
KWOK_VERSION="v0.8.0"          # sigs.k8s.io/kwok
GATEWAY_API_VERSION="v1.4.1"   # sigs.k8s.io/gateway-api (standard CRDs only)
COREDNS_VERSION="v1.12.4"      # github.com/coredns/coredns (a build with only the plugins we use)

KANARY_CACHE="${KANARY_CACHE:-${HOME}/.cache/kanary}"
KANARY_STATE="${KANARY_STATE:-${KANARY_CACHE}/cluster}"
KANARY_NETNS="${KANARY_NETNS:-kanary}"
KANARY_NODES="${KANARY_NODES:-3}"

BIN_K8S="${KANARY_CACHE}/bin/kubernetes-${K8S_VERSION}"
BIN_ETCD="${KANARY_CACHE}/bin/etcd-${ETCD_VERSION}"
BIN_KWOK="${KANARY_CACHE}/bin/kwok-${KWOK_VERSION}"
BIN_COREDNS="${KANARY_CACHE}/bin/coredns-${COREDNS_VERSION}"
KUBECTL="${BIN_K8S}/kubectl"

# Network inside the namespace. The pod CIDR is made local there with an
# AnyIP route so kwok's pod IPs are addresses of this namespace's loopback.
POD_CIDR="10.244.0.0/16"
SERVICE_CIDR="10.96.0.0/16"
# Address the apiserver advertises (a /32 on lo inside the netns; it is the
# "kubernetes" Service's endpoint and must not be loopback).
APISERVER_ADVERTISE="10.243.0.1"
APISERVER_PORT=6443
APISERVER_URL="https://127.0.0.1:${APISERVER_PORT}"
ETCD_CLIENT_PORT=2379
ETCD_PEER_PORT=2380

# The real node (kubelet + containerd + runc, hack/cluster/node-up.sh). Its pods get
# addresses from a bridge in the netns; the range lies outside the kwok AnyIP route.
NODE_NAME="kanary-node"
NODE_POD_CIDR="10.245.0.0/24"
NODE_BRIDGE="kanary0"
NODE_IP="${APISERVER_ADVERTISE}"      # the node's InternalIP: kubelet, hostPorts
CLUSTER_DNS="${SERVICE_CIDR%.0.0/*}.0.10"   # kube-system/kube-dns (CoreDNS, a process)
PAUSE_IMAGE="registry.k8s.io/pause:3.10.1"  # built by hack/images/build.sh
NODE_DIR="${KANARY_STATE}/node"
CONTAINERD_RUN="/run/kanary-containerd${KANARY_NETNS#kanary}"   # state; short (socket path limit)
CONTAINERD_SOCK="${CONTAINERD_RUN}/containerd.sock"
# taint on the kwok nodes: only pods that tolerate it (and select type=kwok) land there
KWOK_TAINT_KEY="kwok.x-k8s.io/node"

CERT_DIR="${KANARY_STATE}/certs"
ETCD_DATA="${KANARY_STATE}/etcd"
LOG_DIR="${KANARY_STATE}/logs"
PID_DIR="${KANARY_STATE}/pids"
CONF_DIR="${KANARY_STATE}/config"
KUBECONFIG_PATH="${KANARY_STATE}/kubeconfig"

# Order matters: up starts in this order, down stops in reverse.
CONTROL_PLANE=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)  # up.sh
NODE_COMPONENTS=(containerd kubelet kube-proxy coredns)                        # node-up.sh
COMPONENTS=("${CONTROL_PLANE[@]}" "${NODE_COMPONENTS[@]}")

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Module cache directory of a Go module (downloaded if missing).
go_module_dir() {
  local mod="$1"
  (cd "${HACK_CLUSTER_DIR}/tools/kwok" && GOFLAGS=-mod=mod go mod download -json "${mod}") \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}

netns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "${KANARY_NETNS}"; }

# Create the network namespace idempotently: lo up, the advertise address,
# and the AnyIP route that makes the whole pod CIDR local.
# Safe to run concurrently (several exec.sh at once): "replace" never fails
# on an existing address or route.
ensure_netns() {
  if netns_exists && ! ip -n "${KANARY_NETNS}" link show lo >/dev/null 2>&1; then
    repair_netns
  fi
  if ! netns_exists; then
    ip netns add "${KANARY_NETNS}" 2>/dev/null || netns_exists \
      || die "cannot create network namespace ${KANARY_NETNS}"
  fi
  ip -n "${KANARY_NETNS}" link set lo up
  ip -n "${KANARY_NETNS}" addr replace "${APISERVER_ADVERTISE}/32" dev lo
  ip -n "${KANARY_NETNS}" route replace local "${POD_CIDR}" dev lo table local
}

# /run/netns/NAME exists but is no namespace (a netns delete raced with an
# add, seen with concurrent runs before up/down/exec took a lock). If one of
# our components still runs, bind its namespace back; else remove the file.
repair_netns() {
  local c pid f="/run/netns/${KANARY_NETNS}"
  for c in "${COMPONENTS[@]}"; do
    if pid="$(component_pid "${c}")"; then
      log "re-attaching network namespace ${KANARY_NETNS} from ${c} (pid ${pid})"
      mount --bind "/proc/${pid}/ns/net" "${f}" && return 0
    fi
  done
  log "removing broken network namespace file ${f}"
  ip netns delete "${KANARY_NETNS}" 2>/dev/null || rm -f "${f}"
}

# Serialize up.sh and down.sh (fd 9 holds a lock on the state folder; the
# components are started with fd 9 closed so they do not inherit it).
lock_state() {
  mkdir -p "${KANARY_STATE}"
  exec 9>"${KANARY_STATE}/.lock"
  flock 9
}

pid_file() { echo "${PID_DIR}/$1.pid"; }

# Prints the pid of a component if its pid file names a live process that is
# still that component: its command line must contain the binary recorded in
# pids/<name>.bin (pids are reused quickly: pid_max is often 32768).
component_pid() {
  local f pid bin
  f="$(pid_file "$1")"
  [[ -f "${f}" ]] || return 1
  pid="$(cat "${f}")"
  [[ "${pid}" =~ ^[0-9]+$ ]] && kill -0 "${pid}" 2>/dev/null || return 1
  bin="$(cat "${PID_DIR}/$1.bin" 2>/dev/null)" || return 1
  tr '\0' '\n' < "/proc/${pid}/cmdline" 2>/dev/null | grep -qxF -- "${bin}" || return 1
  echo "${pid}"
}

# await_exec NAME PID: wait (up to 10 s) until component_pid NAME names PID, or PID has ended.
# Until the fork that start() made has exec'd, its command line is the calling script's, and
# component_pid would call it dead: CI saw "etcd died" with an empty log, and that etcd then
# held its ports against every later up.sh.
await_exec() {
  local i
  for ((i = 0; i < 200; i++)); do
    component_pid "$1" >/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 0
    sleep 0.05
  done
  log "$1 (pid $2) has not exec'd after 10s"
}

# stop_pid NAME PID: TERM, wait up to 10 s, then KILL.
stop_pid() {
  local i
  kill -TERM "$2" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$2" 2>/dev/null || return 0
    sleep 0.1
  done
  log "$1 did not stop in 10s; killing it"
  kill -KILL "$2" 2>/dev/null || true
}

# ------------------------------------------------------------ processes ---
# start NAME ARGV... : start a component inside the netns unless its pid file names a live
# process. With START_VIA=nsenter it joins only the netns and keeps the caller's mount
# namespace (the host's: run the scripts from the host or through exec.sh, which uses
# nsenter too), where `ip netns exec` would give it a private one: the node's kubelet and
# containerd must see each other's mounts, and down.sh must see theirs. Its output goes to
# logs/NAME.log (the previous run's log is kept as NAME.log.1).
start() {
  local name="$1" pid; shift
  if pid="$(component_pid "${name}")"; then
    # Same command line: keep it. Changed (e.g. this script gained a flag):
    # restart it, so a cluster that is already up picks up the change.
    if [[ "$(tr '\0' '\n' < "/proc/${pid}/cmdline")" == "$(printf '%s\n' "$@")" ]]; then
      log "${name} already running (pid ${pid})"
      return 0
    fi
    log "${name} (pid ${pid}) runs with other flags: restarting it"
    stop_pid "${name}" "${pid}"
  fi
  local logf="${LOG_DIR}/${name}.log"
  [[ -f "${logf}" ]] && mv -f "${logf}" "${logf}.1"
  log "starting ${name}"
  # ip netns exec, nsenter and setsid all exec, so $! is the component's own pid.
  local via=(ip netns exec "${KANARY_NETNS}")
  [[ "${START_VIA:-}" == nsenter ]] && via=(nsenter "--net=/run/netns/${KANARY_NETNS}")
  setsid "${via[@]}" "$@" >"${logf}" 2>&1 </dev/null 9>&- &
  pid=$!
  echo "$1" > "${PID_DIR}/${name}.bin"
  echo "${pid}" > "$(pid_file "${name}")"
  await_exec "${name}" "${pid}"
}

# gen_cert NAME CN [O] [SAN]: a key and a certificate signed by the cluster CA in
# ${CERT_DIR}/NAME.{key,crt}; a client certificate, or a serving one when SAN is given.
# Kept when it exists.
gen_cert() {
  local d="${CERT_DIR}" name="$1" cn="$2" o="${3:-}" san="${4:-}" subj
  [[ -f "${d}/${name}.crt" && -f "${d}/${name}.key" ]] && return 0
  subj="/CN=${cn}"; [[ -n "${o}" ]] && subj="/O=${o}${subj}"
  if [[ -n "${san}" ]]; then
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' "${san}"
  else
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n'
  fi > "${d}/${name}.ext"
  openssl req -newkey rsa:2048 -nodes -subj "${subj}" -keyout "${d}/${name}.key" -out "${d}/${name}.csr" 2>/dev/null
  openssl x509 -req -in "${d}/${name}.csr" -CA "${d}/ca.crt" -CAkey "${d}/ca.key" -CAcreateserial \
    -days 3650 -extfile "${d}/${name}.ext" -out "${d}/${name}.crt" 2>/dev/null
  chmod 600 "${d}/${name}.key"
}

# write_kubeconfig PATH USER [TOKEN]: a kubeconfig for USER that authenticates with TOKEN, or
# without one with USER's client certificate ${CERT_DIR}/USER.{crt,key} (gen_cert).
write_kubeconfig() {
  local ca auth
  ca="$(base64 -w0 < "${CERT_DIR}/ca.crt")"
  if [[ -n "${3:-}" ]]; then
    auth="    token: $3"
  else
    auth="    client-certificate: ${CERT_DIR}/$2.crt"$'\n'"    client-key: ${CERT_DIR}/$2.key"
  fi
  umask 077
  cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: kanary
  cluster:
    server: ${APISERVER_URL}
    certificate-authority-data: ${ca}
users:
- name: $2
  user:
${auth}
contexts:
- name: kanary
  context:
    cluster: kanary
    user: $2
current-context: kanary
EOF
}

in_netns() { ip netns exec "${KANARY_NETNS}" "$@"; }

# check_alive COMPONENT...: exit 1, with the tail of its log, if a started component died.
check_alive() {
  local c f
  for c in "$@"; do
    f="$(pid_file "${c}")"
    [[ -f "${f}" ]] || continue
    if ! component_pid "${c}" >/dev/null; then
      log "${c} died; last lines of ${LOG_DIR}/${c}.log:"
      tail -n 30 "${LOG_DIR}/${c}.log" >&2 || true
      if grep -q "address already in use" "${LOG_DIR}/${c}.log" 2>/dev/null; then
        log "listening sockets in netns ${KANARY_NETNS} (make cluster-down stops what holds them):"
        in_netns ss -ltnp >&2 || true
      fi
      rm -f "${f}" "${PID_DIR}/${c}.bin"
      exit 1
    fi
  done
}

# wait_for DESCRIPTION CMD... : poll CMD (quietly) until it succeeds, checking that every
# component in the caller's WATCH array is still alive; give up after WAIT_TIMEOUT seconds.
# The caller sets WATCH, WAIT_TIMEOUT and START.
wait_for() {
  local what="$1"; shift
  local t0=$SECONDS
  until "$@" >/dev/null 2>&1; do
    check_alive "${WATCH[@]}"
    (( SECONDS - t0 < WAIT_TIMEOUT )) || die "timed out after ${WAIT_TIMEOUT}s waiting for ${what}"
    sleep 0.2
  done
  log "${what}: ok ($((SECONDS - START))s)"
}
