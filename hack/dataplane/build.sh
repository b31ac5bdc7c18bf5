#!/usr/bin/env bash
# Build Traefik (the Gateway API data plane) from the Go module proxy, pinned
# by the wrapper module hack/dataplane/tools/traefik/go.mod, into
#   ${KANARY_CACHE:-$HOME/.cache/kanary}/bin/traefik-<version>/traefik
# Skipped when the binary exists. The cold build time is written next to it
# (BUILD_TIME) and printed. Same layout as hack/cluster/build.sh.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export CGO_ENABLED=0 GOTOOLCHAIN=local
GO="${GO:-go}"
command -v "${GO}" >/dev/null || die "go not found (need Go >= 1.25)"
TOOLS="${HACK_DATAPLANE_DIR}/tools/traefik"
grep -qE "^[[:space:]]*(require )?github.com/traefik/traefik/v3 ${TRAEFIK_VERSION}( |$)" "${TOOLS}/go.mod" \
  || die "hack/dataplane/tools/traefik/go.mod does not require traefik ${TRAEFIK_VERSION} (lib.sh and go.mod disagree)"

if [[ -x "${BIN_TRAEFIK}/traefik" ]]; then
  log "traefik ${TRAEFIK_VERSION}: cached in ${BIN_TRAEFIK}"
  exit 0
fi

start=$SECONDS
tmp="${BIN_TRAEFIK}.tmp.$$"
rm -rf "${tmp}"; mkdir -p "${tmp}"
trap 'rm -rf "${tmp}"' EXIT
log "building traefik ${TRAEFIK_VERSION} (cold builds take many minutes on 2 cores)"
( while sleep 30; do log "  traefik: still building, $((SECONDS - start))s elapsed"; done ) &
ticker=$!
rc=0
ld="-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=${TRAEFIK_VERSION#v}"
ld+=" -X github.com/traefik/traefik/v3/pkg/version.BuildDate=1970-01-01T00:00:00Z"
(cd "${TOOLS}" && "${GO}" build -trimpath -ldflags "${ld}" -o "${tmp}/traefik" \
  github.com/traefik/traefik/v3/cmd/traefik) || rc=$?
kill "${ticker}" 2>/dev/null || true; wait "${ticker}" 2>/dev/null || true
(( rc == 0 )) || die "building traefik failed (exit ${rc})"
echo "$((SECONDS - start))s cold build on $(nproc) cores, $(date -u +%Y-%m-%dT%H:%M:%SZ), $("${GO}" version)" > "${tmp}/BUILD_TIME"
rm -rf "${BIN_TRAEFIK}"; mv "${tmp}" "${BIN_TRAEFIK}"
trap - EXIT
log "built traefik ${TRAEFIK_VERSION} in $((SECONDS - start))s -> ${BIN_TRAEFIK}"
