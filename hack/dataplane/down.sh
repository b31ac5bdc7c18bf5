#!/usr/bin/env bash
# Stop the data plane (pod-runner, prometheus, alertmanager, traefik): only the
# processes named by their pid files, then any app process the runner left behind
# (its per-pod pid files, killed only if the process is inside the cluster's netns).
# Prometheus' and Alertmanager's data (TSDB; silences, notification log) are
# deleted unless KANARY_KEEP_DATA=1. The cluster keeps
# running: hack/cluster/down.sh stops it (and would stop these too).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if declare -F lock_state >/dev/null; then lock_state; fi

# SIGTERM to all at once (the runner stops its pod processes itself, bounded:
# 8 s), then wait up to 15 s each before SIGKILL.
pids=() names=()
for ((idx = ${#DATAPLANE_COMPONENTS[@]} - 1; idx >= 0; idx--)); do
  name="${DATAPLANE_COMPONENTS[idx]}"
  if pid="$(component_pid "${name}")"; then
    log "stopping ${name} (pid ${pid})"
    kill -TERM "${pid}" 2>/dev/null || true
    pids+=("${pid}"); names+=("${name}")
  fi
done
for i in "${!pids[@]}"; do
  stop_pid "${names[i]}" "${pids[i]}" 150
done
for name in "${DATAPLANE_COMPONENTS[@]}"; do
  rm -f "$(pid_file "${name}")" "${PID_DIR}/${name}.bin"
done

# Pod processes whose runner was killed before it could stop them.
if [[ -d "${PID_DIR}/pods" ]]; then
  for f in "${PID_DIR}/pods"/*.pid; do
    [[ -e "${f}" ]] || continue
    pid="$(cat "${f}")"
    if [[ -n "${pid}" ]] && kill -0 "${pid}" 2>/dev/null \
      && [[ "$(ip netns identify "${pid}" 2>/dev/null)" == "${KANARY_NETNS}" ]]; then
      log "stopping leftover pod process $(basename "${f}" .pid) (pid ${pid})"
      stop_pid "$(basename "${f}" .pid)" "${pid}" 50
    fi
    rm -f "${f}"
  done
fi

if [[ "${KANARY_KEEP_DATA:-0}" != 1 ]]; then
  rm -rf "${DATAPLANE_STATE}/prometheus" "${DATAPLANE_STATE}/alertmanager"
fi
log "data plane down"
