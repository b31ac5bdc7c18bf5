#!/usr/bin/env python3
"""The vulnerability gate's verdict: govulncheck's JSON (source and binary mode), the
allow-list and the Python side, as one table and an exit code.

Exit codes: 0 no reachable vulnerability outside the allow-list; 1 at least one (or an
allow-list entry for one has expired); 2 bad input (a file or field is named).

A Go finding is reachable when source mode finds a call path to a vulnerable symbol or
binary mode finds the vulnerable symbol linked into the binary; a finding that is only
imported (package level) or only required (module level) is listed, not failed. A Python
vulnerability has no reachability analysis, so it counts as reachable. Python packages
that no vulnerability source checked are listed as "not checked", never as clean.

The pure functions (parse_*, merge, judge, render, exit_code) take text and values;
main() does the I/O.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # vulndb.py, beside this script
import vulndb

# Levels of evidence, per mode. Reachable = CALLED (source) or LINKED (binary).
NONE, MODULE, PACKAGE, SYMBOL = 0, 1, 2, 3
SOURCE_WORDS = {NONE: "-", MODULE: "requires module", PACKAGE: "imports", SYMBOL: "calls"}
BINARY_WORDS = {NONE: "-", MODULE: "has module", PACKAGE: "has package", SYMBOL: "links"}

FAIL, EXPIRED, ALLOWED, NOT_REACHABLE = "FAIL", "FAIL: allow expired", "allowed", "not reachable"
STATUS_ORDER = {FAIL: 0, EXPIRED: 1, ALLOWED: 2, NOT_REACHABLE: 3}
ALLOW_FIELDS = ("id", "module", "reason", "expires")
WARN_DAYS = 7  # an allow-list entry this close to its expiry is mentioned
LOCK_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


class InputError(Exception):
    """Bad input: the message names the file and, where there is one, the field."""


# ---------------------------------------------------------------- govulncheck JSON


@dataclass(frozen=True)
class Finding:
    osv: str
    module: str
    version: str  # installed; "" when govulncheck gives none
    fixed: str  # "" when there is no fix
    level: int  # MODULE, PACKAGE or SYMBOL
    package: str = ""
    symbol: str = ""  # e.g. x509.Certificate.Verify
    entry: str = ""  # source mode: where the project's code starts the call path, file:line


@dataclass(frozen=True)
class Scan:
    mode: str  # "source" or "binary"
    config: dict[str, Any]
    findings: tuple[Finding, ...]
    summaries: dict[str, str]  # osv id -> summary


def json_stream(text: str, name: str) -> list[dict[str, Any]]:
    """govulncheck -format json writes a stream of JSON objects, not one document."""
    dec = json.JSONDecoder()
    out: list[dict[str, Any]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return out
        try:
            obj, i = dec.raw_decode(text, i)
        except ValueError as exc:
            raise InputError(f"{name}: not a govulncheck JSON stream: {exc}") from exc
        if not isinstance(obj, dict):
            raise InputError(f"{name}: expected JSON objects, found {type(obj).__name__}")
        out.append(obj)


def symbol_name(frame: dict[str, Any]) -> str:
    pkg = str(frame.get("package", "")).rsplit("/", 1)[-1]
    recv = str(frame.get("receiver", "")).lstrip("*")
    parts = [p for p in (pkg, recv, str(frame.get("function", ""))) if p]
    return ".".join(parts)


def parse_govulncheck(text: str, name: str) -> Scan:
    config: dict[str, Any] | None = None
    findings: list[Finding] = []
    summaries: dict[str, str] = {}
    for obj in json_stream(text, name):
        if "config" in obj:
            config = obj["config"]
        elif "osv" in obj:
            entry = obj["osv"]
            summaries[str(entry.get("id"))] = str(entry.get("summary", ""))
        elif "finding" in obj:
            f = obj["finding"]
            trace = f.get("trace") or []
            if not isinstance(f.get("osv"), str) or not trace or "module" not in trace[0]:
                raise InputError(f"{name}: a finding without osv or trace[0].module: {f}")
            top = trace[0]
            if top.get("function"):
                level = SYMBOL
            elif top.get("package"):
                level = PACKAGE
            else:
                level = MODULE
            entry_pos = ""
            if level == SYMBOL:
                # Where the project's own code (the main module: frames without a version)
                # calls towards the vulnerable symbol: its innermost frame.
                own = [fr for fr in trace[1:] if not fr.get("version")]
                pos = own[0].get("position") or {} if own else {}
                if pos.get("filename"):
                    entry_pos = f"{pos['filename']}:{pos.get('line', '?')}"
            findings.append(
                Finding(
                    osv=f["osv"],
                    module=str(top["module"]),
                    version=str(top.get("version", "")),
                    fixed=str(f.get("fixed_version", "")),
                    level=level,
                    package=str(top.get("package", "")),
                    symbol=symbol_name(top) if level == SYMBOL else "",
                    entry=entry_pos,
                )
            )
    if config is None:
        raise InputError(f"{name}: no config object: is this govulncheck -format json output?")
    mode = str(config.get("scan_mode", ""))
    if mode not in ("source", "binary"):
        raise InputError(f"{name}: config.scan_mode is {mode!r}, want source or binary")
    return Scan(mode, config, tuple(findings), summaries)


def go_version(v: str, module: str) -> str:
    """govulncheck writes the standard library's versions as semver (v1.26.8)."""
    if module in ("stdlib", "toolchain") and v.startswith("v"):
        return "go" + v[1:]
    return v


@dataclass
class Row:
    """One vulnerability in one module, with the evidence of both modes."""

    id: str
    module: str
    installed: str
    fixed: str
    summary: str = ""
    packages: set[str] = field(default_factory=set)
    source: int = NONE
    binary: int = NONE
    source_symbols: dict[str, str] = field(default_factory=dict)  # symbol -> entry, file:line
    binary_symbols: dict[str, str] = field(default_factory=dict)  # symbol -> ""
    python: bool = False

    @property
    def reachable(self) -> bool:
        return self.python or self.source == SYMBOL or self.binary == SYMBOL

    def evidence(self) -> str:
        if self.python:
            return "pip-audit (no reachability analysis for Python)"

        def part(mode: str, level: int, words: dict[int, str], symbols: dict[str, str]) -> str:
            text = f"{mode}: {words[level]}"
            if level == SYMBOL and symbols:
                first = sorted(symbols)[0]
                more = f" (+{len(symbols) - 1})" if len(symbols) > 1 else ""
                text += f" {first}{more}"
                if symbols[first]:
                    text += f" from {symbols[first]}"
            return text

        return "; ".join(
            [
                part("source", self.source, SOURCE_WORDS, self.source_symbols),
                part("binary", self.binary, BINARY_WORDS, self.binary_symbols),
            ]
        )


def merge(scans: Iterable[Scan]) -> list[Row]:
    rows: dict[tuple[str, str], Row] = {}
    for scan in scans:
        for f in scan.findings:
            key = (f.osv, f.module)
            row = rows.get(key)
            if row is None:
                row = rows[key] = Row(
                    id=f.osv,
                    module=f.module,
                    installed=go_version(f.version, f.module),
                    fixed=go_version(f.fixed, f.module),
                    summary=scan.summaries.get(f.osv, ""),
                )
            if f.package:
                row.packages.add(f.package)
            if scan.mode == "source":
                row.source = max(row.source, f.level)
                if f.symbol and not row.source_symbols.get(f.symbol):
                    row.source_symbols[f.symbol] = f.entry
            else:
                row.binary = max(row.binary, f.level)
                if f.symbol:
                    row.binary_symbols[f.symbol] = ""
    return list(rows.values())


# ---------------------------------------------------------------- allow-list


@dataclass(frozen=True)
class Allow:
    id: str
    module: str
    reason: str
    expires: date
    where: str  # file and entry index, for messages


def parse_allowlist(text: str, name: str) -> list[Allow]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{name}: not valid YAML: {exc}") from exc
    if doc is None:
        return []
    if not isinstance(doc, dict) or set(doc) != {"allow"}:
        raise InputError(f"{name}: the top level must be a mapping with one key, 'allow'")
    items = doc["allow"] or []
    if not isinstance(items, list):
        raise InputError(f"{name}: 'allow' must be a list of entries")
    out: list[Allow] = []
    seen: set[tuple[str, str]] = set()
    for i, item in enumerate(items):
        where = f"{name}: allow[{i}]"
        if not isinstance(item, dict):
            raise InputError(f"{where}: must be a mapping with {', '.join(ALLOW_FIELDS)}")
        unknown = sorted(set(item) - set(ALLOW_FIELDS))
        if unknown:
            raise InputError(f"{where}: unknown field(s) {', '.join(map(str, unknown))}")
        for key in ALLOW_FIELDS:
            if key not in item or item[key] in (None, ""):
                raise InputError(f"{where}: field {key!r} is missing or empty")
        for key in ("id", "module", "reason"):
            if not isinstance(item[key], str) or not item[key].strip():
                raise InputError(f"{where}: field {key!r} must be a non-empty string")
        expires = item["expires"]
        if isinstance(expires, str):
            try:
                expires = date.fromisoformat(expires)
            except ValueError as exc:
                raise InputError(f"{where}: field 'expires' must be YYYY-MM-DD: {exc}") from exc
        if isinstance(expires, datetime) or not isinstance(expires, date):
            raise InputError(f"{where}: field 'expires' must be a date YYYY-MM-DD")
        key2 = (item["id"], item["module"])
        if key2 in seen:
            raise InputError(f"{where}: a second entry for {item['id']} in {item['module']}")
        seen.add(key2)
        out.append(Allow(item["id"], item["module"], item["reason"].strip(), expires, where))
    return out


@dataclass(frozen=True)
class Verdict:
    row: Row
    status: str
    allow: Allow | None = None


def judge(rows: Sequence[Row], allows: Sequence[Allow], today: date) -> list[Verdict]:
    by_key = {(a.id, a.module): a for a in allows}
    out: list[Verdict] = []
    for row in rows:
        allow = by_key.get((row.id, row.module))
        if not row.reachable:
            out.append(Verdict(row, NOT_REACHABLE, allow))
        elif allow is None:
            out.append(Verdict(row, FAIL))
        elif today > allow.expires:
            out.append(Verdict(row, EXPIRED, allow))
        else:
            out.append(Verdict(row, ALLOWED, allow))
    out.sort(key=lambda v: (STATUS_ORDER[v.status], v.row.module != "stdlib", v.row.id))
    return out


def exit_code(verdicts: Sequence[Verdict]) -> int:
    return 1 if any(v.status in (FAIL, EXPIRED) for v in verdicts) else 0


# ---------------------------------------------------------------- Python side


def parse_lock(text: str, name: str) -> list[tuple[str, str]]:
    """The exact pins (name==version) of a requirements lock file."""
    pins: list[tuple[str, str]] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        m = LOCK_LINE.match(line)
        if not m:
            raise InputError(f"{name}:{n}: not an exact pin (name==version): {raw.strip()!r}")
        pins.append((m.group(1), m.group(2)))
    if not pins:
        raise InputError(f"{name}: no pinned packages")
    return pins


@dataclass(frozen=True)
class PythonResult:
    lock: str  # the lock file's name
    rows: list[Row]  # vulnerabilities pip-audit found
    unchecked: list[tuple[str, str, str]]  # (package, version, why not checked)
    checked: int  # packages a vulnerability source answered for


def offline_python(lock: str, pins: Sequence[tuple[str, str]], reason: str) -> PythonResult:
    return PythonResult(lock, [], [(p, v, reason) for p, v in pins], 0)


def parse_pip_audit(
    text: str, name: str, lock: str, pins: Sequence[tuple[str, str]]
) -> PythonResult:
    """pip-audit -f json: {"dependencies": [{"name", "version", "vulns": [...]}
    or {"name", "skip_reason"}], ...}. A pin that pip-audit did not report is unchecked."""
    try:
        doc = json.loads(text)
        deps = doc["dependencies"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{name}: not pip-audit JSON output: {exc}") from exc
    seen: dict[str, dict[str, Any]] = {}
    for d in deps:
        seen[str(d.get("name", "")).lower().replace("_", "-")] = d
    rows: list[Row] = []
    unchecked: list[tuple[str, str, str]] = []
    checked = 0
    for pkg, version in pins:
        d = seen.get(pkg.lower().replace("_", "-"))
        if d is None:
            unchecked.append((pkg, version, "pip-audit did not report it"))
            continue
        if "skip_reason" in d:
            unchecked.append((pkg, version, str(d["skip_reason"])))
            continue
        checked += 1
        for v in d.get("vulns", []):
            rows.append(
                Row(
                    id=str(v["id"]),
                    module=pkg,
                    installed=version,
                    fixed=", ".join(v.get("fix_versions", [])),
                    summary=str(v.get("description", "")).split("\n", 1)[0][:80],
                    python=True,
                )
            )
    return PythonResult(lock, rows, unchecked, checked)


# ---------------------------------------------------------------- rendering


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]


def status_text(v: Verdict, today: date) -> str:
    if v.status == ALLOWED and v.allow is not None:
        left = (v.allow.expires - today).days
        soon = f", {left} day(s) left" if left <= WARN_DAYS else ""
        return f"allowed until {v.allow.expires.isoformat()}{soon}"
    if v.status == EXPIRED and v.allow is not None:
        return f"FAIL: allow-list entry expired {v.allow.expires.isoformat()}"
    return v.status


def packages_text(row: Row) -> str:
    pkgs = sorted(row.packages)
    if not pkgs:
        return "-"
    if len(pkgs) > 2:
        return f"{pkgs[0]}, {pkgs[1]} +{len(pkgs) - 2}"
    return ", ".join(pkgs)


def render(
    verdicts: Sequence[Verdict],
    allows: Sequence[Allow],
    python: PythonResult,
    today: date,
    header: Sequence[str] = (),
) -> str:
    out = list(header)
    go = [v for v in verdicts if not v.row.python]
    py = [v for v in verdicts if v.row.python]
    reach = [v for v in go if v.row.reachable]
    out.append("")
    out.append(
        f"Go: {len(go)} vulnerabilities found ({len(reach)} reachable, "
        f"{len(go) - len(reach)} only imported or required)"
    )
    cols = ("ID", "MODULE", "PACKAGE", "INSTALLED", "FIXED IN", "REACHABLE", "STATUS", "EVIDENCE")

    def cells(v: Verdict) -> list[str]:
        r = v.row
        return [
            r.id,
            r.module,
            packages_text(r) if not r.python else "-",
            r.installed or "?",
            r.fixed or "no fix",
            ("unknown" if r.python else "yes") if r.reachable else "no",
            status_text(v, today),
            r.evidence(),
        ]

    if go:
        out += ["  " + line for line in table(cols, [cells(v) for v in go])]
    out.append("")
    n_py = python.checked + len(python.unchecked)
    out.append(
        f"Python: {n_py} pinned packages in {python.lock}: {python.checked} checked, "
        f"{len(python.unchecked)} NOT CHECKED, {len(py)} vulnerabilities found"
    )
    if py:
        out += ["  " + line for line in table(cols, [cells(v) for v in py])]
    if python.unchecked:
        reasons = sorted({r for _, _, r in python.unchecked})
        for reason in reasons:
            names = [f"{p}=={v}" for p, v, r in python.unchecked if r == reason]
            out.append(f"  not checked ({len(names)}): {reason}:")
            out += textwrap.wrap(
                ", ".join(names),
                100,
                initial_indent="    ",
                subsequent_indent="    ",
                break_on_hyphens=False,
            )
    out.append("")
    used = {(v.row.id, v.row.module) for v in verdicts if v.allow is not None}
    out.append(f"Allow-list: {len(allows)} entries")
    for a in allows:
        state = "used" if (a.id, a.module) in used else "matches no finding: remove it"
        if today > a.expires:
            state += f"; EXPIRED {a.expires.isoformat()}, no longer allows"
        else:
            state += f"; expires {a.expires.isoformat()}"
        out.append(f"  {a.id} ({a.module}): {state}. Reason: {a.reason}")
    failing = [v for v in verdicts if v.status in (FAIL, EXPIRED)]
    out.append("")
    if failing:
        ids = ", ".join(f"{v.row.id} ({v.row.module} {v.row.installed})" for v in failing)
        n = f"{len(failing)} reachable vulnerabilit{'y' if len(failing) == 1 else 'ies'}"
        out.append(f"RESULT: FAIL: {n} not allowed: {ids}")
        for v in failing:
            why = "its allow-list entry expired" if v.status == EXPIRED else "not in the allow-list"
            fix = f"upgrade to {v.row.fixed}" if v.row.fixed else "no fixed version yet"
            what = f" ({v.row.summary})" if v.row.summary else ""
            out.append(f"  {v.row.id} in {v.row.module} {v.row.installed}: {why}; {fix}{what}")
    else:
        allowed = sum(1 for v in verdicts if v.status == ALLOWED)
        tail = f" ({allowed} allowed by the allow-list)" if allowed else ""
        unchecked = ""
        if python.unchecked:
            unchecked = f"; {len(python.unchecked)} Python packages NOT CHECKED"
        out.append(
            f"RESULT: ok: no reachable vulnerability outside the allow-list{tail}{unchecked}"
        )
    return "\n".join(out) + "\n"


def db_line(db: Path) -> tuple[str, str]:
    """(modified, the database line) for a database built by vulndb.py."""
    try:
        got = vulndb.info(db)
    except vulndb.VulnDBError as exc:
        raise InputError(str(exc)) from exc
    return got.modified, (
        f"Database: golang.org/x/vulndb {got.version}, dated {got.modified}, "
        f"{got.entries} entries read (file://{db})"
    )


def check_config(scan: Scan, db: Path, modified: str, name: str) -> None:
    """govulncheck must have read our database, not another one."""
    got_db = str(scan.config.get("db", ""))
    got_mod = str(scan.config.get("db_last_modified", ""))
    if got_db.rstrip("/") != f"file://{db}".rstrip("/"):
        raise InputError(f"{name}: config.db is {got_db!r}, want file://{db}")
    if got_mod != modified:
        raise InputError(f"{name}: config.db_last_modified is {got_mod!r}, want {modified}")


# ---------------------------------------------------------------- I/O


def read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from exc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="the verdict of make scan (hack/scan/scan.sh)")
    p.add_argument("--db", type=Path, required=True, help="the database govulncheck read")
    p.add_argument("--source", type=Path, help="govulncheck -format json, source mode")
    p.add_argument("--binary", type=Path, help="govulncheck -format json, binary mode")
    p.add_argument("--allowlist", type=Path, required=True)
    p.add_argument("--python-lock", type=Path, required=True, help="requirements.lock")
    p.add_argument("--pip-audit", type=Path, help="pip-audit -f json output (online)")
    p.add_argument("--python-offline", metavar="REASON", help="why Python was not checked")
    p.add_argument("--note", action="append", default=[], help="a line for the header")
    p.add_argument("--today", type=date.fromisoformat, help="YYYY-MM-DD (default: UTC today)")
    args = p.parse_args(argv)
    today: date = args.today or datetime.now(UTC).date()
    try:
        if not args.source and not args.binary:
            raise InputError("give --source and/or --binary")
        if bool(args.pip_audit) == bool(args.python_offline):
            raise InputError("give exactly one of --pip-audit and --python-offline")
        modified, dbl = db_line(args.db)
        scans: list[Scan] = []
        for path in (args.source, args.binary):
            if path:
                scan = parse_govulncheck(read(path), str(path))
                check_config(scan, args.db, modified, str(path))
                scans.append(scan)
        header = [dbl]
        for scan in scans:
            c = scan.config
            go = f", {c['go_version']}" if c.get("go_version") else ""
            header.append(
                f"govulncheck {c.get('scanner_version', '?')}: {scan.mode} mode, "
                f"{c.get('scan_level', '?')} level{go}: {len(scan.findings)} findings"
            )
        header += args.note
        allows = parse_allowlist(read(args.allowlist), str(args.allowlist))
        pins = parse_lock(read(args.python_lock), str(args.python_lock))
        if args.pip_audit:
            python = parse_pip_audit(
                read(args.pip_audit), str(args.pip_audit), str(args.python_lock), pins
            )
        else:
            python = offline_python(str(args.python_lock), pins, args.python_offline)
    except InputError as exc:
        print(f"report.py: error: {exc}", file=sys.stderr)
        return 2
    verdicts = judge(merge(scans) + python.rows, allows, today)
    sys.stdout.write(render(verdicts, allows, python, today, header))
    return exit_code(verdicts)


if __name__ == "__main__":
    sys.exit(main())
