#!/usr/bin/env bash
# Run a command inside the cluster's network namespace, where the API server
# (127.0.0.1:6443) and the pod IPs are. Creates the namespace if missing, so
# it works before "up" (e.g. hack/cluster/exec.sh pytest, whose fixtures start
# the cluster). KUBECONFIG defaults to the admin kubeconfig and the cached
# kubectl comes first on PATH.
#   hack/cluster/exec.sh kubectl get pods -A
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

(( $# > 0 )) || die "usage: $0 COMMAND [ARG...]"
[[ ${EUID} -eq 0 ]] || die "needs root (ip netns)"
# Under the state lock (in a subshell, so the command does not inherit it),
# so that a concurrent down.sh cannot delete the netns half-way.
mkdir -p "${KANARY_STATE}"
( lock_state; ensure_netns )
export KUBECONFIG="${KUBECONFIG:-${KUBECONFIG_PATH}}"
# Every local cluster serves at 127.0.0.1:6443 (in its own netns): kubectl's discovery cache is
# keyed by host:port, so each state folder gets its own.
export KUBECACHEDIR="${KUBECACHEDIR:-${KANARY_STATE}/kubecache}"
export PATH="${BIN_K8S}:${PATH}"
export KANARY_NETNS KANARY_CACHE KANARY_STATE
# nsenter (not `ip netns exec`): the host's mount namespace, so that scripts started from
# here (node-up.sh from the test fixtures) start the node's containerd and kubelet there.
exec nsenter "--net=/run/netns/${KANARY_NETNS}" "$@"
