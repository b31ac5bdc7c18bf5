#!/usr/bin/env bash
# make demo: everything from a fresh machine to a canary rollout with real traffic.
# Builds are cached in $KANARY_CACHE (the first run takes tens of minutes; later ones, seconds).
# Ctrl-C leaves the cluster running; `make cluster-down` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=dataplane/lib.sh
source hack/dataplane/lib.sh
t0=$SECONDS
step() { printf '\n\033[1m==> %s\033[0m  (+%ss)\n' "$*" "$((SECONDS - t0))"; }

[[ ${EUID} -eq 0 ]] || die "the local cluster needs root (network namespaces): run as root"
step "Python environment (.venv)";                        hack/install-python.sh
step "Cluster binaries (cached in ${KANARY_CACHE}/bin)";  hack/cluster/build.sh
step "Traefik, Prometheus (cached)";                      hack/dataplane/build.sh
step "Node packages: containerd, runc, CNI (Debian)";     hack/cluster/node-install.sh
step "Gin service (app/bin/gin-demo)";                    make -s -C app build
step "Images, built without a daemon (cached)";           hack/images/build.sh
step "Local cluster: control plane";                      hack/cluster/up.sh
step "Local cluster: the real node";                      hack/cluster/node-up.sh
# The tests' way (data plane and operator as processes) and the user's way do not mix.
if component_pid kanary-operator >/dev/null || component_pid traefik >/dev/null; then
  step "Stopping the process data plane and operator the tests left running"
  hack/dataplane/down.sh
  if pid="$(component_pid kanary-operator)"; then stop_pid kanary-operator "${pid}"; fi
fi
step "kanary, Traefik, Prometheus as pods (manifests/)";  hack/cluster/install.sh
step "Alertmanager (Debian's, a process) as monitoring/alertmanager; alerts of every Rollout to it"
hack/dataplane/install.sh
hack/dataplane/alertmanager-up.sh
kc() { in_netns "${KUBECTL}" --kubeconfig "${KUBECONFIG_PATH}" "$@"; }
kc apply -f manifests/alerting/oncall.yaml
kc -n kanary-system set env deployment/kanary KANARY_ALERT_PROVIDERS=kanary-system/oncall
kc -n kanary-system rollout status deployment/kanary --timeout=120s
step "Demo"
hack/cluster/exec.sh .venv/bin/python hack/demo.py --kubeconfig "${KUBECONFIG_PATH}" \
  --gateway "http://${NODE_IP}:8000/" --alertmanager "http://${NODE_IP}:9093/"
printf '\nDone in %ss. The cluster is still up:\n' "$((SECONDS - t0))"
printf '  hack/cluster/exec.sh .venv/bin/kanary status gin-demo -n demo\n'
printf '  hack/cluster/exec.sh kubectl -n kanary-system logs -l app.kubernetes.io/name=kanary --prefix   # both replicas\n'
printf '  hack/cluster/exec.sh kubectl -n kanary-system get lease kanary-leader   # which one leads\n'
printf '  hack/cluster/exec.sh kubectl get rollouts -A\n'
printf '  hack/cluster/exec.sh curl -s http://%s:9093/api/v2/alerts   # Alertmanager\n' "${NODE_IP}"
printf '  make cluster-down\n'
