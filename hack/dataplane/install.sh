#!/usr/bin/env bash
# Install what the data plane takes from Debian's own packages, at a pinned version (lib.sh):
#   prometheus-alertmanager  ${ALERTMANAGER_DEB_VERSION}  (Alertmanager ${ALERTMANAGER_VERSION})
# hack/dataplane/up.sh runs it as a process inside the cluster's netns, with its own config and
# storage. Debian's package would also start it as a system service on the host (listening on
# :9093 and :9094) and enable it at boot: this script forbids that start for the install
# (a policy-rc.d that denies every start; an existing one is put back afterwards), then
# disables the service and stops it should it run anyway. Idempotent: nothing is done when the
# pinned version is installed and the service is neither enabled nor running. Needs root and
# Debian 12 (bookworm); says so clearly otherwise.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PKG="prometheus-alertmanager"
PIN="${PKG}=${ALERTMANAGER_DEB_VERSION}"
SERVICE="${PKG}.service"
POLICY=/usr/sbin/policy-rc.d
POLICY_SAVED="${POLICY}.kanary-saved"
SYSV_PIDFILE="/run/prometheus/${PKG}.pid"   # the package's /etc/init.d script

[[ ${EUID} -eq 0 ]] || die "needs root (apt-get install); run as root"
# shellcheck disable=SC1091
. /etc/os-release 2>/dev/null || true
[[ "${ID:-}" == debian && "${VERSION_CODENAME:-}" == bookworm ]] \
  || die "the data plane installs Debian 12 (bookworm) packages; this is ${PRETTY_NAME:-an unknown OS}. Install Alertmanager ${ALERTMANAGER_VERSION} as ${BIN_ALERTMANAGER} yourself (it must not run as a service) and retry."

installed() { [[ "$(dpkg-query -W -f='${Status} ${Version}' "${PKG}" 2>/dev/null || true)" == "install ok installed ${ALERTMANAGER_DEB_VERSION}" ]]; }
systemd_running() { [[ -d /run/systemd/system ]]; }
service_enabled() { # started at boot: by systemd (offline check too), or by sysvinit
  { command -v systemctl >/dev/null && systemctl --root=/ -q is-enabled "${SERVICE}" 2>/dev/null; } \
    || compgen -G "/etc/rc[2-5].d/S*${PKG}" >/dev/null
}
sysv_pid() { # the pid of the package's init.d daemon, if it runs
  local pid
  pid="$(cat "${SYSV_PIDFILE}" 2>/dev/null)" || return 1
  [[ "${pid}" =~ ^[0-9]+$ ]] && [[ "$(readlink "/proc/${pid}/exe" 2>/dev/null)" == "${BIN_ALERTMANAGER}" ]] \
    && echo "${pid}"
}
service_running() { { systemd_running && systemctl -q is-active "${SERVICE}" 2>/dev/null; } || sysv_pid >/dev/null; }

# Disable (boot) and stop the system service: the cluster runs its own Alertmanager.
# update-rc.d disable turns the sysvinit links into K links and removes the systemd unit's
# WantedBy link (with systemctl --root=/, which works while systemd does not run).
disable_service() {
  if systemd_running; then
    systemctl disable --now "${SERVICE}" >/dev/null 2>&1 || log "WARNING: systemctl disable --now ${SERVICE} failed"
  fi
  if [[ -x "/etc/init.d/${PKG}" ]]; then update-rc.d "${PKG}" disable >/dev/null 2>&1 || true; fi
  service_enabled && log "WARNING: the ${PKG} system service is still enabled at boot (disable it: systemctl disable ${SERVICE})"
  local pid
  if pid="$(sysv_pid)"; then
    log "stopping the ${PKG} system service (pid ${pid})"
    start-stop-daemon --stop --quiet --oknodo --retry=TERM/10/KILL/5 --pidfile "${SYSV_PIDFILE}" \
      --exec "${BIN_ALERTMANAGER}" || true
  fi
  service_running && die "the ${PKG} system service still runs on the host; stop it (systemctl stop ${SERVICE} or /etc/init.d/${PKG} stop)"
  log "the ${PKG} system service is disabled and not running"
}

if installed; then
  if service_enabled || service_running; then disable_service; fi
  log "alertmanager: ${PIN} installed"
  exit 0
fi

# No service may start during the install: policy-rc.d exit 101 ("action forbidden") is what
# invoke-rc.d and deb-systemd-invoke, which the package's postinst calls, obey.
restore_policy() {
  rm -f "${POLICY}"
  if [[ -e "${POLICY_SAVED}" ]]; then mv -f "${POLICY_SAVED}" "${POLICY}"; fi
}
[[ -e "${POLICY_SAVED}" ]] && die "${POLICY_SAVED} exists (left by an interrupted run?): put it back as ${POLICY} or remove it, then retry"
[[ -e "${POLICY}" ]] && mv -f "${POLICY}" "${POLICY_SAVED}"
trap restore_policy EXIT
printf '#!/bin/sh\n# written by kanary hack/dataplane/install.sh for its apt-get install; removed after\nexit 101\n' > "${POLICY}"
chmod 755 "${POLICY}"

log "alertmanager: installing ${PIN} (no service start)"
export DEBIAN_FRONTEND=noninteractive
available() { apt-cache madison "${PKG}" 2>/dev/null | awk -F'|' '{gsub(/ /, "", $2); print $2}' | grep -qxF "${ALERTMANAGER_DEB_VERSION}"; }
if ! available; then apt-get update -q >/dev/null || die "apt-get update failed"; fi
install="${PIN}"
if ! available; then
  # Debian's archive keeps only the newest point release of a stable package: a security
  # update replaces the pinned one. Take the archive's and say so loudly.
  current="$(apt-cache policy "${PKG}" 2>/dev/null | awk '/Candidate:/ {print $2}')"
  [[ -n "${current}" && "${current}" != "(none)" ]] || die "${PKG} is not in the configured apt sources at all"
  log "WARNING: ${PIN} is no longer in Debian's archive; installing its current version ${current} instead (update ALERTMANAGER_DEB_VERSION/ALERTMANAGER_VERSION in hack/dataplane/lib.sh)"
  install="${PKG}=${current}"
fi
apt-get install -y -q --no-install-recommends --allow-downgrades "${install}" >/dev/null \
  || die "apt-get install ${install} failed (see above)"
restore_policy; trap - EXIT
disable_service
"${BIN_ALERTMANAGER}" --version 2>&1 | head -n 1 | sed 's/^/[dataplane] /' >&2
log "alertmanager: installed"
