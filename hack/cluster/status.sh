#!/usr/bin/env bash
# Show the local cluster's processes (from the pid files) and their memory.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

total=0
printf '%-26s %-8s %s\n' COMPONENT PID RSS_MiB
for f in "${PID_DIR}"/*.pid; do
  [[ -e "${f}" ]] || continue
  c="$(basename "${f}" .pid)"
  if pid="$(component_pid "${c}")"; then
    rss="$(awk '/^VmRSS:/ {print $2}' "/proc/${pid}/status")"
    total=$((total + rss))
    printf '%-26s %-8s %d\n' "${c}" "${pid}" $((rss / 1024))
  else
    printf '%-26s %-8s %s\n' "${c}" "-" "not running (stale pid file)"
  fi
done
printf '%-26s %-8s %d\n' total "" $((total / 1024))
netns_exists && echo "netns ${KANARY_NETNS}: present" || echo "netns ${KANARY_NETNS}: absent"
