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

if netns_exists; then
  log "removing network namespace ${KANARY_NETNS}"
  ip netns delete "${KANARY_NETNS}"
fi

if [[ "${KANARY_KEEP_DATA:-0}" != 1 && -d "${ETCD_DATA}" ]]; then
  rm -rf "${ETCD_DATA}"
fi
log "cluster down"
