#!/usr/bin/env bash
# Build the container images of the local cluster's real node without a daemon, as docker-save
# style tarballs (what `ctr -n k8s.io images import` and `kind load image-archive` read), one
# per image in ${KANARY_CACHE:-$HOME/.cache/kanary}/images/:
#   pause.tar       registry.k8s.io/pause:3.10.1           pause.c of k8s.io/kubernetes, gcc -static
#   traefik.tar     traefik:v3.6                           the binary of hack/dataplane/build.sh
#   prometheus.tar  quay.io/prometheus/prometheus:v2.42.0  the binary of hack/dataplane/build.sh
#   operator.tar    kanary/operator:0.1.0                  the Dockerfile's image, on Debian's python3.11
# Beside each NAME.tar (hack/release/lib.sh, issue 16):
#   NAME.sbom.cdx.json          CycloneDX SBOM (all but pause, a C binary no SBOM tool here reads):
#                               cyclonedx-gomod for the Go binaries, cyclonedx-py plus the Debian
#                               packages for the operator
#   NAME.debug                  the Gin demo's debug symbols (objcopy), same GNU build id as its binary
#   NAME.tar.sigstore.json      cosign signatures of the tarball and of the SBOM; hack/cluster/node-up.sh
#   NAME.sbom.cdx.json.sigstore.json   and hack/kind-up.sh verify them before loading the image
# Args: the images to build (default: all four). An image whose inputs are unchanged (listed
# with their hashes in NAME.tar.inputs) is skipped; KANARY_IMAGES_FORCE=1 rebuilds.
# Needs root (chroot, file owners), go, gcc + libc6-dev, apt-get + dpkg-deb, python3 with pip.
# See README.md in this folder.
set -euo pipefail
HACK_IMAGES_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# hack/cluster/lib.sh (KANARY_CACHE, K8S_VERSION, go_module_dir) plus BIN_TRAEFIK, BIN_PROMETHEUS.
# shellcheck source-path=SCRIPTDIR source=../dataplane/lib.sh
source "${HACK_IMAGES_DIR}/../dataplane/lib.sh"
# shellcheck source=../release/lib.sh
source "${HACK_IMAGES_DIR}/../release/lib.sh"
log() { printf '[images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

PAUSE_TAG="${PAUSE_IMAGE:-registry.k8s.io/pause:3.10.1}"   # kubeadm's for Kubernetes 1.34
TRAEFIK_TAG="traefik:v3.6"                                  # manifests/traefik/deployment.yaml
PROMETHEUS_TAG="quay.io/prometheus/prometheus:${PROMETHEUS_VERSION}"   # manifests/prometheus/
OPERATOR_TAG="kanary/operator:0.1.0"                        # manifests/operator.yaml

# Debian bookworm packages of the operator image: Python 3.11 and the shared libraries its
# modules and wheels load (build_operator checks every ELF file with ld.so). Bump them
# together (on Debian 12: apt-cache policy NAME); apt_ below fetches them.
OPERATOR_DEBS=(
  python3.11-minimal=3.11.2-6+deb12u9
  libpython3.11-minimal=3.11.2-6+deb12u9
  libpython3.11-stdlib=3.11.2-6+deb12u9
  libc6=2.36-9+deb12u14
  libgcc-s1=12.2.0-14+deb12u1
  "libstdc++6=12.2.0-14+deb12u1"
  libssl3=3.0.22-1~deb12u2
  zlib1g=1:1.2.13.dfsg-1+deb12u1
  libffi8=3.4.4-1
  libexpat1=2.5.0-1+deb12u5
  libbz2-1.0=1.0.8-5+b1
  liblzma5=5.4.1-1+deb12u2
  libuuid1=2.38.1-5+deb12u3
  libcrypt1=1:4.4.33-2
)
BASE_FILES_DEB="base-files=12.4+deb12u15"      # /etc/os-release only
CA_DEB="ca-certificates=20250419~deb12u2"      # the CA bundle of traefik, prometheus, operator
PIP_VERSION="26.3"                             # runs inside the chroot; not left in the image

IMAGES_DIR="${KANARY_CACHE}/images"
WORK="${IMAGES_DIR}/.work"           # a build's scratch space (rootfs trees), removed after it
DEBS="${IMAGES_DIR}/.debs"           # downloaded .deb files, kept
APT_DIR="${IMAGES_DIR}/.apt"         # apt's lists for bookworm, whatever the host's sources are
MKIMAGE="${IMAGES_DIR}/.bin/mkimage"
ETC="${HACK_IMAGES_DIR}/etc"         # passwd, group (root, nobody 65534, nonroot 65532), nsswitch.conf
FORCE="${KANARY_IMAGES_FORCE:-0}"
# The Gin demo's tags the examples, the demo and the tests roll out: one image each, its
# version stamped into the binary (make -C app image, the app's own verified builder).
GIN_VERSIONS=(v1 v2 v3 v4)
ALL=(pause traefik prometheus operator "${GIN_VERSIONS[@]/#/gin-demo-}")
DEBIAN_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
CHROOT="$(command -v chroot || true)"

size() { numfmt --to=iec-i --suffix=B "$(stat -c %s "$1")"; }
need_root() { [[ ${EUID} -eq 0 ]] || die "$1 needs root ($2): run as root or with sudo"; }

# ------------------------------------------------------------------ tools ---
# mkimage (./mkimage, go-containerregistry), rebuilt when its sources or Go change.
build_mkimage() {
  MKIMAGE_KEY="$({ go version; cd "${HACK_IMAGES_DIR}" && cat go.mod go.sum mkimage/*.go; } | sha256sum | cut -c1-16)"
  if [[ -x "${MKIMAGE}" && "$(cat "${MKIMAGE}.key" 2>/dev/null)" == "${MKIMAGE_KEY}" ]]; then
    return
  fi
  local start=$SECONDS
  log "building mkimage (hack/images/mkimage, go-containerregistry)"
  mkdir -p "${MKIMAGE%/*}"
  (cd "${HACK_IMAGES_DIR}" && GOTOOLCHAIN=local CGO_ENABLED=0 go build -trimpath -o "${MKIMAGE}.tmp" ./mkimage) \
    || die "building mkimage failed"
  mv "${MKIMAGE}.tmp" "${MKIMAGE}"
  echo "${MKIMAGE_KEY}" > "${MKIMAGE}.key"
  log "built mkimage in $((SECONDS - start))s"
}

# apt-get with its own lists of Debian bookworm (main, updates, security), so that the pins
# resolve on any host with apt (Debian 12 or not) and the host's apt state is left alone.
apt_() {
  apt-get -qq -o "Dir::State=${APT_DIR}/state" -o Dir::State::status=/dev/null \
    -o "Dir::Cache=${APT_DIR}/cache" -o "Dir::Etc::SourceList=${APT_DIR}/sources.list" \
    -o Dir::Etc::SourceParts=- -o Acquire::Languages=none -o APT::Sandbox::User=root "$@"
}
apt_update() {
  [[ -f "${DEBIAN_KEYRING}" ]] || die "missing ${DEBIAN_KEYRING}: apt-get install debian-archive-keyring"
  mkdir -p "${APT_DIR}/state/lists/partial" "${APT_DIR}/cache/archives/partial"
  local suite
  for suite in "debian bookworm" "debian bookworm-updates" "debian-security bookworm-security"; do
    echo "deb [signed-by=${DEBIAN_KEYRING}] http://deb.debian.org/${suite% *} ${suite#* } main"
  done > "${APT_DIR}/sources.list"
  log "  apt-get update: Debian bookworm package lists (into ${APT_DIR})"
  apt_ update || die "apt-get update of Debian bookworm failed"
  touch "${APT_DIR}/updated"
}

# fetch_deb NAME=VERSION: print the path of that .deb, downloaded once into ${DEBS}.
fetch_deb() {
  local pkg="${1%%=*}" ver="${1#*=}" f
  f="${DEBS}/${pkg}_${ver//:/%3a}_$(dpkg --print-architecture).deb"
  [[ -f "${f}" ]] || f="${f%_*}_all.deb"
  if [[ ! -f "${f}" ]]; then
    mkdir -p "${DEBS}"
    [[ -f "${APT_DIR}/updated" ]] || apt_update
    if ! (cd "${DEBS}" && apt_ download "$1" 2>/dev/null); then
      apt_update   # the lists may predate the pin
      (cd "${DEBS}" && apt_ download "$1") || die "apt has no ${pkg} ${ver} in bookworm (superseded? \
apt-cache policy ${pkg} on Debian 12): bump the pin in hack/images/build.sh, or put the old .deb from \
snapshot.debian.org in ${DEBS}"
    fi
    f="$(compgen -G "${DEBS}/${pkg}_${ver//:/%3a}_*.deb")" || die "apt-get download ${1} wrote no .deb"
  fi
  echo "${f}"
}

# The bundle update-ca-certificates makes from the pinned ca-certificates package.
ca_bundle() {
  local out="${DEBS}/ca-certificates-${CA_DEB#*=}.crt" deb tmp
  if [[ ! -s "${out}" ]]; then
    deb="$(fetch_deb "${CA_DEB}")"
    tmp="$(mktemp -d "${WORK}/ca.XXXXXX")"
    dpkg-deb -x "${deb}" "${tmp}"
    # shellcheck disable=SC1003,SC2016  # sed: a newline after each file that lacks one
    find "${tmp}/usr/share/ca-certificates/mozilla" -name '*.crt' -print0 | LC_ALL=C sort -z \
      | xargs -0 sed -s -e '$a\' > "${out}.tmp"
    rm -rf "${tmp}"
    (( $(grep -c 'BEGIN CERTIFICATE' "${out}.tmp") > 100 )) || die "${out}: too few certificates"
    mv "${out}.tmp" "${out}"
  fi
  echo "${out}"
}

check_static() {
  if readelf -l "$1" | grep -q 'program interpreter'; then die "$1 is not statically linked"; fi
}

# ------------------------------------------------------------------ pause ---
pause_src() {
  local dir
  dir="$(go_module_dir "k8s.io/kubernetes@${K8S_VERSION}")"
  [[ -f "${dir}/build/pause/linux/pause.c" ]] \
    || die "missing pause.c: k8s.io/kubernetes@${K8S_VERSION} is not in the Go module cache (go mod download failed)"
  echo "${dir}/build/pause/linux/pause.c"
}
inputs_pause() {
  local src
  src="$(pause_src)"
  command -v gcc >/dev/null || die "missing gcc: apt-get install gcc libc6-dev"
  sha256sum "${src}"
  echo "${PAUSE_TAG} $(gcc --version | head -1)"
}
build_pause() { # WORKDIR OUT
  local src bin="$1/pause" version="v${PAUSE_TAG##*:}-${K8S_VERSION}"
  src="$(pause_src)"
  # Upstream's flags (build/pause/Makefile); VERSION is what `pause -v` prints.
  if ! gcc -Os -Wall -Werror -static -DVERSION="${version}" -o "${bin}" "${src}" 2>"$1/gcc.log"; then
    cat "$1/gcc.log" >&2
    die "gcc -static pause.c failed; static linking needs glibc's static libraries: \
apt-get install libc6-dev (hack/cluster/node-install.sh installs it)"
  fi
  strip "${bin}"
  check_static "${bin}"
  [[ "$("${bin}" -v)" == "pause.c ${version}" ]] || die "${bin} -v does not print ${version}"
  "${MKIMAGE}" -file "${bin}:/pause:0755" -tag "${PAUSE_TAG}" -entrypoint '["/pause"]' \
    -user 65535:65535 -out "$2"
}

# ---------------------------------------------------------------- traefik ---
inputs_traefik() {
  [[ -x "${BIN_TRAEFIK}/traefik" ]] \
    || die "missing traefik binary ${BIN_TRAEFIK}/traefik: run make dataplane-build"
  sha256sum "${BIN_TRAEFIK}/traefik" "${ETC}/passwd" "${ETC}/group" | sed "s|${REPO_ROOT}/||"
  echo "${TRAEFIK_TAG} ${TRAEFIK_VERSION} ${CA_DEB}"
}
build_traefik() { # WORKDIR OUT
  local ca
  ca="$(ca_bundle)"
  check_static "${BIN_TRAEFIK}/traefik"
  "${MKIMAGE}" -file "${BIN_TRAEFIK}/traefik:/traefik:0755" \
    -file "${ETC}/passwd:/etc/passwd:0644" -file "${ETC}/group:/etc/group:0644" \
    -file "${ca}:/etc/ssl/certs/ca-certificates.crt:0644" \
    -tag "${TRAEFIK_TAG}" -entrypoint '["/traefik"]' -user 65532:65532 \
    -label org.opencontainers.image.title=traefik \
    -label "org.opencontainers.image.version=${TRAEFIK_VERSION#v}" \
    -label org.opencontainers.image.source=https://github.com/traefik/traefik \
    -label "org.opencontainers.image.description=Traefik built from source by hack/dataplane, packaged by kanary's hack/images" \
    -out "$2"
  sbom_go "${BIN_TRAEFIK}/traefik" "${2%.tar}.sbom.cdx.json"
}

# ------------------------------------------------------------- prometheus ---
prometheus_module() {
  local dir
  dir="$(go_module_dir "github.com/prometheus/prometheus@${PROMETHEUS_MODULE_VERSION}")"
  [[ -f "${dir}/documentation/examples/prometheus.yml" ]] \
    || die "missing github.com/prometheus/prometheus@${PROMETHEUS_MODULE_VERSION} in the Go module cache"
  echo "${dir}"
}
inputs_prometheus() {
  local mod
  [[ -x "${BIN_PROMETHEUS}/prometheus" ]] \
    || die "missing prometheus binary ${BIN_PROMETHEUS}/prometheus: run make dataplane-build"
  mod="$(prometheus_module)"
  sha256sum "${BIN_PROMETHEUS}/prometheus" "${ETC}/passwd" "${ETC}/group" | sed "s|${REPO_ROOT}/||"
  echo "${PROMETHEUS_TAG} ${mod##*/} ${CA_DEB}"
}
# Upstream's Dockerfile on a busybox base, without busybox and promtool.
build_prometheus() { # WORKDIR OUT
  need_root prometheus "files owned by nobody"
  local root="$1/rootfs" mod ca
  mod="$(prometheus_module)"
  ca="$(ca_bundle)"
  check_static "${BIN_PROMETHEUS}/prometheus"
  install -D -m 0755 "${BIN_PROMETHEUS}/prometheus" "${root}/bin/prometheus"
  install -D -m 0644 "${mod}/documentation/examples/prometheus.yml" "${root}/etc/prometheus/prometheus.yml"
  install -m 0644 "${mod}/LICENSE" "${mod}/NOTICE" "${root}/"
  mkdir -p "${root}/usr/share/prometheus"
  cp -r "${mod}/console_libraries" "${mod}/consoles" "${root}/usr/share/prometheus/"
  find "${root}/usr/share/prometheus" -type d -exec chmod 0755 {} + -o -type f -exec chmod 0644 {} +
  install -D -m 0644 "${ETC}/passwd" "${root}/etc/passwd"
  install -m 0644 "${ETC}/group" "${root}/etc/group"
  install -D -m 0644 "${ca}" "${root}/etc/ssl/certs/ca-certificates.crt"
  install -d -m 0755 "${root}/prometheus"
  chown -hR 65534:65534 "${root}/etc/prometheus" "${root}/prometheus"
  ln -s /usr/share/prometheus/console_libraries /usr/share/prometheus/consoles "${root}/etc/prometheus/"
  "${MKIMAGE}" -rootfs "${root}" -tag "${PROMETHEUS_TAG}" -entrypoint '["/bin/prometheus"]' \
    -cmd '["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus",
           "--web.console.libraries=/usr/share/prometheus/console_libraries",
           "--web.console.templates=/usr/share/prometheus/consoles"]' \
    -workdir /prometheus -user 65534:65534 -expose 9090 \
    -label org.opencontainers.image.title=prometheus \
    -label "org.opencontainers.image.version=${PROMETHEUS_VERSION#v}" \
    -label org.opencontainers.image.source=https://github.com/prometheus/prometheus \
    -label "org.opencontainers.image.description=Prometheus built from source by hack/dataplane (Kubernetes, file and HTTP service discovery only), packaged by kanary's hack/images" \
    -out "$2"
  sbom_go "${BIN_PROMETHEUS}/prometheus" "${2%.tar}.sbom.cdx.json"
}

# --------------------------------------------------------------- operator ---
# The Dockerfile's build context (what .dockerignore admits), as a stable tar stream.
operator_context() {
  tar -C "${REPO_ROOT}" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
    --exclude=__pycache__ --exclude='*.pyc' --exclude='*.egg-info' \
    -cf - pyproject.toml README.md requirements.lock operator
}
# The Dockerfile's labels, so that the two images carry the same.
dockerfile_labels() {
  sed -n 's/^.*\(org\.opencontainers\.image\.[a-z]*\)="\([^"]*\)".*$/\1=\2/p' "${REPO_ROOT}/Dockerfile"
}
# What the Dockerfile's final stage sets; build_operator sets the same.
check_dockerfile() {
  local line
  # shellcheck disable=SC1003,SC2016  # the Dockerfile's lines, verbatim
  for line in 'RUN python -m venv /opt/kanary' 'ENV PATH=/opt/kanary/bin:${PATH} \' \
    '    PYTHONDONTWRITEBYTECODE=1 \' '    PYTHONUNBUFFERED=1 \' '    PYTHONMALLOC=malloc \' \
    '    MALLOC_ARENA_MAX=2 \' '    HOME=/tmp' \
    'USER 65532:65532' 'EXPOSE 8080 8081' 'ENTRYPOINT ["kanary", "run"]'; do
    grep -qxF -- "${line}" "${REPO_ROOT}/Dockerfile" \
      || die "the Dockerfile has no line '${line}': it and build_operator in hack/images/build.sh must make the same image"
  done
  [[ "$(dockerfile_labels | grep -c .)" -ge 5 ]] || die "found no OCI labels in the Dockerfile"
  dockerfile_labels | grep -qxF "org.opencontainers.image.version=${OPERATOR_TAG##*:}" \
    || die "the Dockerfile's version label is not ${OPERATOR_TAG##*:} (the tag of manifests/operator.yaml)"
}
inputs_operator() {
  python3 -m pip --version >/dev/null 2>&1 || die "missing python3 with pip (pip downloads the operator's wheels)"
  command -v dpkg-deb >/dev/null || die "missing dpkg-deb (apt-get install dpkg)"
  check_dockerfile
  echo "$(operator_context | sha256sum | cut -d' ' -f1)  build context: pyproject.toml README.md requirements.lock operator/"
  sha256sum "${ETC}/passwd" "${ETC}/group" "${ETC}/nsswitch.conf" | sed "s|${REPO_ROOT}/||"
  dockerfile_labels
  printf '%s\n' "${OPERATOR_TAG}" "${OPERATOR_DEBS[@]}" "${BASE_FILES_DEB}" "${CA_DEB}" "pip==${PIP_VERSION}"
}
# in_root [--userspec=U:G] ROOT CMD...: CMD in the chroot, with the image's environment.
in_root() {
  env -i PATH=/opt/kanary/bin:/usr/bin:/bin HOME=/tmp LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 "${CHROOT}" "$@"
}
build_operator() { # WORKDIR OUT
  need_root operator "chroot"
  [[ -n "${CHROOT}" ]] || die "missing chroot (coreutils)"
  local w="$1" root="$1/rootfs" spec deb ca ld_so arch py=/usr/lib/python3.11 wheel f out v n=0 bad=0 libpath
  ca="$(ca_bundle)"
  arch="$(uname -m)"

  log "  rootfs: ${#OPERATOR_DEBS[@]} Debian bookworm packages (dpkg-deb -x)"
  mkdir -p "${root}/var/lib/dpkg/status.d"
  for spec in "${OPERATOR_DEBS[@]}"; do
    deb="$(fetch_deb "${spec}")"
    dpkg-deb -x "${deb}" "${root}"
    # As distroless does: the packages' control files, for image scanners.
    dpkg-deb -f "${deb}" > "${root}/var/lib/dpkg/status.d/${spec%%=*}"
  done
  deb="$(fetch_deb "${BASE_FILES_DEB}")"
  dpkg-deb --fsys-tarfile "${deb}" | tar -xO ./usr/lib/os-release > "${root}/usr/lib/os-release"
  ln -s ../usr/lib/os-release "${root}/etc/os-release"
  # Trim: documentation (not the copyright files), man pages, lintian and binfmt files,
  # glibc's iconv modules; Python's test package, its test extension modules, help() topics,
  # and the modules whose libraries are not shipped (curses, readline, dbm, nis, sqlite3).
  find "${root}/usr/share/doc" -type f ! -name copyright -delete
  rm -rf "${root}"/usr/share/{man,lintian,binfmts} "${root}/usr/lib/binfmt.d" \
    "${root}"/usr/lib/*-linux-gnu/gconv "${root}/usr/sbin" "${root}/etc/ca-certificates" \
    "${root}${py}"/{test,curses,sqlite3,pydoc_data} \
    "${root}${py}"/lib-dynload/{_test,_ctypes_test,_xxtestfuzz,xxlimited,_curses,readline,_dbm,nis,_sqlite3}*.so
  install -m 0644 "${ETC}/passwd" "${ETC}/group" "${ETC}/nsswitch.conf" "${root}/etc/"
  install -D -m 0644 "${ca}" "${root}/etc/ssl/certs/ca-certificates.crt"
  mkdir -p "${root}/usr/lib/ssl"   # OpenSSL's default CA file (Python's ssl default context)
  ln -s /etc/ssl/certs/ca-certificates.crt "${root}/usr/lib/ssl/cert.pem"
  install -d -m 1777 "${root}/tmp"
  # Hash-based .pyc: valid whatever the files' mtimes (mkimage sets them all to -created).
  in_root "${root}" /usr/bin/python3.11 -m compileall -q --invalidation-mode unchecked-hash "${py}" \
    || die "compileall of the standard library failed"

  log "  venv /opt/kanary: the package and its dependencies pinned by requirements.lock"
  in_root "${root}" /usr/bin/python3.11 -m venv --without-pip /opt/kanary
  mkdir -p "${w}/src" "${root}/tmp/build"
  operator_context | tar -C "${w}/src" -xf -
  cp "${w}/src/requirements.lock" "${root}/tmp/build/"
  # A reproducible wheel: zip timestamps from SOURCE_DATE_EPOCH (zip starts in 1980).
  local epoch="${SOURCE_DATE_EPOCH:-0}"
  (( epoch >= 315532800 )) || epoch=315532800
  SOURCE_DATE_EPOCH="${epoch}" python3 -m pip wheel -q --no-deps --no-cache-dir -w "${root}/tmp/build" "${w}/src" \
    || die "pip wheel of the operator failed"
  wheel="$(cd "${root}/tmp/build" && compgen -G 'kanary-*.whl')" || die "no kanary wheel built"
  # Wheels only, for the image's Python (cp311, glibc 2.36), whatever the host's Python is.
  local tags=(--python-version 3.11 --implementation cp --abi cp311 --platform "manylinux2014_${arch}")
  for ((v = 36; v >= 17; v--)); do tags+=(--platform "manylinux_2_${v}_${arch}"); done
  python3 -m pip download -q --disable-pip-version-check -d "${root}/tmp/build" --only-binary=:all: \
    "${tags[@]}" -c "${w}/src/requirements.lock" "${root}/tmp/build/${wheel}" "pip==${PIP_VERSION}" \
    || die "pip download of the operator's dependencies failed"
  # pip runs from its wheel inside the chroot (so the scripts' shebangs are /opt/kanary/bin/python),
  # offline, and is not installed.
  local pip=("/opt/kanary/bin/python" "/tmp/build/pip-${PIP_VERSION}-py3-none-any.whl/pip")
  in_root "${root}" "${pip[@]}" install -q --no-index --find-links /tmp/build --no-compile \
    --no-cache-dir --disable-pip-version-check -c /tmp/build/requirements.lock "/tmp/build/${wheel}" \
    || die "pip install in the chroot failed"
  in_root "${root}" "${pip[@]}" check --disable-pip-version-check || die "pip check failed"
  # numpy's and scipy's own test suites (about 50 MiB) never run in the image.
  find "${root}/opt/kanary/lib/python3.11/site-packages/"{numpy,scipy} -type d -name tests -prune \
    -exec rm -rf {} +
  in_root "${root}" /opt/kanary/bin/python -m compileall -q --invalidation-mode unchecked-hash /opt/kanary/lib \
    || die "compileall of /opt/kanary/lib failed"

  # The SBOM: cyclonedx-py, installed into /tmp/build and run by the image's own Python on the
  # venv (so it reads exactly what the image holds), then the Debian packages added.
  log "  SBOM: cyclonedx-py ${CYCLONEDX_PY_VERSION} on /opt/kanary, plus the ${#OPERATOR_DEBS[@]} Debian packages"
  python3 -m pip download -q --disable-pip-version-check -d "${root}/tmp/build/sbom-wheels" \
    --only-binary=:all: "${tags[@]}" "cyclonedx-bom==${CYCLONEDX_PY_VERSION}" \
    || die "pip download of cyclonedx-bom==${CYCLONEDX_PY_VERSION} failed"
  in_root "${root}" "${pip[@]}" install -q --no-index --find-links /tmp/build/sbom-wheels --no-compile \
    --disable-pip-version-check --target /tmp/build/sbom-tool "cyclonedx-bom==${CYCLONEDX_PY_VERSION}" \
    || die "pip install of cyclonedx-bom in the chroot failed"
  in_root "${root}" /usr/bin/python3.11 -c 'import runpy, sys
sys.path.insert(0, "/tmp/build/sbom-tool")
sys.argv[0] = "cyclonedx-py"
runpy.run_module("cyclonedx_py", run_name="__main__", alter_sys=True)' \
    environment --output-format JSON --output-reproducible \
    -o /tmp/build/python.cdx.json /opt/kanary/bin/python 2>"${w}/sbom.log" \
    || { cat "${w}/sbom.log" >&2; die "cyclonedx-py environment /opt/kanary/bin/python failed"; }
  python3 "${HACK_IMAGES_DIR}/../release/sbom_debs.py" --sbom "${root}/tmp/build/python.cdx.json" \
    --status-dir "${root}/var/lib/dpkg/status.d" --image "${OPERATOR_TAG}" --out "${2%.tar}.sbom.cdx.json" \
    || die "adding the Debian packages to the operator's SBOM failed"
  rm -rf "${root}/tmp/build"

  log "  checks: shared libraries of every ELF file, kanary --help and imports as uid 65532"
  ld_so="$(cd "${root}" && compgen -G 'lib*/ld-linux*.so.*' | head -1)"
  while IFS= read -r -d '' f; do
    [[ "$(head -c4 "${f}")" == $'\x7fELF' ]] || continue
    n=$((n + 1))
    # A wheel's vendored libraries (auditwheel's <pkg>.libs/) find each other there: the
    # extension modules that load them carry an RPATH to that directory.
    libpath=()
    [[ "$(dirname "${f}")" == *.libs ]] && libpath=(--library-path "/$(dirname "${f#"${root}"/}")")
    out="$(in_root "${root}" "/${ld_so}" "${libpath[@]}" --list "/${f#"${root}"/}" 2>&1)" \
      || { log "  /${f#"${root}"/}: ${out#*shared libraries: }"; bad=1; }
  done < <(find "${root}" -type f \( -name '*.so*' -o -perm -u+x \) -print0)
  (( bad == 0 )) || die "shared libraries missing in the operator image (add their packages to OPERATOR_DEBS)"
  log "  ${n} ELF files: all libraries found"
  in_root --userspec=65532:65532 "${root}" /opt/kanary/bin/kanary --help >/dev/null \
    || die "kanary --help fails in the image"
  in_root --userspec=65532:65532 "${root}" /opt/kanary/bin/python -c '
import asyncio, bz2, ctypes, decimal, hashlib, json, lzma, ssl, uuid, zlib, zoneinfo
import kopf, kubernetes, kanary, kanary.cli
import scipy.stats  # the sequential test and the judge, with their vendored BLAS and gfortran
assert scipy.stats.binom.logpmf(1, 10, 0.1) < 0
assert ssl.create_default_context().cert_store_stats()["x509_ca"] > 100, "no CA certificates"
hashlib.sha256(b""), hashlib.md5(b""), ctypes.CDLL(None), uuid.uuid4(), zoneinfo.ZoneInfo("UTC")
' || die "imports fail in the image"
  log "  rootfs $(du -sh "${root}" | cut -f1)"

  local labels=()
  while IFS= read -r f; do labels+=(-label "${f}"); done < <(dockerfile_labels)
  "${MKIMAGE}" -rootfs "${root}" -tag "${OPERATOR_TAG}" -entrypoint '["kanary", "run"]' \
    -user 65532:65532 -expose 8080 -expose 8081 "${labels[@]}" \
    -env PATH=/opt/kanary/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    -env PYTHONDONTWRITEBYTECODE=1 -env PYTHONUNBUFFERED=1 -env PYTHONMALLOC=malloc \
    -env MALLOC_ARENA_MAX=2 -env HOME=/tmp -env LANG=C.UTF-8 \
    -out "$2"
}

# ------------------------------------------------------------------ main ---
# image NAME: build ${IMAGES_DIR}/NAME.tar with build_NAME unless inputs_NAME, the recipe and
# mkimage are what they were for the tarball there.
# The Gin demo: kanary/gin-demo:<version>, built by app/Makefile's image target.
inputs_gin() { # VERSION
  (cd "${REPO_ROOT}" && find app -type f -not -path 'app/bin/*' -print0 | sort -z \
    | xargs -0 sha256sum | sha256sum)
  echo "kanary/gin-demo:$1"
}
build_gin() { # WORKDIR OUT VERSION
  make -s -C "${REPO_ROOT}/app" image VERSION="$3" >"$1/make.log" 2>&1 \
    || { tail -n 20 "$1/make.log" >&2; die "make -C app image VERSION=$3 failed"; }
  cp "${REPO_ROOT}/app/bin/gin-demo.debug" "${2%.tar}.debug"
  sbom_go "${REPO_ROOT}/app/bin/gin-demo" "${2%.tar}.sbom.cdx.json"
  cp "${REPO_ROOT}/app/bin/gin-demo-image.tar" "$2"
}

# The files a build writes beside NAME.tar, and their signatures.
siblings() { # NAME
  [[ "$1" == pause ]] || echo "${IMAGES_DIR}/$1.sbom.cdx.json"
  [[ "$1" != gin-demo-* ]] || echo "${IMAGES_DIR}/$1.debug"
}
siblings_exist() { # NAME
  local f
  for f in $(siblings "$1"); do [[ -s "${f}" ]] || return 1; done
}
# Sign the tarball and its SBOM unless their signatures verify with the current key.
sign_image() { # NAME
  local f
  for f in "${IMAGES_DIR}/$1.tar" $(siblings "$1"); do
    [[ "${f}" != *.debug ]] || continue
    if [[ -f "${f}.sigstore.json" ]] && verify "${f}" 2>/dev/null; then continue; fi
    sign "${f}"
    log "$1: signed ${f##*/} (${f##*/}.sigstore.json)"
  done
}

image() {
  local name="$1" out="${IMAGES_DIR}/$1.tar" start=$SECONDS inputs fn="$1" arg=()
  if [[ "${name}" == gin-demo-* ]]; then fn=gin; arg=("${name#gin-demo-}"); fi
  inputs="$("inputs_${fn}" "${arg[@]}")"
  inputs+=$'\n'"recipe $(declare -f "build_${fn}" | sha256sum | cut -c1-16)"
  inputs+=$'\n'"mkimage ${MKIMAGE_KEY} SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}"
  if [[ "${FORCE}" != 1 && -f "${out}" && "$(cat "${out}.inputs" 2>/dev/null)" == "${inputs}" ]] \
    && siblings_exist "${name}"; then
    log "${name}: up to date, ${out} $(size "${out}") (inputs unchanged)"
    sign_image "${name}"
    return
  fi
  log "${name}: building ${out}"
  rm -rf "${WORK:?}/${name}" "${out}.inputs"
  mkdir -p "${WORK}/${name}"
  "build_${fn}" "${WORK}/${name}" "${out}" "${arg[@]}"
  siblings_exist "${name}" || die "${name}: the build wrote no $(siblings "${name}" | tr '\n' ' ')"
  sign_image "${name}"
  printf '%s\n' "${inputs}" > "${out}.inputs"
  rm -rf "${WORK:?}/${name}"
  log "${name}: built in $((SECONDS - start))s, ${out} $(size "${out}")"
}

main() {
  local name wanted=("$@") start=$SECONDS
  (( $# > 0 )) || wanted=("${ALL[@]}")
  for name in "${wanted[@]}"; do
    [[ " ${ALL[*]} " == *" ${name} "* ]] || die "unknown image ${name} (images: ${ALL[*]})"
  done
  command -v go >/dev/null || die "missing go (Go >= 1.26)"
  if ! grep -qF "image: ${TRAEFIK_TAG}" "${REPO_ROOT}/manifests/traefik/deployment.yaml" \
    || ! grep -qF "image: ${PROMETHEUS_TAG}" "${REPO_ROOT}/manifests/prometheus/deployment.yaml" \
    || ! grep -qF "image: ${OPERATOR_TAG}" "${REPO_ROOT}/manifests/operator.yaml"; then
    die "manifests/ no longer name ${TRAEFIK_TAG}, ${PROMETHEUS_TAG} and ${OPERATOR_TAG}: update hack/images/build.sh"
  fi
  mkdir -p "${IMAGES_DIR}" "${WORK}"
  exec 8>"${IMAGES_DIR}/.lock"
  flock -n 8 || { log "waiting for another hack/images/build.sh"; flock 8; }
  build_mkimage
  for name in "${wanted[@]}"; do image "${name}"; done
  log "done in $((SECONDS - start))s: $(cd "${IMAGES_DIR}" && for name in "${wanted[@]}"; do
    printf '%s %s  ' "${name}.tar" "$(size "${name}.tar")"; done)"
}

main "$@"
