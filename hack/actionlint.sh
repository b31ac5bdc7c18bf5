#!/usr/bin/env bash
# actionlint for .github/workflows/, built once from the Go module proxy into
# ${KANARY_CACHE:-~/.cache/kanary}/bin/actionlint-<version>/ (skipped when present).
set -euo pipefail
cd "$(dirname "$0")/.."
ACTIONLINT_VERSION="v1.7.12"
dir="${KANARY_CACHE:-${HOME}/.cache/kanary}/bin/actionlint-${ACTIONLINT_VERSION}"
if [[ ! -x "${dir}/actionlint" ]]; then
  echo ">> building actionlint ${ACTIONLINT_VERSION} into ${dir}" >&2
  GOBIN="${dir}" CGO_ENABLED=0 go install "github.com/rhysd/actionlint/cmd/actionlint@${ACTIONLINT_VERSION}"
fi
# actionlint also checks the run: scripts with shellcheck when that is on PATH.
"${dir}/actionlint" "$@"
