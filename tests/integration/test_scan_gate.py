"""`make scan` fails on a reachable vulnerability (issue 16).

A copy of app/ pins github.com/quic-go/quic-go back to v0.59.0, which has GO-2026-5676
(HTTP/3 QPACK trailer expansion memory exhaustion, fixed in v0.59.1; in the pinned
golang.org/x/vulndb of 2026-11-05). app/ reaches it without a code change: gin imports
quic-go's http3, and govulncheck's source mode finds a call path from main.go (through
net/http's server) to a vulnerable http3 symbol. The scan of that copy must exit 1 and
name GO-2026-5676 as failing.

No local cluster: it needs the go command only (the first run builds govulncheck and the
database into $KANARY_CACHE, later runs reuse them), and the Go module proxy for the vulnerable
version, so `make integration` runs it outside the cluster's network namespace (inside, a
cold module cache failed: no route to proxy.golang.org).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCAN = REPO / "hack" / "scan" / "scan.sh"
MODULE = "github.com/quic-go/quic-go"
VULNERABLE = "v0.59.0"
FIXED = "v0.59.1"
OSV_ID = "GO-2026-5676"

pytestmark = pytest.mark.skipif(
    shutil.which("go") is None, reason="needs the go command (govulncheck and the twin build)"
)


@pytest.mark.timeout(1500)  # a cold cache builds govulncheck and the database first
def test_scan_fails_naming_a_reachable_vulnerability(tmp_path: Path) -> None:
    app = tmp_path / "app"
    shutil.copytree(REPO / "app", app, ignore=shutil.ignore_patterns("bin"))
    subprocess.run(["go", "get", f"{MODULE}@{VULNERABLE}"], cwd=app, check=True, timeout=300)
    assert f"{MODULE} {VULNERABLE}" in (app / "go.mod").read_text()

    started = time.monotonic()
    scan = subprocess.run(
        [str(SCAN), "--app", str(app)],
        capture_output=True,
        text=True,
        timeout=1400,
        env={**os.environ, "KANARY_SCAN_ONLINE": "0"},  # the Go side is what this tests
    )
    took = time.monotonic() - started
    out = scan.stdout
    print(out, scan.stderr, f"scan took {took:.0f}s", sep="\n")

    assert scan.returncode == 1, f"exit {scan.returncode}\n{scan.stderr}"
    row = re.search(
        rf"^\s+{OSV_ID}\s+{re.escape(MODULE)}\s+\S+\s+{VULNERABLE}\s+{FIXED}\s+yes\s+FAIL\s",
        out,
        re.MULTILINE,
    )
    assert row, out
    result = next(line for line in out.splitlines() if line.startswith("RESULT:"))
    assert result.startswith("RESULT: FAIL") and OSV_ID in result
    assert f"{OSV_ID} in {MODULE} {VULNERABLE}: not in the allow-list; upgrade to {FIXED}" in out
    assert re.search(r"^Database: golang\.org/x/vulndb \S+, dated \S+, \d+ entries", out, re.M)
