#!/usr/bin/env bash
# Creates .venv with kanary (editable) and its pinned dev tools.
# Re-running is cheap: it only reinstalls when pyproject.toml or the lock file changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
stamp=.venv/.installed
want=$(cat pyproject.toml requirements.lock | sha256sum | cut -c1-16)
if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
  exit 0
fi
echo ">> creating .venv with $($PYTHON --version)"
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip==25.3
.venv/bin/python -m pip install -q -c requirements.lock -e '.[dev]'
echo "$want" > "$stamp"
echo ">> .venv ready: $(.venv/bin/kanary --version 2>/dev/null || echo kanary installed)"
