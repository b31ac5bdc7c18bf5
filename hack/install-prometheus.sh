#!/usr/bin/env bash
# Installs the Prometheus server (Debian package `prometheus`) that the analysis integration tests
# and the benchmark start themselves. Idempotent: does nothing when `prometheus` is on PATH
# (or at $PROMETHEUS_BIN). The package's systemd unit is never used: the tests run the binary on
# 127.0.0.1 with their own config, so the service is stopped and disabled if the install started
# it (there is no init system in CI containers, where policy-rc.d keeps it from starting anyway).
set -euo pipefail
bin=${PROMETHEUS_BIN:-prometheus}
if command -v "$bin" >/dev/null 2>&1; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "install-prometheus: need root for apt-get (or set PROMETHEUS_BIN to a prometheus binary)" >&2
  exit 1
fi
echo ">> installing the Debian package prometheus"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# The package recommends node-exporter etc.; the tests need only the server.
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
  systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
echo ">> $(prometheus --version 2>&1 | head -n1)"
