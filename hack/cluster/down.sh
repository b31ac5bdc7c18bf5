#!/usr/bin/env bash
# Stop the local cluster: only the processes named by our pid files, in the
# reverse start order, then remove the network namespace. etcd's data is
# deleted too (the next "up" starts empty) unless KANARY_KEEP_DATA=1.
# Certificates, tokens and the kubeconfig are kept (they are reused).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Stop the processes named by the pid files: TERM to all at once (reverse
# start order), then wait up to 10 s for each and KILL what is left. A pid
# file whose pid now belongs to another program is only removed.
lock_state
names=()
for ((idx = ${#COMPONENTS[@]} - 1; idx >= 0; idx--)); do names+=("${COMPONENTS[idx]}"); done
for f in "${PID_DIR}"/*.pid; do  # pid files of later additions (not in COMPONENTS) too
  [[ -e "${f}" ]] || continue
  n="$(basename "${f}" .pid)"
  [[ " ${names[*]} " == *" ${n} "* ]] || names+=("${n}")
done

# The real node first: kubelet stops (so it restarts nothing), then every process of its pods
# is killed through the cluster's own cgroup (kubelet's cgroupRoot /<netns>), remembering the
# pods' network namespaces (only the CRI would remove those), then the containerd shims.
pod_netns=()
if pid="$(component_pid kubelet)"; then log "stopping kubelet (pid ${pid})"; stop_pid kubelet "${pid}"; fi
cg="/sys/fs/cgroup/pids/${KANARY_NETNS}"
if [[ -d "${cg}" ]]; then
  mapfile -t procs < <(find "${cg}" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u)
  if (( ${#procs[@]} > 0 )); then
    declare -A ns_inode=()
    for p in "${procs[@]}"; do
      n="$(stat -L -c %i "/proc/${p}/ns/net" 2>/dev/null)" && ns_inode["${n}"]=1
    done
    for f in /run/netns/cni-*; do
      [[ -e "${f}" && -n "${ns_inode[$(stat -L -c %i "${f}" 2>/dev/null)]:-}" ]] && pod_netns+=("${f}")
    done
    log "killing ${#procs[@]} processes of the node's pods"
    kill -KILL "${procs[@]}" 2>/dev/null || true
  fi
fi
pkill -KILL -f -- "containerd-shim-runc-v2 .*-address ${CONTAINERD_SOCK}( |$)" 2>/dev/null || true

declare -A pids=()
for n in "${names[@]}"; do
  if pid="$(component_pid "${n}")"; then
    log "stopping ${n} (pid ${pid})"
    kill -TERM "${pid}" 2>/dev/null || true
    pids["${n}"]="${pid}"
  fi
done
for n in "${names[@]}"; do
  pid="${pids[${n}]:-}"
  if [[ -n "${pid}" ]]; then
    for ((i = 0; i < 100; i++)); do
      kill -0 "${pid}" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "${pid}" 2>/dev/null; then
      log "${n} did not stop in 10s; killing it"
      kill -KILL "${pid}" 2>/dev/null || true
    fi
  fi
  rm -f "$(pid_file "${n}")" "${PID_DIR}/${n}.bin"
done

# What the node leaves behind: mounts (overlay root filesystems, kubelet's volumes), the pods'
# network namespaces, their IP leases, the cluster's cgroups.
if [[ -d "${NODE_DIR}" || -d "${CONTAINERD_RUN}" ]]; then
  findmnt -rn -o TARGET | grep -E "^(${NODE_DIR}|${CONTAINERD_RUN})/" | sort -r | while read -r m; do
    umount -l "${m}" 2>/dev/null || true
  done
fi
left="$(findmnt -rn -o TARGET | grep -E "^(${NODE_DIR}|${CONTAINERD_RUN})/" || true)"
[[ -z "${left}" ]] || log "WARNING: mounts left behind: ${left//$'\n'/ }"
for p in "${pod_netns[@]}"; do ip netns delete "${p##*/}" 2>/dev/null || true; done
rm -rf "${NODE_DIR}/cni/ipam" "${NODE_DIR}/kubelet/pods" "${CONTAINERD_RUN}"
for d in /sys/fs/cgroup/*/"${KANARY_NETNS}"; do
  [[ -d "${d}" ]] && find "${d}" -depth -type d -exec rmdir {} + 2>/dev/null || true
done

if netns_exists; then
  log "removing network namespace ${KANARY_NETNS}"
  ip netns delete "${KANARY_NETNS}"
fi

if [[ "${KANARY_KEEP_DATA:-0}" != 1 && -d "${ETCD_DATA}" ]]; then
  rm -rf "${ETCD_DATA}"
fi
log "cluster down"
