#!/usr/bin/env bash
# Install what the local cluster's real node needs from Debian's own packages, at pinned
# versions: containerd, runc, the CNI plugins, iptables and conntrack (kube-proxy), and the
# static libc for the pause image. Idempotent: packages already at their pinned version are
# left alone. Needs root and Debian 12 (bookworm); says so clearly otherwise.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# name=version, as `apt-cache policy` shows them on Debian 12 (bookworm).
NODE_PACKAGES=(
  containerd=1.6.20~ds1-1+deb12u3
  runc=1.1.5+ds1-1+deb12u1
  containernetworking-plugins=1.1.1+ds1-3+b5
  iptables=1.8.9-2
  conntrack=1:1.4.7-1+b2
)
# libc6-dev must match the installed libc6 exactly (gcc -static links the pause image).
NODE_PACKAGES+=("libc6-dev=$(dpkg-query -W -f='${Version}' libc6)")

[[ ${EUID} -eq 0 ]] || die "needs root (apt-get install); run as root"
# shellcheck disable=SC1091
. /etc/os-release 2>/dev/null || true
[[ "${ID:-}" == debian && "${VERSION_CODENAME:-}" == bookworm ]] \
  || die "the real node installs Debian 12 (bookworm) packages; this is ${PRETTY_NAME:-an unknown OS}. Install ${NODE_PACKAGES[*]%%=*} yourself (same versions) and retry."

missing=()
for p in "${NODE_PACKAGES[@]}"; do
  have="$(dpkg-query -W -f='${Status} ${Version}' "${p%%=*}" 2>/dev/null || true)"
  [[ "${have}" == "install ok installed ${p#*=}" ]] || missing+=("${p}")
done
if (( ${#missing[@]} == 0 )); then
  log "node packages: all installed at their pinned versions"
  exit 0
fi
log "node packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
available() { apt-cache madison "${1%%=*}" 2>/dev/null | awk -F'|' '{gsub(/ /, "", $2); print $2}' | grep -qxF "${1#*=}"; }
if ! available "${missing[0]}"; then apt-get update -q >/dev/null || die "apt-get update failed"; fi
install=()
for p in "${missing[@]}"; do
  if available "${p}"; then
    install+=("${p}")
  else
    # Debian's archive keeps only the newest point release of a stable package: a security
    # update replaces the pinned one. Take the archive's and say so loudly.
    log "WARNING: ${p} is no longer in Debian's archive; installing its current version instead (update the pin in ${BASH_SOURCE[0]##*/})"
    install+=("${p%%=*}")
  fi
done
apt-get install -y -q --no-install-recommends "${install[@]}" >/dev/null \
  || die "apt-get install ${install[*]} failed (see above)"
# Debian starts containerd as a system service; the cluster runs its own inside the netns.
if command -v systemctl >/dev/null && systemctl is-active -q containerd 2>/dev/null; then
  systemctl disable --now containerd >/dev/null 2>&1 || true
fi
log "node packages: installed"
