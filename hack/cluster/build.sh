#!/usr/bin/env bash
# Build the local cluster's binaries from the Go module proxy, pinned by the
# wrapper modules in hack/cluster/tools/<component>/go.mod, into
#   ${KANARY_CACHE:-$HOME/.cache/kanary}/bin/<component>-<version>/
# A component whose binaries all exist is skipped. Cold build times are
# written next to the binaries (BUILD_TIME) and printed.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export CGO_ENABLED=0 GOTOOLCHAIN=local
GO="${GO:-go}"
command -v "${GO}" >/dev/null || die "go not found (need Go >= 1.26)"

check_pin() { # module version tools-dir
  grep -qE "^[[:space:]]*(require )?$1 $2( |$)" "${HACK_CLUSTER_DIR}/tools/$3/go.mod" \
    || die "hack/cluster/tools/$3/go.mod does not require $1 $2 (lib.sh and go.mod disagree)"
}
check_pin k8s.io/kubernetes "${K8S_VERSION}" kubernetes
check_pin go.etcd.io/etcd/server/v3 "${ETCD_VERSION}" etcd
check_pin sigs.k8s.io/kwok "${KWOK_VERSION}" kwok
check_pin github.com/coredns/coredns "${COREDNS_VERSION}" coredns

# Runs "go build" in a tools module, printing elapsed seconds every 30 s.
# Args: name tools-dir out-dir ldflags pkg...
build() {
  local name="$1" tools="$2" out="$3" ldflags="$4"; shift 4
  local tmp="${out}.tmp.$$" start=$SECONDS ticker rc=0
  rm -rf "${tmp}"; mkdir -p "${tmp}"
  log "building ${name}: $*"
  ( while sleep 30; do log "  ${name}: still building, $((SECONDS - start))s elapsed"; done ) &
  ticker=$!
  (cd "${HACK_CLUSTER_DIR}/tools/${tools}" && \
    time "${GO}" build -trimpath -tags selinux,notest -ldflags "-s -w ${ldflags}" -o "${tmp}/" "$@") || rc=$?
  kill "${ticker}" 2>/dev/null || true; wait "${ticker}" 2>/dev/null || true
  if (( rc != 0 )); then rm -rf "${tmp}"; die "building ${name} failed (exit ${rc})"; fi
  echo "$((SECONDS - start))s cold build on $(nproc) cores, $(date -u +%Y-%m-%dT%H:%M:%SZ), $("${GO}" version)" > "${tmp}/BUILD_TIME"
  rm -rf "${out}"; mv "${tmp}" "${out}"
  log "built ${name} in $((SECONDS - start))s -> ${out}"
}

have_all() { # dir bin...
  local dir="$1" b; shift
  for b in "$@"; do [[ -x "${dir}/${b}" ]] || return 1; done
}

total_start=$SECONDS

# The control plane, kubectl and the real node's kubelet and kube-proxy in one
# invocation, so the shared packages compile once.
K8S_BINS=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)
if have_all "${BIN_K8S}" "${K8S_BINS[@]}"; then
  log "kubernetes ${K8S_VERSION}: cached in ${BIN_K8S}"
else
  minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  ld=""
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X ${p}.gitVersion=${K8S_VERSION} -X ${p}.gitMajor=1 -X ${p}.gitMinor=${minor}"
    ld+=" -X ${p}.gitTreeState=clean -X ${p}.buildDate=1970-01-01T00:00:00Z"
  done
  pkgs=()
  for b in "${K8S_BINS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/${b}"); done
  build "kubernetes ${K8S_VERSION}" kubernetes "${BIN_K8S}" "${ld}" "${pkgs[@]}"
fi

if have_all "${BIN_ETCD}" etcd; then
  log "etcd ${ETCD_VERSION}: cached in ${BIN_ETCD}"
else
  build "etcd ${ETCD_VERSION}" etcd "${BIN_ETCD}" "" go.etcd.io/etcd/server/v3
  # go build names a .../server/v3 main "server"
  for n in server v3; do
    if [[ -x "${BIN_ETCD}/${n}" ]]; then mv "${BIN_ETCD}/${n}" "${BIN_ETCD}/etcd"; fi
  done
  [[ -x "${BIN_ETCD}/etcd" ]] || { ls -l "${BIN_ETCD}"; die "etcd binary missing after build"; }
fi

if have_all "${BIN_KWOK}" kwok; then
  log "kwok ${KWOK_VERSION}: cached in ${BIN_KWOK}"
else
  build "kwok ${KWOK_VERSION}" kwok "${BIN_KWOK}" "" sigs.k8s.io/kwok/cmd/kwok
fi

# CoreDNS with only the plugins the cluster DNS uses (tools/coredns/main.go).
if have_all "${BIN_COREDNS}" coredns; then
  log "coredns ${COREDNS_VERSION}: cached in ${BIN_COREDNS}"
else
  build "coredns ${COREDNS_VERSION}" coredns "${BIN_COREDNS}" \
    "-X github.com/coredns/coredns/coremain.GitCommit=${COREDNS_VERSION}" kanary.local/hack/cluster/tools/coredns
fi

# Gateway API CRDs and kwok's Stages come from the module cache: make sure
# they are downloaded now so "up" needs nothing from the network.
gw="$(go_module_dir "sigs.k8s.io/gateway-api@${GATEWAY_API_VERSION}")"
[[ -d "${gw}/config/crd/standard" ]] || die "gateway-api ${GATEWAY_API_VERSION} CRDs not found in the module cache"
kw="$(go_module_dir "sigs.k8s.io/kwok@${KWOK_VERSION}")"
[[ -d "${kw}/kustomize/stage" ]] || die "kwok ${KWOK_VERSION} stages not found in the module cache"

log "all binaries ready ($((SECONDS - total_start))s)"
