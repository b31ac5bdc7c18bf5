"""What hack/images/build.sh ships beside each image (issue 16): SBOMs, debug files, signatures.

- The Gin image's SBOM (cyclonedx-gomod) lists exactly the Go modules of the binary in that
  image, as `go version -m` reads them, and the Go toolchain as the standard library.
- The operator image's SBOM (cyclonedx-py, run by the image's own Python, plus the Debian
  packages) lists the versions requirements.lock and hack/images/build.sh pin.
- The debug file beside a Gin image has the build id of the binary inside that image.
- A tarball or SBOM with one byte changed fails signature verification, and
  hack/cluster/load-images.sh (what node-up.sh loads the images with) refuses to import it:
  containerd's images stay as they were.

Reads the artifacts of `make images` in $KANARY_CACHE/images (make integration builds them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from .conftest import REPO_ROOT
from .test_node import ctr

IMAGES = Path(os.environ.get("KANARY_CACHE", Path.home() / ".cache" / "kanary")) / "images"
LOAD = REPO_ROOT / "hack" / "cluster" / "load-images.sh"
VERIFY = REPO_ROOT / "hack" / "release" / "verify.sh"
GIN_VERSIONS = ("v1", "v2", "v3", "v4")

pytestmark = pytest.mark.skipif(
    not (IMAGES / "gin-demo-v1.tar").is_file(), reason=f"no images in {IMAGES}: make images"
)


def file_in_image(tar: Path, path: str, out: Path) -> Path:
    """Copy one file out of a docker-archive tarball's (single) layer."""
    with tarfile.open(tar) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        (layer_name,) = manifest[0]["Layers"]
        layer = outer.extractfile(layer_name)
        assert layer is not None
        with tarfile.open(fileobj=layer, mode="r:*") as inner:
            member = inner.extractfile(path.lstrip("/"))
            assert member is not None, f"{path} not in {tar}"
            out.write_bytes(member.read())
    return out


def go_version_m(binary: Path) -> tuple[str, set[str]]:
    """(go version, {module@version}) of a Go binary, as `go version -m` prints them."""
    out = subprocess.run(
        ["go", "version", "-m", str(binary)], capture_output=True, text=True, check=True
    ).stdout
    go = out.splitlines()[0].split(": ", 1)[1].strip()
    deps = set()
    for line in out.splitlines():
        f = line.split()
        # "=>": a replaced module; the replacement is what is linked.
        if f and f[0] in ("dep", "=>"):
            deps.add(f"{f[1]}@{f[2]}")
    return go, deps


def components(sbom: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c.get("version", "") for c in sbom.get("components", [])}


@pytest.mark.parametrize("version", GIN_VERSIONS)
def test_the_gin_sbom_lists_the_go_modules_of_its_binary(version: str, tmp_path: Path) -> None:
    binary = file_in_image(IMAGES / f"gin-demo-{version}.tar", "/gin-demo", tmp_path / "gin-demo")
    go, deps = go_version_m(binary)
    assert deps, "go version -m read no modules"
    sbom = json.loads((IMAGES / f"gin-demo-{version}.sbom.cdx.json").read_text())
    assert sbom["bomFormat"] == "CycloneDX"
    listed = components(sbom)
    std = listed.pop("std", None)
    assert {f"{n}@{v}" for n, v in listed.items()} == deps
    assert std == go, f"the SBOM's std {std}, the binary's toolchain {go}"
    assert sbom["metadata"]["component"]["name"] == "github.com/kanary-dev/kanary/app"


def pins(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)", line)
        if m:
            out[m[1].lower().replace("_", "-")] = m[2]
    return out


def test_the_operator_sbom_lists_the_pinned_python_packages_and_debian_packages() -> None:
    sbom = json.loads((IMAGES / "operator.sbom.cdx.json").read_text())
    assert sbom["metadata"]["component"] == {
        "type": "container",
        "bom-ref": "kanary/operator:0.1.0",
        "name": "kanary/operator",
        "version": "0.1.0",
    }
    debs = {
        c["name"]: c["version"]
        for c in sbom["components"]
        if c.get("purl", "").startswith("pkg:deb/")
    }
    # Python packages: pkg:pypi/ URLs, and kanary's own wheel (a local file: no URL).
    python = {
        c["name"].lower().replace("_", "-"): c["version"]
        for c in sbom["components"]
        if c["name"] not in debs
    }
    locked = pins((REPO_ROOT / "requirements.lock").read_text())
    for name in ("kopf", "kubernetes", "pydantic", "prometheus-api-client", "scipy"):
        assert python.get(name) == locked[name], f"{name}: SBOM {python.get(name)}"
    assert "kanary" in python
    wrong = {n: v for n, v in python.items() if n in locked and locked[n] != v}
    assert not wrong, f"SBOM versions that are not requirements.lock's: {wrong}"
    assert not {"pytest", "mypy", "ruff"} & python.keys(), "dev tools are not in the image"
    build = (REPO_ROOT / "hack" / "images" / "build.sh").read_text()
    block = re.search(r"^OPERATOR_DEBS=\((.*?)^\)", build, re.M | re.S)
    assert block, "no OPERATOR_DEBS=( ... ) in hack/images/build.sh"
    pinned_debs = dict(re.findall(r'^\s+"?([a-z0-9.+\-]+)=([^\s"]+)"?$', block[1], re.M))
    assert len(pinned_debs) == 14
    assert debs == pinned_debs


def check_pair(binary: Path, debug: Path) -> subprocess.CompletedProcess[str]:
    """app/internal/debugfile's check of a binary and a debug file."""
    env = {**os.environ, "GIN_DEMO_BIN": str(binary), "GIN_DEMO_DEBUG": str(debug)}
    return subprocess.run(
        ["go", "test", "-count=1", "-run", "^TestBuiltPair$", "./internal/debugfile"],
        cwd=REPO_ROOT / "app",
        capture_output=True,
        text=True,
        env={**env, "CGO_ENABLED": "0"},
    )


@pytest.mark.parametrize("version", ("v1", "v4"))
def test_the_debug_file_belongs_to_the_binary_in_the_image(version: str, tmp_path: Path) -> None:
    binary = file_in_image(IMAGES / f"gin-demo-{version}.tar", "/gin-demo", tmp_path / "gin-demo")
    check = check_pair(binary, IMAGES / f"gin-demo-{version}.debug")
    assert check.returncode == 0, check.stdout + check.stderr
    # ... and not to another version's binary (the check can fail).
    other = check_pair(binary, IMAGES / f"gin-demo-{'v2' if version == 'v1' else 'v1'}.debug")
    assert other.returncode != 0 and "not the same link" in other.stdout, other.stdout


def copy_signed(name: str, dest: Path) -> Path:
    """NAME.tar, its SBOM and both signatures, copied to dest."""
    for f in IMAGES.glob(f"{name}.*"):
        if f.name.endswith((".tar", ".sigstore.json", ".sbom.cdx.json")):
            shutil.copy2(f, dest / f.name)
    return dest / f"{name}.tar"


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def image_digests() -> str:
    return ctr("images", "ls")


@pytest.mark.parametrize("tampered", ("gin-demo-v1.tar", "gin-demo-v1.sbom.cdx.json"))
def test_a_tampered_file_fails_verification_and_is_not_loaded(
    tampered: str, tmp_path: Path, core: client.CoreV1Api
) -> None:
    good = tmp_path / "good"
    bad = tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    copy_signed("gin-demo-v1", good)
    tar = copy_signed("gin-demo-v1", bad)
    flip_byte(bad / tampered)

    ok = subprocess.run(
        [str(VERIFY), str(good / "gin-demo-v1.tar")], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    failed = subprocess.run([str(VERIFY), str(tar)], capture_output=True, text=True)
    assert failed.returncode == 1
    assert f"{bad / tampered}: signature verification FAILED" in failed.stderr, failed.stderr

    before = image_digests()
    load = subprocess.run([str(LOAD), str(tar)], capture_output=True, text=True, timeout=120)
    assert load.returncode != 0
    assert "refusing to load images whose signature does not verify" in load.stderr, load.stderr
    assert image_digests() == before, "containerd's images changed"
    # The load step itself imports what verifies (the untampered copy: the same image again).
    loaded = subprocess.run(
        [str(LOAD), str(good / "gin-demo-v1.tar")], capture_output=True, text=True, timeout=120
    )
    assert loaded.returncode == 0, loaded.stderr
