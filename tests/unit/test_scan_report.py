"""The vulnerability gate's pure logic (hack/scan/report.py, hack/scan/vulndb.py): which
findings fail the scan, what the allow-list allows and until when, that Python packages
nobody checked are never called clean, and the database's date and entry count.

The govulncheck objects are real ones (govulncheck v1.9.0 on app/, database of 2026-11-05),
trimmed to the fields report.py reads.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from tests.unit.scripts import load_script

SCAN = Path(__file__).resolve().parents[2] / "hack" / "scan"


report = load_script("scan", "report")
vulndb = load_script("scan", "vulndb")

DB = "/cache/vulndb/v0.0.0-20261105234957-e22db6528018"
DB_DATE = "2026-11-05T23:49:57Z"
TODAY = date(2026, 12, 2)


def config(mode: str) -> dict[str, Any]:
    c = {
        "protocol_version": "v1.0.0",
        "scanner_name": "govulncheck",
        "scanner_version": "v1.9.0",
        "db": f"file://{DB}",
        "db_last_modified": DB_DATE,
        "scan_level": "symbol",
        "scan_mode": mode,
    }
    if mode == "source":
        c["go_version"] = "go1.26.8"
    return {"config": c}


def frame(module: str, version: str | None, package: str | None = None, **kw: Any) -> Any:
    f: dict[str, Any] = {"module": module}
    if version:
        f["version"] = version
    if package:
        f["package"] = package
    f.update(kw)
    return f


APP = "github.com/kanary-dev/kanary/app"
QUIC = "github.com/quic-go/quic-go"
# GO-2026-5676 in source mode: module, package, then symbol level with its call path.
QUIC_MODULE = {"osv": "GO-2026-5676", "fixed_version": "v0.59.1", "trace": [frame(QUIC, "v0.59.0")]}
QUIC_PACKAGE = {
    "osv": "GO-2026-5676",
    "fixed_version": "v0.59.1",
    "trace": [frame(QUIC, "v0.59.0", f"{QUIC}/http3")],
}
QUIC_CALLED = {
    "osv": "GO-2026-5676",
    "fixed_version": "v0.59.1",
    "trace": [
        frame(
            QUIC,
            "v0.59.0",
            f"{QUIC}/http3",
            function="Error",
            receiver="*qpackError",
            position={"filename": "http3/headers.go", "line": 24},
        ),
        frame("stdlib", "v1.26.8", "net/http", function="serve", receiver="*conn"),
        frame("stdlib", "v1.26.8", "net/http", function="Serve", receiver="*Server"),
        frame(APP, None, APP, function="run$1", position={"filename": "main.go", "line": 72}),
        frame(APP, None, APP, function="main", position={"filename": "main.go", "line": 36}),
    ],
}
X509_CALLED = {
    "osv": "GO-2026-6809",
    "fixed_version": "v1.26.10",
    "trace": [
        frame("stdlib", "v1.26.8", "crypto/x509", function="Verify", receiver="*Certificate"),
        frame(APP, None, APP, function="run", position={"filename": "main.go", "line": 48}),
    ],
}
XNET_MODULE = {
    "osv": "GO-2026-6860",
    "fixed_version": "v0.62.0",
    "trace": [frame("golang.org/x/net", "v0.59.0")],
}
TEMPLATE_PACKAGE = {
    "osv": "GO-2026-6599",
    "fixed_version": "v1.26.9",
    "trace": [frame("stdlib", "v1.26.8", "html/template")],
}
OSV_QUIC = {
    "osv": {
        "id": "GO-2026-5676",
        "summary": "HTTP/3 QPACK Trailer Expansion Memory Exhaustion in github.com/quic-go/quic-go",
    }
}


def stream(mode: str, *findings: dict[str, Any]) -> str:
    """govulncheck -format json: indented objects one after another, not an array."""
    objs: list[Any] = [config(mode), {"progress": {"message": "Scanning..."}}, OSV_QUIC]
    objs += [{"finding": f} for f in findings]
    return "\n".join(json.dumps(o, indent=2) for o in objs)


def allow(id_: str, module: str, expires: str = "2027-01-05") -> str:
    return f"""
  - id: {id_}
    module: {module}
    reason: "fixed in go1.26.10; the only newer toolchain served here is go1.27.3"
    expires: {expires}
"""


def verdicts(
    source: str | None = None,
    binary: str | None = None,
    allowlist: str = "allow: []",
    today: date = TODAY,
) -> tuple[list[Any], str, int]:
    scans = [report.parse_govulncheck(t, "x.json") for t in (source, binary) if t is not None]
    allows = report.parse_allowlist(allowlist, "allowlist.yaml")
    python = report.offline_python("requirements.lock", [("pyyaml", "6.0.4")], "offline")
    vs = report.judge(report.merge(scans), allows, today)
    return vs, report.render(vs, allows, python, today), report.exit_code(vs)


def row_line(text: str, id_: str, module: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.split()[:2] == [id_, module]]
    assert len(lines) == 1, text
    return lines[0]


def test_a_called_vulnerability_not_in_the_allow_list_fails_naming_it() -> None:
    _, text, code = verdicts(stream("source", QUIC_MODULE, QUIC_PACKAGE, QUIC_CALLED))
    assert code == 1
    line = row_line(text, "GO-2026-5676", QUIC)
    assert line.split()[2:7] == [f"{QUIC}/http3", "v0.59.0", "v0.59.1", "yes", "FAIL"]
    assert "calls http3.qpackError.Error from main.go:72" in line  # the app's own frame
    result = text.splitlines()[-2]
    assert result.startswith("RESULT: FAIL: 1 reachable") and "GO-2026-5676" in result
    assert f"GO-2026-5676 in {QUIC} v0.59.0: not in the allow-list; upgrade to v0.59.1" in text


def test_an_allowed_entry_before_its_expiry_passes() -> None:
    for today in (TODAY, date(2027, 1, 5)):  # the expiry day itself still allows
        _, text, code = verdicts(
            stream("source", X509_CALLED),
            allowlist="allow:" + allow("GO-2026-6809", "stdlib"),
            today=today,
        )
        assert code == 0, text
        line = row_line(text, "GO-2026-6809", "stdlib")
        assert line.split()[2:6] == ["crypto/x509", "go1.26.8", "go1.26.10", "yes"]
        assert "allowed until 2027-01-05" in line
        assert "RESULT: ok" in text and "(1 allowed by the allow-list)" in text


def test_an_expired_allow_entry_no_longer_allows_and_says_so() -> None:
    _, text, code = verdicts(
        stream("source", X509_CALLED),
        allowlist="allow:" + allow("GO-2026-6809", "stdlib"),
        today=date(2027, 1, 6),
    )
    assert code == 1
    assert "FAIL: allow-list entry expired 2027-01-05" in row_line(text, "GO-2026-6809", "stdlib")
    assert "EXPIRED 2027-01-05, no longer allows" in text
    assert "GO-2026-6809 in stdlib go1.26.8: its allow-list entry expired" in text


def test_an_allow_entry_is_for_one_module_only() -> None:
    # The same id in another module (x/net vs the standard library's copy) is not allowed.
    called_in_xnet = json.loads(json.dumps(X509_CALLED))
    called_in_xnet["trace"][0].update(module="golang.org/x/net", version="v0.59.0")
    _, text, code = verdicts(
        stream("source", called_in_xnet), allowlist="allow:" + allow("GO-2026-6809", "stdlib")
    )
    assert code == 1
    assert "matches no finding: remove it" in text


def test_imported_or_required_only_is_listed_as_not_reachable_not_failed() -> None:
    vs, text, code = verdicts(
        stream("source", XNET_MODULE, TEMPLATE_PACKAGE, QUIC_MODULE, QUIC_PACKAGE),
        stream("binary", XNET_MODULE, TEMPLATE_PACKAGE),
    )
    assert code == 0, text
    assert {v.status for v in vs} == {"not reachable"}
    assert len(vs) == 3
    line = row_line(text, "GO-2026-6860", "golang.org/x/net")
    assert " no " in line and "not reachable" in line
    assert "source: requires module; binary: has module" in line
    assert "source: imports; binary: has package" in row_line(text, "GO-2026-6599", "stdlib")
    assert "0 reachable, 3 only imported or required" in text


def test_a_symbol_linked_into_the_binary_is_reachable_without_a_source_path() -> None:
    linked = {
        "osv": "GO-2026-5676",
        "fixed_version": "v0.59.1",
        "trace": [frame(QUIC, "v0.59.0", f"{QUIC}/http3", function="ConfigureTLSConfig")],
    }
    _, text, code = verdicts(stream("source", QUIC_PACKAGE), stream("binary", linked))
    assert code == 1
    line = row_line(text, "GO-2026-5676", QUIC)
    assert "source: imports; binary: links http3.ConfigureTLSConfig" in line


def test_python_pins_offline_are_listed_as_not_checked_never_clean() -> None:
    pins = report.parse_lock(
        "# lock\nkopf==1.45.2\nPyYAML==6.0.4  # comment\nnumpy==2.4.6 ; python_version>'3'\n",
        "requirements.lock",
    )
    assert pins == [("kopf", "1.45.2"), ("PyYAML", "6.0.4"), ("numpy", "2.4.6")]
    reason = "no vulnerability source reachable from this machine (PyPI's JSON API / OSV)"
    python = report.offline_python("requirements.lock", pins, reason)
    vs = report.judge(report.merge([report.parse_govulncheck(stream("source"), "s")]), [], TODAY)
    text = report.render(vs, [], python, TODAY)
    assert "3 pinned packages in requirements.lock: 0 checked, 3 NOT CHECKED" in text
    assert f"not checked (3): {reason}:" in text
    assert "kopf==1.45.2, PyYAML==6.0.4, numpy==2.4.6" in text
    assert text.splitlines()[-1] == (
        "RESULT: ok: no reachable vulnerability outside the allow-list; "
        "3 Python packages NOT CHECKED"
    )
    assert "clean" not in text


def test_pip_audit_results_a_vulnerability_fails_and_skips_are_not_checked() -> None:
    pins = [("requests", "2.34.2"), ("kopf", "1.45.2"), ("numpy", "2.4.6")]
    audit = {
        "dependencies": [
            {
                "name": "requests",
                "version": "2.34.2",
                "vulns": [
                    {
                        "id": "PYSEC-2026-1",
                        "fix_versions": ["2.34.3"],
                        "aliases": [],
                        "description": "a leak",
                    }
                ],
            },
            {"name": "kopf", "skip_reason": "Dependency not found on PyPI"},
        ],
        "fixes": [],
    }
    python = report.parse_pip_audit(json.dumps(audit), "pa.json", "requirements.lock", pins)
    assert python.checked == 1
    assert python.unchecked == [
        ("kopf", "1.45.2", "Dependency not found on PyPI"),
        ("numpy", "2.4.6", "pip-audit did not report it"),
    ]
    vs = report.judge(python.rows, [], TODAY)
    assert report.exit_code(vs) == 1
    text = report.render(vs, [], python, TODAY)
    assert "PYSEC-2026-1" in row_line(text, "PYSEC-2026-1", "requests")
    assert "unknown" in row_line(text, "PYSEC-2026-1", "requests")
    allowed = report.parse_allowlist("allow:" + allow("PYSEC-2026-1", "requests"), "a.yaml")
    assert report.exit_code(report.judge(python.rows, allowed, TODAY)) == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("allow:\n  - {id: GO-1, module: stdlib, expires: 2027-01-05}", "allow[0]: field 'reason'"),
        (
            "allow:\n  - {id: GO-1, module: stdlib, reason: r, expires: 'Jan 5'}",
            "allow[0]: field 'expires' must be YYYY-MM-DD",
        ),
        (
            "allow:\n  - {id: GO-1, module: stdlib, reason: r, expires: 2027-01-05, by: me}",
            "allow[0]: unknown field(s) by",
        ),
        ("entries: []", "one key, 'allow'"),
        (
            "allow:" + allow("GO-1", "stdlib") + allow("GO-1", "stdlib"),
            "allow[1]: a second entry for GO-1 in stdlib",
        ),
    ],
)
def test_allow_list_errors_name_the_file_and_field(text: str, message: str) -> None:
    with pytest.raises(report.InputError, match=r"^allowlist\.yaml: ") as err:
        report.parse_allowlist(text, "allowlist.yaml")
    assert message in str(err.value)


def test_the_repository_allow_list_is_valid_and_every_entry_has_a_reason() -> None:
    path = SCAN / "allowlist.yaml"
    entries = report.parse_allowlist(path.read_text(), str(path))  # empty since go1.27.3
    assert all(len(e.reason) > 20 and e.id.startswith(("GO-", "PYSEC-")) for e in entries)


def test_an_empty_allow_list_parses() -> None:
    assert report.parse_allowlist("allow: []\n", "x.yaml") == []


def osv_entry(id_: str, module: str) -> dict[str, Any]:
    return {
        "schema_version": "1.3.1",
        "id": id_,
        "modified": "0001-01-01T00:00:00Z",
        "published": "0001-01-01T00:00:00Z",
        "aliases": [f"CVE-{id_[3:]}"],
        "affected": [
            {
                "package": {"name": module, "ecosystem": "Go"},
                "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}]}],
            },
            {"package": {"name": module, "ecosystem": "Go"}},
        ],
    }


def test_vulndb_layout_date_and_entry_count(tmp_path: Path) -> None:
    osv = tmp_path / "osv"
    osv.mkdir()
    for id_, module in [("GO-2026-6809", "stdlib"), ("GO-2026-5676", QUIC)]:
        (osv / f"{id_}.json").write_text(json.dumps(osv_entry(id_, module)))
    version = "v0.0.0-20261105234957-e22db6528018"
    info = vulndb.build(osv, tmp_path / "db", version)
    assert info.line() == (
        f"vulndb {version}: 2 entries, dated {DB_DATE} "
        "(the date of the pinned commit: the entries carry none)"
    )
    db = tmp_path / "db"
    assert json.loads((db / "index" / "db.json").read_text()) == {"modified": DB_DATE}
    modules = json.loads((db / "index" / "modules.json").read_text())
    assert [m["path"] for m in modules] == [QUIC, "stdlib"]  # sorted, one entry per id
    assert modules[1]["vulns"] == [{"id": "GO-2026-6809", "modified": "0001-01-01T00:00:00Z"}]
    vulns = json.loads((db / "index" / "vulns.json").read_text())
    assert [v["id"] for v in vulns] == ["GO-2026-5676", "GO-2026-6809"]
    assert vulns[0]["aliases"] == ["CVE-2026-5676"]
    assert json.loads((db / "ID" / "GO-2026-5676.json").read_text())["id"] == "GO-2026-5676"
    modified, line = report.db_line(db)
    assert modified == DB_DATE
    assert line.startswith(f"Database: golang.org/x/vulndb {version}, dated {DB_DATE}, 2 entries")


@pytest.mark.parametrize(
    ("version", "when"),
    [
        ("v0.0.0-20261105234957-e22db6528018", "2026-11-05T23:49:57Z"),
        ("v1.2.4-0.20250102030405-abcdefabcdef", "2025-01-02T03:04:05Z"),
        ("v1.2.3-pre.0.20240229235959-abcdefabcdef", "2024-02-29T23:59:59Z"),
    ],
)
def test_database_date_comes_from_the_pseudo_version(version: str, when: str) -> None:
    assert vulndb.pseudo_version_time(version) == when


def test_a_release_version_has_no_date() -> None:
    with pytest.raises(vulndb.VulnDBError, match="not a Go pseudo-version"):
        vulndb.pseudo_version_time("v1.0.0")


def test_govulncheck_must_have_read_our_database() -> None:
    scan = report.parse_govulncheck(stream("source"), "s.json")
    report.check_config(scan, Path(DB), DB_DATE, "s.json")
    with pytest.raises(report.InputError, match=r"want file:///other$"):
        report.check_config(scan, Path("/other"), DB_DATE, "s.json")
    with pytest.raises(report.InputError, match="db_last_modified"):
        report.check_config(scan, Path(DB), "2026-01-01T00:00:00Z", "s.json")


def test_not_govulncheck_output_is_an_input_error() -> None:
    with pytest.raises(report.InputError, match="no config object"):
        report.parse_govulncheck('{"progress": {}}', "x.json")
    with pytest.raises(report.InputError, match=r"^x\.json: not a govulncheck JSON stream"):
        report.parse_govulncheck('{"config": {"scan_mode": "source"}} {oops', "x.json")


def test_main_exit_codes_and_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    osv = tmp_path / "osv"
    osv.mkdir()
    (osv / "GO-2026-5676.json").write_text(json.dumps(osv_entry("GO-2026-5676", QUIC)))
    db = tmp_path / "db"
    vulndb.build(osv, db, "v0.0.0-20261105234957-e22db6528018")
    src = tmp_path / "source.json"
    src.write_text(stream("source", QUIC_CALLED).replace(f"file://{DB}", f"file://{db}"))
    lock = tmp_path / "requirements.lock"
    lock.write_text("pyyaml==6.0.4\n")
    empty = tmp_path / "allow.yaml"
    empty.write_text("allow: []\n")
    args = [
        f"--db={db}",
        f"--source={src}",
        f"--python-lock={lock}",
        "--python-offline=offline",
        "--today=2026-12-02",
    ]
    assert report.main([*args, f"--allowlist={empty}"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith(f"dated {DB_DATE}, 1 entries read (file://{db})")
    assert "RESULT: FAIL: 1 reachable vulnerability not allowed: GO-2026-5676" in out
    allowed = tmp_path / "allowed.yaml"
    allowed.write_text("allow:" + allow("GO-2026-5676", QUIC))
    assert report.main([*args, f"--allowlist={allowed}"]) == 0
    assert "RESULT: ok" in capsys.readouterr().out
    assert report.main([*args, f"--allowlist={tmp_path / 'missing.yaml'}"]) == 2
    assert "missing.yaml" in capsys.readouterr().err
