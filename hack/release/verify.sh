#!/usr/bin/env bash
# Verify image tarballs before they are loaded into a cluster: the cosign signature of each
# NAME.tar, and of its SBOM NAME.sbom.cdx.json when there is one (hack/images/build.sh writes
# and signs both). Exit 0 when every file verifies; 1, naming each file that does not.
#
#   hack/release/verify.sh IMAGE.tar...
#
# The public key: KANARY_COSIGN_PUB, else the pair the build generated in $KANARY_CACHE/cosign.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
(( $# > 0 )) || release_die "usage: $0 IMAGE.tar..."
bad=0
n=0
for tar in "$@"; do
  [[ -f "${tar}" ]] || { release_log "${tar}: no such file"; bad=1; continue; }
  files=("${tar}")
  [[ ! -f "${tar%.tar}.sbom.cdx.json" ]] || files+=("${tar%.tar}.sbom.cdx.json")
  for f in "${files[@]}"; do
    if verify "${f}"; then n=$((n + 1)); else bad=1; fi
  done
done
(( bad == 0 )) || exit 1
release_log "verified ${n} signatures ($# images) against $(read -r -a k <<<"$(release_keys)"; echo "${k[1]}")"
