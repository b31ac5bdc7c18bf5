# shellcheck shell=bash
# The release steps after a build (issue 16), sourced by hack/images/build.sh,
# hack/cluster/node-up.sh, hack/kind-up.sh and hack/scan/scan.sh. See README.md in this folder.
#
#   go_tool NAME MODULE VERSION   print the path of a pinned Go tool, `go install`ed once into
#                                 $KANARY_CACHE/bin/NAME-VERSION-GOVERSION (the toolchain that
#                                 builds it is part of what it is: GOTOOLCHAIN picks it)
#   sbom_go BINARY OUT            CycloneDX JSON of the Go modules linked into BINARY
#   sign FILE                     FILE.sigstore.json, a cosign bundle made with the signing key
#   verify FILE                   cosign verify-blob of FILE against its bundle and the public key
#
# The key: KANARY_COSIGN_KEY (a cosign private key; its password in COSIGN_PASSWORD) and
# KANARY_COSIGN_PUB (its public key) when given; otherwise a key pair the build generates once,
# with an empty password, in $KANARY_CACHE/cosign/. Signing and verifying are offline: no
# transparency log, no timestamp authority (the bundle carries the signature and the key hint).

COSIGN_VERSION=v3.1.3             # github.com/sigstore/cosign/v3
CYCLONEDX_GOMOD_VERSION=v1.10.0   # github.com/CycloneDX/cyclonedx-gomod
CYCLONEDX_PY_VERSION=7.5.0        # cyclonedx-bom on PyPI (cyclonedx-py), run in the operator image

: "${KANARY_CACHE:=${HOME}/.cache/kanary}"
RELEASE_KEY_DIR="${KANARY_CACHE}/cosign"

release_log() { printf '[release %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
release_die() { release_log "ERROR: $*"; exit 1; }

go_tool() { # NAME MODULE VERSION
  local name="$1" module="$2" version="$3" bin tmp goversion start=$SECONDS
  command -v go >/dev/null || release_die "missing go: it builds ${name} ${version}"
  goversion="$(cd / && go env GOVERSION)" || release_die "go env GOVERSION failed (GOTOOLCHAIN=${GOTOOLCHAIN:-})"
  bin="${KANARY_CACHE}/bin/${name}-${version}-${goversion}"
  if [[ ! -x "${bin}" ]]; then
    release_log "installing ${name} ${version} with ${goversion} (go install ${module}@${version}, once) into ${KANARY_CACHE}/bin"
    mkdir -p "${KANARY_CACHE}/bin"
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/kanary-gotool.XXXXXX")"
    # Outside any module, so that the tool's own go.mod decides its dependencies.
    if ! (cd "${tmp}" && GOBIN="${tmp}/bin" CGO_ENABLED=0 GOFLAGS= go install -trimpath \
      "${module}@${version}" >&2); then
      rm -rf "${tmp}"
      release_die "go install ${module}@${version} failed"
    fi
    mv "${tmp}/bin/${name}" "${bin}"
    rm -rf "${tmp}"
    release_log "installed ${name} ${version} in $((SECONDS - start))s"
  fi
  echo "${bin}"
}
cosign_bin() { go_tool cosign github.com/sigstore/cosign/v3/cmd/cosign "${COSIGN_VERSION}"; }

sbom_go() { # BINARY OUT
  local tool
  tool="$(go_tool cyclonedx-gomod github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod \
    "${CYCLONEDX_GOMOD_VERSION}")"
  # -std: the Go standard library is a component too (the scan's stdlib findings name it).
  "${tool}" bin -json -std -output "$2.tmp" "$1" >/dev/null 2>"$2.log" \
    || { cat "$2.log" >&2; release_die "cyclonedx-gomod bin $1 failed"; }
  rm -f "$2.log"
  mv "$2.tmp" "$2"
}

# release_keys: the private and public key paths, generating a pair when none is given.
release_keys() {
  if [[ -n "${KANARY_COSIGN_KEY:-}" ]]; then
    [[ -f "${KANARY_COSIGN_KEY}" ]] || release_die "KANARY_COSIGN_KEY=${KANARY_COSIGN_KEY}: no such file"
    [[ -f "${KANARY_COSIGN_PUB:-}" ]] \
      || release_die "KANARY_COSIGN_KEY is set but KANARY_COSIGN_PUB (its public key) is not a file"
    echo "${KANARY_COSIGN_KEY} ${KANARY_COSIGN_PUB}"
    return
  fi
  if [[ ! -f "${RELEASE_KEY_DIR}/cosign.key" ]]; then
    local cosign
    cosign="$(cosign_bin)"
    # cosign writes cosign.key mode 0600; the folder stays readable, so that a user can verify
    # with cosign.pub what root built (hack/kind-up.sh builds with sudo).
    mkdir -p "${RELEASE_KEY_DIR}"
    release_log "generating a signing key pair in ${RELEASE_KEY_DIR} (empty password; give your own with KANARY_COSIGN_KEY)"
    (cd "${RELEASE_KEY_DIR}" && COSIGN_PASSWORD= "${cosign}" generate-key-pair >/dev/null 2>&1) \
      || release_die "cosign generate-key-pair failed"
  fi
  echo "${RELEASE_KEY_DIR}/cosign.key ${RELEASE_KEY_DIR}/cosign.pub"
}

# An offline signing config: no Fulcio, Rekor or timestamp authority (cosign v3 asks for one).
signing_config() {
  local sc="${RELEASE_KEY_DIR}/signing-config-${COSIGN_VERSION}.json" cosign
  if [[ ! -s "${sc}" ]]; then
    cosign="$(cosign_bin)"
    mkdir -p "${RELEASE_KEY_DIR}"
    "${cosign}" signing-config create --out "${sc}" >/dev/null 2>&1 \
      || release_die "cosign signing-config create failed"
  fi
  echo "${sc}"
}

sign() { # FILE
  local cosign keys sc
  cosign="$(cosign_bin)"
  read -r -a keys <<<"$(release_keys)"
  sc="$(signing_config)"
  rm -f "$1.sigstore.json"
  COSIGN_PASSWORD="${COSIGN_PASSWORD:-}" "${cosign}" sign-blob --yes --key "${keys[0]}" \
    --signing-config "${sc}" --bundle "$1.sigstore.json" "$1" >/dev/null 2>"$1.sign.log" \
    || { cat "$1.sign.log" >&2; rm -f "$1.sign.log"; release_die "cosign sign-blob $1 failed"; }
  rm -f "$1.sign.log"
}

# verify FILE: 0 when FILE.sigstore.json is a valid signature of FILE by the public key;
# otherwise 1, with cosign's reason on stderr.
verify() { # FILE
  local cosign keys out
  cosign="$(cosign_bin)"
  read -r -a keys <<<"$(release_keys)"
  if [[ ! -f "$1.sigstore.json" ]]; then
    release_log "$1: no signature ($1.sigstore.json is missing)"
    return 1
  fi
  if ! out="$("${cosign}" verify-blob --key "${keys[1]}" --bundle "$1.sigstore.json" \
    --insecure-ignore-tlog=true "$1" 2>&1)"; then
    release_log "$1: signature verification FAILED against ${keys[1]}: $(tail -n 1 <<<"${out}")"
    return 1
  fi
}
