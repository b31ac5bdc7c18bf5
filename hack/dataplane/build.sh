#!/usr/bin/env bash
# Build the data plane's binaries from the Go module proxy, pinned by wrapper
# modules in hack/dataplane/tools/<component>/go.mod, into
#   ${KANARY_CACHE:-$HOME/.cache/kanary}/bin/<component>-<version>/
#   traefik     github.com/traefik/traefik/v3/cmd/traefik
#   prometheus  github.com/prometheus/prometheus/cmd/prometheus, with only the
#               Kubernetes (+ file, http) service discovery: built from a copy
#               of the module where tools/prometheus/plugins.go replaces
#               upstream's generated plugins/plugins.go (upstream's documented
#               way to choose service discoveries). (Debian's prometheus package is built without
#               kubernetes_sd_configs, so it cannot discover pods.)
# Args: the components to build (default: all). A component whose binary
# exists is skipped. Cold build times are written next
# to the binaries (BUILD_TIME) and printed. Same layout as hack/cluster/build.sh.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export CGO_ENABLED=0 GOTOOLCHAIN=local
GO="${GO:-go}"
command -v "${GO}" >/dev/null || die "go not found (need Go >= 1.25)"

check_pin() { # module version tools-dir
  grep -qE "^[[:space:]]*(require )?$1 $2( |$)" "${HACK_DATAPLANE_DIR}/tools/$3/go.mod" \
    || die "hack/dataplane/tools/$3/go.mod does not require $1 $2 (lib.sh and go.mod disagree)"
}
check_pin github.com/traefik/traefik/v3 "${TRAEFIK_VERSION}" traefik
check_pin github.com/prometheus/prometheus "${PROMETHEUS_MODULE_VERSION}" prometheus

# build NAME DIR OUT-DIR BINARY LDFLAGS PKG...  (DIR: tools/<DIR>, or an absolute path)
# Runs "go build" in a tools module, printing elapsed seconds every 30 s.
build() {
  local name="$1" tools="$2" out="$3" bin="$4" ldflags="$5"; shift 5
  local tmp="${out}.tmp.$$" start=$SECONDS ticker rc=0
  rm -rf "${tmp}"; mkdir -p "${tmp}"
  log "building ${name} (cold builds take many minutes on 2 cores)"
  ( while sleep 30; do log "  ${name}: still building, $((SECONDS - start))s elapsed"; done ) &
  ticker=$!
  [[ "${tools}" == /* ]] || tools="${HACK_DATAPLANE_DIR}/tools/${tools}"
  (cd "${tools}" && \
    "${GO}" build -trimpath -ldflags "-s -w ${ldflags}" -o "${tmp}/${bin}" "$@") || rc=$?
  kill "${ticker}" 2>/dev/null || true; wait "${ticker}" 2>/dev/null || true
  if (( rc != 0 )); then rm -rf "${tmp}"; die "building ${name} failed (exit ${rc})"; fi
  echo "$((SECONDS - start))s cold build on $(nproc) cores, $(date -u +%Y-%m-%dT%H:%M:%SZ), $("${GO}" version)" > "${tmp}/BUILD_TIME"
  rm -rf "${out}"; mv "${tmp}" "${out}"
  log "built ${name} in $((SECONDS - start))s -> ${out}"
}

total_start=$SECONDS
want() { (( ${#ONLY[@]} == 0 )) || [[ " ${ONLY[*]} " == *" $1 "* ]]; }
ONLY=("$@")

if ! want traefik; then
  :
elif [[ -x "${BIN_TRAEFIK}/traefik" ]]; then
  log "traefik ${TRAEFIK_VERSION}: cached in ${BIN_TRAEFIK}"
else
  p=github.com/traefik/traefik/v3/pkg/version
  build "traefik ${TRAEFIK_VERSION}" traefik "${BIN_TRAEFIK}" traefik \
    "-X ${p}.Version=${TRAEFIK_VERSION#v} -X ${p}.BuildDate=1970-01-01T00:00:00Z" \
    github.com/traefik/traefik/v3/cmd/traefik
fi

if ! want prometheus; then
  :
elif [[ -x "${BIN_PROMETHEUS}/prometheus" ]]; then
  log "prometheus ${PROMETHEUS_VERSION}: cached in ${BIN_PROMETHEUS}"
else
  mod_dir="$(cd "${HACK_DATAPLANE_DIR}/tools/prometheus" && "${GO}" mod download -json \
    "github.com/prometheus/prometheus@${PROMETHEUS_MODULE_VERSION}" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -f "${mod_dir}/plugins/plugins.go" ]] || die "prometheus module not found in the module cache"
  # go build -overlay may not replace files in the module cache: build from a
  # copy of the (checksum-verified) module with our plugins.go, using the
  # module's own go.mod/go.sum (its replaces and excludes included).
  src="${KANARY_CACHE}/src/prometheus-${PROMETHEUS_MODULE_VERSION}.$$"
  rm -rf "${src}"; mkdir -p "$(dirname "${src}")"
  cp -R "${mod_dir}" "${src}"; chmod -R u+w "${src}"
  cp "${HACK_DATAPLANE_DIR}/tools/prometheus/plugins.go" "${src}/plugins/plugins.go"
  p=github.com/prometheus/common/version
  build "prometheus ${PROMETHEUS_VERSION}" "${src}" "${BIN_PROMETHEUS}" prometheus \
    "-X ${p}.Version=${PROMETHEUS_VERSION#v} -X ${p}.Branch=kanary -X ${p}.Revision=${PROMETHEUS_MODULE_VERSION} -X ${p}.BuildUser=kanary -X ${p}.BuildDate=19700101-00:00:00" \
    ./cmd/prometheus
  rm -rf "${src}"
fi

log "data plane binaries ready ($((SECONDS - total_start))s)"
