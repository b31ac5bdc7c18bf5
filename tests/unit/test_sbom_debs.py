"""hack/release/sbom_debs.py: the operator image's Debian packages in its SBOM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.unit.scripts import load_script

sbom_debs = load_script("release", "sbom_debs")

LIBSTDCXX = """Package: libstdc++6
Status: install ok installed
Architecture: amd64
Version: 12.2.0-14+deb12u1
Depends: gcc-12-base (= 12.2.0-14+deb12u1),
 libc6 (>= 2.36)
Description: GNU Standard C++ Library v3
 This package contains an additional runtime library.
"""


def test_control_fields_skip_continuation_lines() -> None:
    fields = sbom_debs.control_fields(LIBSTDCXX)
    assert fields["Package"] == "libstdc++6"
    assert fields["Version"] == "12.2.0-14+deb12u1"
    assert fields["Depends"] == "gcc-12-base (= 12.2.0-14+deb12u1),"
    assert "libc6 (>= 2.36)" not in fields


def test_a_deb_gets_a_package_url_with_its_version_escaped() -> None:
    c = sbom_debs.deb_component(sbom_debs.control_fields(LIBSTDCXX), "/status.d/libstdc++6")
    assert c["purl"] == "pkg:deb/debian/libstdc++6@12.2.0-14%2Bdeb12u1?arch=amd64&distro=debian-12"
    assert (c["name"], c["version"], c["type"]) == ("libstdc++6", "12.2.0-14+deb12u1", "library")


def test_merge_adds_every_package_and_makes_the_image_the_subject(tmp_path: Path) -> None:
    status = tmp_path / "status.d"
    status.mkdir()
    (status / "libstdc++6").write_text(LIBSTDCXX)
    (status / "zlib1g").write_text("Package: zlib1g\nVersion: 1:1.2.13.dfsg-1+deb12u1\n")
    src = tmp_path / "python.json"
    src.write_text(json.dumps({"bomFormat": "CycloneDX", "components": [{"name": "kopf"}]}))
    out = tmp_path / "out.json"
    rc = sbom_debs.main(
        ["--sbom", str(src), "--status-dir", str(status), "--image", "kanary/operator:0.1.0",
         "--out", str(out)]
    )  # fmt: skip
    assert rc == 0
    merged = json.loads(out.read_text())
    assert [c["name"] for c in merged["components"]] == ["kopf", "libstdc++6", "zlib1g"]
    assert merged["metadata"]["component"]["name"] == "kanary/operator"
    assert merged["metadata"]["component"]["version"] == "0.1.0"


def test_a_file_that_is_not_a_control_file_is_an_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = tmp_path / "status.d"
    status.mkdir()
    (status / "junk").write_text("not a control file\n")
    src = tmp_path / "python.json"
    src.write_text("{}")
    rc = sbom_debs.main(
        ["--sbom", str(src), "--status-dir", str(status), "--image", "a:b",
         "--out", str(tmp_path / "o.json")]
    )  # fmt: skip
    assert rc == 1
    assert f"{status / 'junk'}: not a Debian control file" in capsys.readouterr().err
