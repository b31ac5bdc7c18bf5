#!/usr/bin/env bash
# Load image tarballs into the local cluster's containerd (namespace k8s.io), after verifying
# their signatures: one tarball (or SBOM) that does not verify and nothing is imported.
#
#   hack/cluster/load-images.sh [IMAGE.tar...]   (default: every tarball hack/images/build.sh
#                                                 wrote in $KANARY_CACHE/images)
#
# hack/cluster/node-up.sh runs it; run it alone to load a rebuilt image into a running node.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IMAGES_DIR="${KANARY_CACHE}/images"
[[ ${EUID} -eq 0 ]] || die "needs root (containerd's socket); run as root"
command -v ctr >/dev/null || die "ctr not found: run hack/cluster/node-install.sh (make cluster-up does)"
ctr_() { ctr --address "${CONTAINERD_SOCK}" --namespace k8s.io "$@"; }
ctr_ version >/dev/null 2>&1 || die "containerd is not serving at ${CONTAINERD_SOCK}: run hack/cluster/node-up.sh"

tars=("$@")
if (( ${#tars[@]} == 0 )); then
  shopt -s nullglob
  tars=("${IMAGES_DIR}"/*.tar)
  shopt -u nullglob
  (( ${#tars[@]} > 0 )) || die "no images in ${IMAGES_DIR}: run hack/images/build.sh (make images) first"
fi
# Signed by hack/images/build.sh: a tarball (or SBOM) changed since, or signed with another
# key, is not loaded.
"${REPO_ROOT}/hack/release/verify.sh" "${tars[@]}" \
  || die "refusing to load images whose signature does not verify (above): rebuild them with make images"
# A stamp per tarball (next to containerd's root, which holds the images) skips the ones
# imported since they were last written.
mkdir -p "${NODE_DIR}/imported"
for t in "${tars[@]}"; do
  stamp="${NODE_DIR}/imported/${t##*/}"
  [[ "$(cat "${stamp}" 2>/dev/null)" == "$(stat -c %Y-%s-%n "${t}")" ]] && continue
  log "importing ${t##*/} into containerd"
  ctr_ images import "${t}" >/dev/null || die "ctr images import ${t} failed"
  stat -c %Y-%s-%n "${t}" > "${stamp}"
done
