#!/usr/bin/env python3
"""The local Go vulnerability database that `govulncheck -db file://DIR` reads.

`build` turns the OSV entries of a pinned golang.org/x/vulndb module version
(its data/osv/GO-*.json) into the layout govulncheck reads:

    index/db.json       {"modified": RFC 3339}
    index/modules.json  [{"path": module, "stdlib" or "toolchain", "vulns": [{"id", "modified"}]}]
    index/vulns.json    [{"id", "modified", "aliases"?}]
    ID/<id>.json        the OSV entry

The module zip has no git history, so every entry's `modified` is 0001-01-01: the
database's date is the commit time in the pseudo-version (v0.0.0-YYYYMMDDhhmmss-commit).
`info` prints the line `vulndb <version>: <N> entries, dated <date>` for a built database.
Standard library only: it runs before the project's venv exists.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# The 14-digit UTC commit time in a Go pseudo-version, in all three forms:
# vX.0.0-T-c, vX.Y.Z-pre.0.T-c and vX.Y.(Z+1)-0.T-c.
PSEUDO_TIME = re.compile(r"[-.](\d{14})-[0-9a-f]{12}$")
OSV_ID = re.compile(r"^GO-\d{4}-\d{4,}$")
ZERO_TIME = "0001-01-01T00:00:00Z"


class VulnDBError(Exception):
    """A problem with the source entries or a built database, naming the file."""


@dataclass(frozen=True)
class DbInfo:
    version: str
    modified: str  # RFC 3339, UTC
    entries: int
    newest_entry: str  # the newest `modified` among the entries (ZERO_TIME when none is dated)

    def line(self) -> str:
        note = ""
        if self.newest_entry == ZERO_TIME:
            note = " (the date of the pinned commit: the entries carry none)"
        return f"vulndb {self.version}: {self.entries} entries, dated {self.modified}{note}"


def pseudo_version_time(version: str) -> str:
    """The commit time of a pseudo-version as RFC 3339 UTC."""
    m = PSEUDO_TIME.search(version)
    if not m:
        raise VulnDBError(f"{version!r} is not a Go pseudo-version (vX.Y.Z-YYYYMMDDhhmmss-commit)")
    t = datetime.strptime(m.group(1), "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def index(entries: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """modules.json and vulns.json for these OSV entries, both sorted.

    modules.json leaves out the optional "fixed" pre-filter: without it govulncheck reads
    ID/<id>.json and checks the affected ranges itself, which is always correct.
    """
    modules: dict[str, dict[str, dict[str, str]]] = {}
    vulns: list[dict[str, Any]] = []
    for e in entries:
        vid, modified = e["id"], e["modified"]
        v: dict[str, Any] = {"id": vid, "modified": modified}
        if e.get("aliases"):
            v["aliases"] = e["aliases"]
        vulns.append(v)
        for a in e.get("affected", []):
            path = a["package"]["name"]
            modules.setdefault(path, {})[vid] = {"id": vid, "modified": modified}
    mods = [{"path": p, "vulns": [vs[k] for k in sorted(vs)]} for p, vs in sorted(modules.items())]
    return mods, sorted(vulns, key=lambda v: str(v["id"]))


def read_entries(osv_dir: Path) -> list[dict[str, Any]]:
    files = sorted(osv_dir.glob("GO-*.json"))
    if not files:
        raise VulnDBError(f"{osv_dir}: no GO-*.json entries (is this vulndb's data/osv?)")
    entries = []
    for f in files:
        try:
            e = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise VulnDBError(f"{f}: not readable as JSON: {exc}") from exc
        if not isinstance(e, dict):
            raise VulnDBError(f"{f}: not an OSV object")
        for field in ("id", "modified"):
            if not isinstance(e.get(field), str):
                raise VulnDBError(f"{f}: field {field!r} missing or not a string")
        if not OSV_ID.match(e["id"]) or f.name != e["id"] + ".json":
            raise VulnDBError(f"{f}: id {e['id']!r} does not match the file name")
        entries.append(e)
    return entries


def _dump(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, separators=(",", ":"), ensure_ascii=False), encoding="utf-8")


def build(osv_dir: Path, out: Path, version: str) -> DbInfo:
    """Write the database for vulndb `version` into `out` (replaced whole, atomically)."""
    modified = pseudo_version_time(version)
    entries = read_entries(osv_dir)
    mods, vulns = index(entries)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "index").mkdir()
        (tmp / "ID").mkdir()
        for e in entries:
            _dump(tmp / "ID" / f"{e['id']}.json", e)
        _dump(tmp / "index" / "modules.json", mods)
        _dump(tmp / "index" / "vulns.json", vulns)
        _dump(tmp / "index" / "db.json", {"modified": modified})
        _dump(tmp / "source.json", {"module": "golang.org/x/vulndb", "version": version})
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info(out)


def info(db: Path) -> DbInfo:
    """What a built database holds, checked against its own index."""
    try:
        meta = json.loads((db / "index" / "db.json").read_text(encoding="utf-8"))
        vulns = json.loads((db / "index" / "vulns.json").read_text(encoding="utf-8"))
        source = json.loads((db / "source.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise VulnDBError(f"{db}: not a complete database ({exc}); remove it to rebuild") from exc
    entries = len(list((db / "ID").glob("GO-*.json")))
    if entries != len(vulns):
        raise VulnDBError(
            f"{db}: index/vulns.json lists {len(vulns)} entries, ID/ has {entries}; remove it"
        )
    newest = max((str(v["modified"]) for v in vulns), default=ZERO_TIME)
    return DbInfo(str(source["version"]), str(meta["modified"]), entries, newest)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build DIR from vulndb's data/osv")
    b.add_argument("--osv", type=Path, required=True, help="golang.org/x/vulndb@V/data/osv")
    b.add_argument("--version", required=True, help="the vulndb module's pseudo-version")
    b.add_argument("--out", type=Path, required=True)
    i = sub.add_parser("info", help="print the entry count and date of a built database")
    i.add_argument("--db", type=Path, required=True)
    args = p.parse_args(argv)
    try:
        if args.cmd == "build":
            result = build(args.osv, args.out, args.version)
            if result.version != args.version:
                raise VulnDBError(f"{args.out}: built {result.version}, wanted {args.version}")
        else:
            result = info(args.db)
    except VulnDBError as exc:
        print(f"vulndb.py: error: {exc}", file=sys.stderr)
        return 2
    print(result.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
