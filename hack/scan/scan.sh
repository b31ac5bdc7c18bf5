#!/usr/bin/env bash
# make scan: the offline vulnerability gate (issue 16). See hack/scan/README.md.
#
#   hack/scan/scan.sh [--app DIR] [--allowlist FILE] [--python-lock FILE] [--keep DIR]
#
# 1. govulncheck (pinned) into $KANARY_CACHE/bin, built once with `go install`.
# 2. The Go vulnerability database from the pinned golang.org/x/vulndb module version,
#    laid out for `govulncheck -db file://` in $KANARY_CACHE/vulndb/<version> (built once).
# 3. Binary mode on an unstripped twin of app/bin/gin-demo: app/Makefile's release link
#    before objcopy strips it. A stripped binary has no symbol table, so govulncheck could only say that a
#    vulnerable module is in it, never whether the vulnerable function is.
# 4. Source mode on app/'s main package (package ., not ./...: the bench and cmd tools
#    are not shipped).
# 5. Python: pip-audit on requirements.lock with KANARY_SCAN_ONLINE=1 (where a vulnerability
#    service is reachable: the GitHub workflow); otherwise every pin is listed as not
#    checked, with the reason. The scan never probes the network on its own.
# 6. hack/scan/report.py: the table and the verdict.
#
# Exit: 0 no reachable vulnerability outside hack/scan/allowlist.yaml, 1 at least one
# (or an expired allow-list entry), 2 the scan could not run.
set -euo pipefail

GOVULNCHECK_VERSION=v1.9.0
VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018 # golang.org/x/vulndb, dated 2026-11-05
PIP_AUDIT_VERSION=2.10.1

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
KANARY_CACHE=${KANARY_CACHE:-$HOME/.cache/kanary}
PY=${PY:-$repo/.venv/bin/python}
app=$repo/app
allowlist=$here/allowlist.yaml
pylock=$repo/requirements.lock
keep=

log() { printf '[scan %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
  log "error: $*"
  exit 2
}

while (($#)); do
  case $1 in
  --app) app=${2:?--app needs a directory} && shift 2 ;;
  --allowlist) allowlist=${2:?--allowlist needs a file} && shift 2 ;;
  --python-lock) pylock=${2:?--python-lock needs a file} && shift 2 ;;
  --keep) keep=${2:?--keep needs a directory} && shift 2 ;;
  -h | --help) sed -n '2,20s/^# \{0,1\}//p' "$0" && exit 0 ;;
  *) die "unknown argument $1 (see --help)" ;;
  esac
done

command -v go >/dev/null || die "the go command is not on PATH"
[[ -x $PY ]] || die "$PY not found: run make install (report.py needs PyYAML), or set PY"
[[ -f $app/go.mod ]] || die "$app/go.mod not found: --app must be the Gin service's directory"
[[ -f $app/Makefile ]] || die "$app/Makefile not found (the twin binary uses its BUILD_FLAGS)"
[[ -f $allowlist ]] || die "allow-list $allowlist not found"
[[ -f $pylock ]] || die "Python lock file $pylock not found"
app=$(cd "$app" && pwd)

# The toolchain of app/go.mod's toolchain line builds the twin, runs the source mode and
# builds govulncheck (whose type checker must know that Go release's language and library).
toolchain=$(sed -n 's/^toolchain //p' "$app/go.mod")
[[ -z $toolchain ]] || export GOTOOLCHAIN=$toolchain
log "Go toolchain: $(go env GOVERSION) (GOTOOLCHAIN=${GOTOOLCHAIN:-unset})"
start=$(date +%s)
mkdir -p "$KANARY_CACHE/bin" "$KANARY_CACHE/vulndb"
work=$(mktemp -d "${TMPDIR:-/tmp}/kanary-scan.XXXXXX")
trap 'rm -rf "$work"' EXIT

# 1. govulncheck, pinned; the version is in the file name so a new pin installs anew.
# shellcheck source=../release/lib.sh
source "$here/../release/lib.sh"
govulncheck=$(go_tool govulncheck golang.org/x/vuln/cmd/govulncheck "$GOVULNCHECK_VERSION") ||
  die "could not install govulncheck $GOVULNCHECK_VERSION (above)"
got=$("$govulncheck" -version | sed -n 's/^Scanner: govulncheck@//p')
[[ $got == "$GOVULNCHECK_VERSION" ]] ||
  die "$govulncheck reports version '$got', want $GOVULNCHECK_VERSION: remove it to reinstall"

# 2. The database.
db=$KANARY_CACHE/vulndb/$VULNDB_VERSION
if [[ -f $db/index/db.json ]]; then
  line=$("$PY" "$here/vulndb.py" info --db "$db") || die "$db is broken: remove it to rebuild"
  log "$line"
else
  log "downloading golang.org/x/vulndb@$VULNDB_VERSION (go mod download)"
  (cd "$work" && go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" >"$work/vulndb.json") ||
    die "go mod download golang.org/x/vulndb@$VULNDB_VERSION failed: $(cat "$work/vulndb.json")"
  osv=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["Dir"])' \
    "$work/vulndb.json")/data/osv
  [[ -d $osv ]] || die "$osv not found in the downloaded module"
  log "building the database in $db"
  line=$("$PY" "$here/vulndb.py" build --osv "$osv" --version "$VULNDB_VERSION" --out "$db") ||
    die "building $db from $osv failed"
  log "$line"
fi

# 3. The twin binary: app/Makefile's BUILD_FLAGS, the one link that `make build` then splits
#    with objcopy into the stripped binary and its debug file (the symbol table stays here).
#    A -s (strip at link), should the flags ever carry one again, is dropped.
flags=$(make -s --no-print-directory -C "$app" -f Makefile -f "$here/buildflags.mk" \
  scan-build-flags) || die "could not read BUILD_FLAGS from $app/Makefile"
twin_flags=${flags/\"-s /\"}
# The flags are shell words from our own Makefile (-ldflags "..." is quoted there).
eval "twin_args=($twin_flags)"
tags=
for ((i = 0; i < ${#twin_args[@]} - 1; i++)); do
  [[ ${twin_args[i]} == -tags ]] && tags=${twin_args[i + 1]}
done
twin=$work/gin-demo.unstripped
log "building the unstripped twin of bin/gin-demo: go build $twin_flags"
# CGO_ENABLED=0: app/Makefile exports it for its builds.
(cd "$app" && CGO_ENABLED=0 go build "${twin_args[@]}" -o "$twin" .) ||
  die "go build of the twin binary in $app failed"
if command -v readelf >/dev/null && ! readelf -S "$twin" | grep -q '\.symtab'; then
  die "$twin has no symbol table: binary mode would be module-level only"
fi

# 4. govulncheck, both modes. -format json exits 0 with findings: report.py decides.
log "govulncheck binary mode on the twin ($(stat -c %s "$twin") bytes)"
"$govulncheck" -mode binary -db "file://$db" -format json "$twin" >"$work/binary.json" ||
  die "govulncheck -mode binary failed (its message is above)"
log "govulncheck source mode on $app (package ., -tags ${tags:-none})"
(cd "$app" && CGO_ENABLED=0 "$govulncheck" ${tags:+-tags "$tags"} -db "file://$db" \
  -format json . >"$work/source.json") || die "govulncheck source mode in $app failed (above)"

# 5. Python: only a vulnerability service can check it; never call it clean without one.
# No service is reachable from the development machine, and nothing here sends traffic
# beyond loopback and the package registries, so the scan asks none unless told to:
# KANARY_SCAN_ONLINE=1 (the GitHub workflow) runs pip-audit against PyPI's vulnerability data.
if [[ ${KANARY_SCAN_ONLINE:-0} == 1 ]]; then
  pip_audit=$KANARY_CACHE/pip-audit-$PIP_AUDIT_VERSION/bin/pip-audit
  if [[ ! -x $pip_audit ]]; then
    log "installing pip-audit $PIP_AUDIT_VERSION into $KANARY_CACHE/pip-audit-$PIP_AUDIT_VERSION"
    python3 -m venv "$KANARY_CACHE/pip-audit-$PIP_AUDIT_VERSION"
    "$KANARY_CACHE/pip-audit-$PIP_AUDIT_VERSION/bin/pip" install -q "pip-audit==$PIP_AUDIT_VERSION" ||
      die "pip install pip-audit==$PIP_AUDIT_VERSION failed"
  fi
  log "pip-audit on $pylock (vulnerability service: PyPI)"
  # Exit 1 means "vulnerabilities found"; the JSON file decides, its absence is an error.
  "$pip_audit" -r "$pylock" --no-deps --disable-pip --progress-spinner off \
    --vulnerability-service pypi -f json -o "$work/pip-audit.json" || true
  [[ -s $work/pip-audit.json ]] ||
    die "KANARY_SCAN_ONLINE=1 but pip-audit wrote no report (its message is above)"
  py_args=(--pip-audit "$work/pip-audit.json")
else
  offline="no vulnerability source is reachable from this machine (PyPI serves packages here, not its vulnerability data; OSV is not reachable), so none was asked; KANARY_SCAN_ONLINE=1 runs pip-audit where one is (the GitHub workflow)"
  py_args=(--python-offline "$offline")
  log "Python: not checked: $offline"
fi

if [[ -n $keep ]]; then
  mkdir -p "$keep" && cp "$work"/*.json "$keep"/ && log "kept govulncheck's JSON in $keep"
fi

# 6. The verdict.
rc=0
"$PY" "$here/report.py" --db "$db" --source "$work/source.json" --binary "$work/binary.json" \
  --allowlist "$allowlist" --python-lock "$pylock" "${py_args[@]}" \
  --note "Source mode: $app, package . (-tags ${tags:-none}, CGO_ENABLED=0)" \
  --note "Binary mode: an unstripped twin of bin/gin-demo built with the release link flags, before objcopy strips them ($twin_flags): a stripped binary has no symbol table, so govulncheck could only report whole modules" \
  || rc=$?
log "done in $(($(date +%s) - start))s, exit $rc"
exit "$rc"
