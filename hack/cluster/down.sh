#!/usr/bin/env bash
# Stop the local cluster: only the processes named by our pid files, in the
# reverse start order, then remove the network namespace. etcd's data is
# deleted too (the next "up" starts empty) unless KANARY_KEEP_DATA=1.
# Certificates, tokens and the kubeconfig are kept (they are reused).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

stop_component() {
  local name="$1" f pid i
  f="$(pid_file "${name}")"
  [[ -f "${f}" ]] || return 0
  if pid="$(component_pid "${name}")"; then
    log "stopping ${name} (pid ${pid})"
    kill -TERM "${pid}" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      kill -0 "${pid}" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "${pid}" 2>/dev/null; then
      log "${name} did not stop in 10s; killing it"
      kill -KILL "${pid}" 2>/dev/null || true
    fi
  fi
  rm -f "${f}" "${PID_DIR}/${name}.bin"
}

lock_state
if [[ -d "${PID_DIR}" ]]; then
  for ((idx = ${#COMPONENTS[@]} - 1; idx >= 0; idx--)); do
    stop_component "${COMPONENTS[idx]}"
  done
  # pid files of later additions (not in COMPONENTS) too
  for f in "${PID_DIR}"/*.pid; do
    [[ -e "${f}" ]] || continue
    stop_component "$(basename "${f}" .pid)"
  done
fi

if netns_exists; then
  log "removing network namespace ${KANARY_NETNS}"
  ip netns delete "${KANARY_NETNS}"
fi

if [[ "${KANARY_KEEP_DATA:-0}" != 1 && -d "${ETCD_DATA}" ]]; then
  rm -rf "${ETCD_DATA}"
fi
log "cluster down"
