#!/usr/bin/env bash
# Start the local cluster's real node, after hack/cluster/up.sh: containerd (+ runc, the CNI
# bridge), kubelet, kube-proxy (iptables) and CoreDNS, all in the network namespace
# ${KANARY_NETNS:-kanary}, and import the images of hack/images/build.sh into containerd.
#   node     ${NODE_NAME}, InternalIP ${NODE_IP}, pods on bridge ${NODE_BRIDGE} (${NODE_POD_CIDR})
#   DNS      CoreDNS on ${NODE_IP}:53 behind Service kube-system/kube-dns (${CLUSTER_DNS})
# Idempotent like up.sh. Needs root, Debian's containerd/runc/CNI plugins
# (hack/cluster/node-install.sh), the binaries of hack/cluster/build.sh.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

START=$SECONDS
WAIT_TIMEOUT="${KANARY_WAIT_TIMEOUT:-120}"
WATCH=("${NODE_COMPONENTS[@]}")

[[ ${EUID} -eq 0 ]] || die "needs root (containerd, kubelet); run as root"
for b in containerd runc ctr iptables conntrack; do
  command -v "${b}" >/dev/null || die "${b} not found: run hack/cluster/node-install.sh (make cluster-up does)"
done
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/portmap && -x /usr/lib/cni/loopback ]] \
  || die "CNI plugins missing in /usr/lib/cni: run hack/cluster/node-install.sh"
for b in "${BIN_K8S}/kubelet" "${BIN_K8S}/kube-proxy" "${BIN_COREDNS}/coredns"; do
  [[ -x "${b}" ]] || die "missing ${b}: run hack/cluster/build.sh (make cluster-build) first"
done
netns_exists || die "network namespace ${KANARY_NETNS} missing: run hack/cluster/up.sh first"
kc() { in_netns "${KUBECTL}" --kubeconfig "${KUBECONFIG_PATH}" --request-timeout=10s "$@"; }
kc get --raw /readyz >/dev/null 2>&1 || die "the cluster is not up: run hack/cluster/up.sh first"

lock_state
mkdir -p "${NODE_DIR}"/{cni,kubelet,pod-logs,containerd} "${CONTAINERD_RUN}"

# config NAME FILE: move FILE.new over FILE; when it changed, stop the running component NAME
# so that start() below starts it with the new configuration (its command line is the same).
config() {
  local pid
  if [[ -f "$2" ]] && ! cmp -s "$2.new" "$2" && pid="$(component_pid "$1")"; then
    log "$1: ${2##*/} changed: restarting it"
    stop_pid "$1" "${pid}"
  fi
  mv -f "$2.new" "$2"
}

# ------------------------------------------------------------- network ---
# Pods reach each other, Services and the node through the bridge; kube-proxy's rules see
# bridged traffic (br_netfilter) so a pod can reach a Service whose endpoint is on the bridge.
modprobe br_netfilter 2>/dev/null || true
modprobe overlay 2>/dev/null || true
in_netns sysctl -qw net.ipv4.ip_forward=1
in_netns sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null \
  || log "WARNING: net.bridge.bridge-nf-call-iptables not settable in the netns (no br_netfilter?): a pod cannot reach a Service backed by a pod on the same bridge"
# The netns has no default route, so a process here (the tests, the operator) could not even
# send to a ClusterIP: route the Service range to lo (this kernel has no dummy devices);
# kube-proxy's OUTPUT rules rewrite the destination to an endpoint, and the packet is routed
# again to it.
ip -n "${KANARY_NETNS}" route replace "${SERVICE_CIDR}" dev lo

cat > "${NODE_DIR}/cni/10-kanary.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "kanary",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "${NODE_BRIDGE}",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "${NODE_POD_CIDR}"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "${NODE_DIR}/cni/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
  ]
}
EOF

# ---------------------------------------------------------- containerd ---
# Its own socket, root and state (not the host's /run/containerd), cgroupfs (this host is
# cgroup v1 without systemd), images from hack/images only (nothing is pulled).
cat > "${NODE_DIR}/containerd.toml.new" <<EOF
version = 2
root = "${NODE_DIR}/containerd"
state = "${CONTAINERD_RUN}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "${CONTAINERD_SOCK}"
[ttrpc]
  address = "${CONTAINERD_RUN}/containerd.sock.ttrpc"
[debug]
  address = "${CONTAINERD_RUN}/debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "${NODE_DIR}/containerd-opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${PAUSE_IMAGE}"
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  # root here lacks CAP_SYS_RESOURCE (a VM's restricted root, as in rootless or nested
  # setups): an oom_score_adj below containerd's own (the pause container's -998) fails with
  # "failed to update /proc/self/oom_score_adj: Permission denied"; clamp it instead.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${NODE_DIR}/cni"
    max_conf_num = 1
EOF
config containerd "${NODE_DIR}/containerd.toml"
START_VIA=nsenter start containerd "$(command -v containerd)" --config "${NODE_DIR}/containerd.toml"
ctr_() { ctr --address "${CONTAINERD_SOCK}" --namespace k8s.io "$@"; }
wait_for "containerd serving" ctr_ version
# The CRI plugin starts after the socket serves: until it logs this (and marks itself
# initialized a moment later) every CRI call, the kubelet's first one included, fails with
# "server is not initialized yet" and the kubelet exits (CI saw it).
wait_for "containerd CRI initialized" grep -q 'msg="Start streaming server"' "${LOG_DIR}/containerd.log"

# -------------------------------------------------------------- images ---
# What hack/images/build.sh wrote and signed, verified, then imported into containerd.
"${REPO_ROOT}/hack/cluster/load-images.sh"
grep -qxF "${PAUSE_IMAGE}" <<<"$(ctr_ images ls -q)" \
  || die "${PAUSE_IMAGE} is not in containerd: hack/images/build.sh builds it"

# ------------------------------------------------------------- kubelet ---
gen_cert kubelet "system:node:${NODE_NAME}" system:nodes
gen_cert kubelet-serving "system:node:${NODE_NAME}" system:nodes "IP:${NODE_IP},DNS:${NODE_NAME}"
gen_cert kube-proxy system:kube-proxy
gen_cert coredns system:coredns
write_kubeconfig "${CONF_DIR}/kubelet.kubeconfig" kubelet
write_kubeconfig "${CONF_DIR}/kube-proxy.kubeconfig" kube-proxy
write_kubeconfig "${CONF_DIR}/coredns.kubeconfig" coredns
# The resolv.conf of pods with dnsPolicy: Default (and the search base of the others): no
# upstream resolver exists here, so CoreDNS is the only one.
printf 'nameserver %s\n' "${NODE_IP}" > "${NODE_DIR}/resolv.conf"

# Each cluster's pods under its own cgroup (/<netns>/kubepods), so two local clusters' kubelets
# never take each other's pod cgroups for orphans. cgroup v1: the parent must exist, and a new
# cpuset cgroup starts with no CPUs or memory nodes.
for d in /sys/fs/cgroup/*/; do
  [[ -d "${d}${KANARY_NETNS}" ]] || mkdir -p "${d}${KANARY_NETNS}" 2>/dev/null || continue
done
for f in cpuset.cpus cpuset.mems; do
  [[ -s "/sys/fs/cgroup/cpuset/${KANARY_NETNS}/${f}" ]] \
    || cat "/sys/fs/cgroup/cpuset/${f}" > "/sys/fs/cgroup/cpuset/${KANARY_NETNS}/${f}" 2>/dev/null || true
done

cat > "${NODE_DIR}/kubelet.yaml.new" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This host is cgroup v1 without systemd.
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupRoot: /${KANARY_NETNS}
containerRuntimeEndpoint: unix://${CONTAINERD_SOCK}
address: ${NODE_IP}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: ${CERT_DIR}/kubelet-serving.crt
tlsPrivateKeyFile: ${CERT_DIR}/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: ${CERT_DIR}/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
clusterDNS: [${CLUSTER_DNS}]
resolvConf: ${NODE_DIR}/resolv.conf
podLogsDir: ${NODE_DIR}/pod-logs
podCIDR: ${NODE_POD_CIDR}
maxPods: 110
failSwapOn: false
# A test machine: no evictions for its disk or memory, no image GC of the imported images
# (nothing could pull them back).
evictionHard: {memory.available: "0%", nodefs.available: "0%", imagefs.available: "0%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
# Status and probes as fast as a real node allows (a test cluster).
nodeStatusUpdateFrequency: 10s
syncFrequency: 10s
fileCheckFrequency: 10s
EOF
config kubelet "${NODE_DIR}/kubelet.yaml"
START_VIA=nsenter start kubelet "${BIN_K8S}/kubelet" \
  --config="${NODE_DIR}/kubelet.yaml" \
  --kubeconfig="${CONF_DIR}/kubelet.kubeconfig" \
  --root-dir="${NODE_DIR}/kubelet" \
  --cert-dir="${NODE_DIR}/kubelet/pki" \
  --hostname-override="${NODE_NAME}" \
  --node-ip="${NODE_IP}" \
  --node-labels="type=real" \
  --v=1

# ---------------------------------------------------------- kube-proxy ---
cat > "${NODE_DIR}/kube-proxy.yaml.new" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: ${CONF_DIR}/kube-proxy.kubeconfig
mode: iptables
hostnameOverride: ${NODE_NAME}
bindAddress: ${NODE_IP}
clusterCIDR: ${NODE_POD_CIDR}
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# The netns's conntrack table is the host's; leave its sysctls alone.
conntrack:
  maxPerCore: 0
iptables:
  # 127.0.0.1:<nodePort> from the netns, as on a kind node
  localhostNodePorts: true
EOF
config kube-proxy "${NODE_DIR}/kube-proxy.yaml"
START_VIA=nsenter start kube-proxy "${BIN_K8S}/kube-proxy" --config="${NODE_DIR}/kube-proxy.yaml"

# ------------------------------------------------------------- CoreDNS ---
kc apply -f "${HACK_CLUSTER_DIR}/coredns/rbac.yaml" >/dev/null
sed -e "s|@KUBECONFIG@|${CONF_DIR}/coredns.kubeconfig|" -e "s|@NODE_IP@|${NODE_IP}|g" \
  "${HACK_CLUSTER_DIR}/coredns/Corefile" > "${NODE_DIR}/Corefile.new"
config coredns "${NODE_DIR}/Corefile"
start coredns "${BIN_COREDNS}/coredns" -conf "${NODE_DIR}/Corefile"
# kube-system/kube-dns: the usual ClusterIP, its endpoint the CoreDNS process.
sed -e "s|@CLUSTER_DNS@|${CLUSTER_DNS}|" -e "s|@NODE_IP@|${NODE_IP}|g" \
  "${HACK_CLUSTER_DIR}/coredns/service.yaml" | kc apply -f - >/dev/null

# --------------------------------------------------------------- waits ---
node_ready() {
  [[ "$(kc get node "${NODE_NAME}" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]]
}
wait_for "node ${NODE_NAME} Ready" node_ready
wait_for "kube-proxy healthy" in_netns curl -fsS --max-time 2 -o /dev/null http://127.0.0.1:10256/healthz
wait_for "CoreDNS ready" in_netns curl -fsS --max-time 2 -o /dev/null "http://${NODE_IP}:8181/ready"
check_alive "${WATCH[@]}"
log "node ${NODE_NAME} up in $((SECONDS - START))s ($("${BIN_K8S}/kubelet" --version), containerd $(containerd --version | awk '{print $3}'))"
cat >&2 <<EOF

  hack/cluster/exec.sh kubectl get nodes -o wide
  ctr --address ${CONTAINERD_SOCK} -n k8s.io images ls       # the imported images
Logs: ${LOG_DIR}/{containerd,kubelet,kube-proxy,coredns}.log, pod logs ${NODE_DIR}/pod-logs
EOF
