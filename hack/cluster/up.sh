#!/usr/bin/env bash
# Start the local cluster (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kwok) as processes inside the network namespace
# ${KANARY_NETNS:-kanary}. Idempotent: components already running (per their
# pid files) are left alone. Needs root (ip netns) and the binaries from
# hack/cluster/build.sh.
# KANARY_KCM_FLAGS: extra kube-controller-manager flags, e.g. "--kube-api-qps=200
# --kube-api-burst=400" (its client defaults are 20 and 30; tests/bench/bench_fleet.py).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

START=$SECONDS
read -r -a KCM_FLAGS <<<"${KANARY_KCM_FLAGS:-}"
WAIT_TIMEOUT="${KANARY_WAIT_TIMEOUT:-120}"
WATCH=("${CONTROL_PLANE[@]}")  # what wait_for checks is still alive

[[ ${EUID} -eq 0 ]] || die "needs root (ip netns); run as root"
for b in "${BIN_ETCD}/etcd" "${BIN_K8S}/kube-apiserver" "${BIN_K8S}/kube-controller-manager" \
         "${BIN_K8S}/kube-scheduler" "${KUBECTL}" "${BIN_KWOK}/kwok"; do
  [[ -x "${b}" ]] || die "missing ${b}: run hack/cluster/build.sh (make cluster-build) first"
done
command -v openssl >/dev/null || die "openssl not found"

lock_state
# One state folder belongs to one netns: refuse to mix them while it runs.
if [[ -f "${KANARY_STATE}/netns" ]] && [[ "$(cat "${KANARY_STATE}/netns")" != "${KANARY_NETNS}" ]]; then
  for c in "${COMPONENTS[@]}"; do
    if component_pid "${c}" >/dev/null; then
      die "${KANARY_STATE} runs a cluster in netns $(cat "${KANARY_STATE}/netns"), not ${KANARY_NETNS}: set KANARY_STATE too"
    fi
  done
fi
echo "${KANARY_NETNS}" > "${KANARY_STATE}/netns"
mkdir -p "${CERT_DIR}" "${LOG_DIR}" "${PID_DIR}" "${CONF_DIR}" "${ETCD_DATA}"
chmod 700 "${KANARY_STATE}" "${CERT_DIR}" "${ETCD_DATA}"
ensure_netns

# ---------------------------------------------------------------- certs ---
gen_certs() {
  local d="${CERT_DIR}"
  [[ -f "${d}/ca.crt" && -f "${d}/apiserver.crt" && -f "${d}/sa.key" && -f "${d}/tokens.csv" ]] && return 0
  log "generating certificates and tokens in ${d}"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=kanary-local-ca" \
    -keyout "${d}/ca.key" -out "${d}/ca.crt" 2>/dev/null
  cat > "${d}/apiserver.ext" <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:${APISERVER_ADVERTISE},IP:${SERVICE_CIDR%.0/*}.1
EOF
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
    -keyout "${d}/apiserver.key" -out "${d}/apiserver.csr" 2>/dev/null
  openssl x509 -req -in "${d}/apiserver.csr" -CA "${d}/ca.crt" -CAkey "${d}/ca.key" \
    -CAcreateserial -days 3650 -extfile "${d}/apiserver.ext" -out "${d}/apiserver.crt" 2>/dev/null
  openssl genrsa -out "${d}/sa.key" 2048 2>/dev/null
  openssl rsa -in "${d}/sa.key" -pubout -out "${d}/sa.pub" 2>/dev/null
  # Static tokens: token,user,uid,"groups". The controller-manager and the
  # scheduler use the users the RBAC bootstrap policy already binds.
  local t_admin t_kcm t_sched t_kwok
  t_admin="$(openssl rand -hex 24)"; t_kcm="$(openssl rand -hex 24)"
  t_sched="$(openssl rand -hex 24)"; t_kwok="$(openssl rand -hex 24)"
  cat > "${d}/tokens.csv" <<EOF
${t_admin},kanary-admin,kanary-admin,"system:masters"
${t_kcm},system:kube-controller-manager,system:kube-controller-manager,""
${t_sched},system:kube-scheduler,system:kube-scheduler,""
${t_kwok},kwok-controller,kwok-controller,"system:masters"
EOF
  chmod 600 "${d}"/*.key "${d}/tokens.csv"
  write_kubeconfig "${KUBECONFIG_PATH}" kanary-admin "${t_admin}"
  write_kubeconfig "${CONF_DIR}/kube-controller-manager.kubeconfig" system:kube-controller-manager "${t_kcm}"
  write_kubeconfig "${CONF_DIR}/kube-scheduler.kubeconfig" system:kube-scheduler "${t_sched}"
  write_kubeconfig "${CONF_DIR}/kwok.kubeconfig" kwok-controller "${t_kwok}"
}

# The aggregation layer's front-proxy CA and client cert (what upstream sets
# up); without it the components log "missing content for CA bundle".
gen_front_proxy_certs() {
  local d="${CERT_DIR}"
  [[ -f "${d}/front-proxy-ca.crt" && -f "${d}/front-proxy-client.crt" ]] && return 0
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=kanary-front-proxy-ca" \
    -keyout "${d}/front-proxy-ca.key" -out "${d}/front-proxy-ca.crt" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' \
    > "${d}/front-proxy-client.ext"
  openssl req -newkey rsa:2048 -nodes -subj "/CN=front-proxy-client" \
    -keyout "${d}/front-proxy-client.key" -out "${d}/front-proxy-client.csr" 2>/dev/null
  openssl x509 -req -in "${d}/front-proxy-client.csr" -CA "${d}/front-proxy-ca.crt" \
    -CAkey "${d}/front-proxy-ca.key" -CAcreateserial -days 3650 \
    -extfile "${d}/front-proxy-client.ext" -out "${d}/front-proxy-client.crt" 2>/dev/null
  chmod 600 "${d}"/front-proxy-*.key
}


kc() { in_netns "${KUBECTL}" --kubeconfig "${KUBECONFIG_PATH}" "$@"; }

gen_certs
gen_front_proxy_certs
# the API server's client certificate towards kubelets (logs, exec, port-forward)
gen_cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters

start etcd "${BIN_ETCD}/etcd" \
  --name=kanary \
  --data-dir="${ETCD_DATA}" \
  --listen-client-urls="http://127.0.0.1:${ETCD_CLIENT_PORT}" \
  --advertise-client-urls="http://127.0.0.1:${ETCD_CLIENT_PORT}" \
  --listen-peer-urls="http://127.0.0.1:${ETCD_PEER_PORT}" \
  --initial-advertise-peer-urls="http://127.0.0.1:${ETCD_PEER_PORT}" \
  --initial-cluster="kanary=http://127.0.0.1:${ETCD_PEER_PORT}" \
  --unsafe-no-fsync=true \
  --log-level=warn

wait_for "etcd serving" in_netns bash -c "exec 3<>/dev/tcp/127.0.0.1/${ETCD_CLIENT_PORT}"

# All addresses of the netns (it is the cluster's own): pods on the real node reach it as the
# "kubernetes" Service, whose endpoint (the advertise address) the lease reconciler keeps.
start kube-apiserver "${BIN_K8S}/kube-apiserver" \
  --etcd-servers="http://127.0.0.1:${ETCD_CLIENT_PORT}" \
  --bind-address=0.0.0.0 \
  --secure-port="${APISERVER_PORT}" \
  --advertise-address="${APISERVER_ADVERTISE}" \
  --tls-cert-file="${CERT_DIR}/apiserver.crt" \
  --tls-private-key-file="${CERT_DIR}/apiserver.key" \
  --client-ca-file="${CERT_DIR}/ca.crt" \
  --requestheader-client-ca-file="${CERT_DIR}/front-proxy-ca.crt" \
  --requestheader-allowed-names=front-proxy-client \
  --requestheader-username-headers=X-Remote-User \
  --requestheader-group-headers=X-Remote-Group \
  --requestheader-extra-headers-prefix=X-Remote-Extra- \
  --proxy-client-cert-file="${CERT_DIR}/front-proxy-client.crt" \
  --proxy-client-key-file="${CERT_DIR}/front-proxy-client.key" \
  --token-auth-file="${CERT_DIR}/tokens.csv" \
  --authorization-mode=Node,RBAC \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="${CERT_DIR}/sa.pub" \
  --service-account-signing-key-file="${CERT_DIR}/sa.key" \
  --service-cluster-ip-range="${SERVICE_CIDR}" \
  --allow-privileged=true \
  --kubelet-client-certificate="${CERT_DIR}/apiserver-kubelet-client.crt" \
  --kubelet-client-key="${CERT_DIR}/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority="${CERT_DIR}/ca.crt" \
  --kubelet-preferred-address-types=InternalIP \
  --cert-dir="${CERT_DIR}/apiserver-generated" \
  --profiling=false

wait_for "kube-apiserver /readyz" kc get --raw /readyz

start kube-controller-manager "${BIN_K8S}/kube-controller-manager" \
  --kubeconfig="${CONF_DIR}/kube-controller-manager.kubeconfig" \
  --authentication-kubeconfig="${CONF_DIR}/kube-controller-manager.kubeconfig" \
  --authorization-kubeconfig="${CONF_DIR}/kube-controller-manager.kubeconfig" \
  --authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics \
  --bind-address=127.0.0.1 \
  --cert-dir="${CERT_DIR}/kcm-generated" \
  --leader-elect=false \
  --use-service-account-credentials=true \
  --service-account-private-key-file="${CERT_DIR}/sa.key" \
  --root-ca-file="${CERT_DIR}/ca.crt" \
  --cluster-signing-cert-file="${CERT_DIR}/ca.crt" \
  --cluster-signing-key-file="${CERT_DIR}/ca.key" \
  --service-cluster-ip-range="${SERVICE_CIDR}" \
  --profiling=false "${KCM_FLAGS[@]}"

start kube-scheduler "${BIN_K8S}/kube-scheduler" \
  --kubeconfig="${CONF_DIR}/kube-scheduler.kubeconfig" \
  --authentication-kubeconfig="${CONF_DIR}/kube-scheduler.kubeconfig" \
  --authorization-kubeconfig="${CONF_DIR}/kube-scheduler.kubeconfig" \
  --authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics \
  --bind-address=127.0.0.1 \
  --cert-dir="${CERT_DIR}/scheduler-generated" \
  --leader-elect=false \
  --profiling=false

# kwok: --node-lease-duration-seconds defaults to 0 in standalone kwok, which
# means no node Leases: the node-lifecycle controller then finds every node
# stale after its 50s grace period, marks them NotReady (and their pods
# NotReady, which kwok's pod Stages never undo) until kwok's next status
# patch. With a 40s lease (renewed every 10s) nodes stay Ready.
# kwok's Stages, straight from the kwok module: node fast + heartbeat with
# lease, pod general + chaos. Per-pod annotations drive them (see README).
# Then kanary's own Stages from hack/cluster/stages/ (readiness from the pod
# runner's probes: pod-readiness-probe.yaml).
KWOK_MOD="$(go_module_dir "sigs.k8s.io/kwok@${KWOK_VERSION}" 2>/dev/null || true)"
[[ -n "${KWOK_MOD}" && -d "${KWOK_MOD}/kustomize/stage" ]] \
  || die "kwok ${KWOK_VERSION} module not in the Go module cache (run hack/cluster/build.sh)"
STAGES="${CONF_DIR}/kwok-stages.yaml"
stage_files() { # the resources of the folder's kustomization.yaml, else its *.yaml
  if [[ -f "$1/kustomization.yaml" ]]; then
    sed -n 's/^- \(.*\.yaml\)$/\1/p' "$1/kustomization.yaml"
  else
    (cd "$1" && ls -- *.yaml)
  fi
}
{
  for s in node/fast node/heartbeat-with-lease pod/general pod/chaos; do
    # the order of the resources in each kustomization.yaml
    while read -r f; do
      echo "---"
      echo "# from sigs.k8s.io/kwok@${KWOK_VERSION}/kustomize/stage/${s}/${f}"
      cat "${KWOK_MOD}/kustomize/stage/${s}/${f}"
    done < <(stage_files "${KWOK_MOD}/kustomize/stage/${s}")
  done
  for f in "${HACK_CLUSTER_DIR}"/stages/*.yaml; do
    echo "---"
    echo "# from hack/cluster/stages/${f##*/}"
    cat "${f}"
  done
} > "${STAGES}.tmp"
# kwok reads its Stages only at start: a running kwok whose Stages changed is
# restarted (its command line is the same, so start() alone would keep it).
if [[ -f "${STAGES}" ]] && ! cmp -s "${STAGES}.tmp" "${STAGES}" && pid="$(component_pid kwok)"; then
  log "kwok Stages changed: restarting kwok (pid ${pid})"
  stop_pid kwok "${pid}"
fi
mv "${STAGES}.tmp" "${STAGES}"

start kwok "${BIN_KWOK}/kwok" \
  --kubeconfig="${CONF_DIR}/kwok.kubeconfig" \
  --config="${STAGES}" \
  --manage-nodes-with-label-selector=type=kwok \
  --node-lease-duration-seconds=40 \
  --cidr="${POD_CIDR}" \
  --node-ip="${APISERVER_ADVERTISE}" \
  --server-address=127.0.0.1:10247

# ---------------------------------------------------------------- nodes ---
nodes_yaml() {
  local i
  for ((i = 0; i < KANARY_NODES; i++)); do
    cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-${i}
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: kwok-node-${i}
    kubernetes.io/os: linux
    kubernetes.io/role: agent
    node-role.kubernetes.io/agent: ""
    type: kwok
spec:
  # Ordinary pods go to the real node (node-up.sh); only pods that tolerate this land here.
  taints:
  - {key: ${KWOK_TAINT_KEY}, value: fake, effect: NoSchedule}
EOF
  done
}
nodes_yaml | kc apply -f - >/dev/null
log "${KANARY_NODES} kwok nodes applied"

# ------------------------------------------------------ Gateway API CRDs ---
GW_MOD="$(go_module_dir "sigs.k8s.io/gateway-api@${GATEWAY_API_VERSION}" 2>/dev/null || true)"
[[ -n "${GW_MOD}" && -d "${GW_MOD}/config/crd/standard" ]] \
  || die "gateway-api ${GATEWAY_API_VERSION} not in the Go module cache (run hack/cluster/build.sh)"
kc apply --server-side --force-conflicts --field-manager=kanary-cluster-up \
  -f "${GW_MOD}/config/crd/standard/" >/dev/null
kc wait --for=condition=Established --timeout="${WAIT_TIMEOUT}s" \
  crd/gatewayclasses.gateway.networking.k8s.io crd/gateways.gateway.networking.k8s.io \
  crd/httproutes.gateway.networking.k8s.io crd/grpcroutes.gateway.networking.k8s.io \
  crd/referencegrants.gateway.networking.k8s.io >/dev/null
log "Gateway API ${GATEWAY_API_VERSION} standard CRDs installed"

# ----------------------------------------------------------------- waits ---
all_nodes_ready() {
  local n
  n="$(kc get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' \
    | grep -cx True)" || true
  (( n >= KANARY_NODES ))
}
wait_for "${KANARY_NODES} nodes Ready" all_nodes_ready
wait_for "ServiceAccount default/default" kc -n default get serviceaccount default
check_alive "${WATCH[@]}"

log "cluster up in $((SECONDS - START))s (state: ${KANARY_STATE}, netns: ${KANARY_NETNS})"
cat >&2 <<EOF

The API server listens on ${APISERVER_URL} inside network namespace '${KANARY_NETNS}'.
  export KUBECONFIG=${KUBECONFIG_PATH}
  hack/cluster/exec.sh kubectl get nodes        # runs in the netns, kubectl v${K8S_VERSION#v} on PATH
  hack/cluster/exec.sh bash                     # a shell in the netns
Logs: ${LOG_DIR}/<component>.log   Stop: make cluster-down
EOF
