"""Add an image's Debian packages to the CycloneDX SBOM of its Python environment.

    sbom_debs.py --sbom SBOM.json --status-dir ROOTFS/var/lib/dpkg/status.d \
        --image NAME:TAG --out OUT.json

cyclonedx-py lists what the image's Python environment holds; the Debian packages under it
(their control files are in status.d, one per package, as distroless keeps them) are added as
components with a `pkg:deb` package URL, and the SBOM's subject becomes the container image.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote


def control_fields(text: str) -> dict[str, str]:
    """The first-line values of a Debian control file (continuation lines are skipped)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if line[:1] in (" ", "\t") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def deb_component(fields: dict[str, str], source: str) -> dict[str, Any]:
    name, version, arch = fields["Package"], fields["Version"], fields.get("Architecture", "all")
    purl = f"pkg:deb/debian/{name}@{quote(version, safe='')}?arch={arch}&distro=debian-12"
    return {
        "type": "library",
        "bom-ref": purl,
        "name": name,
        "version": version,
        "purl": purl,
        "properties": [{"name": "kanary:source", "value": source}],
    }


def merge(sbom: dict[str, Any], status_dir: Path, image: str) -> dict[str, Any]:
    components: list[dict[str, Any]] = sbom.setdefault("components", [])
    for control in sorted(status_dir.iterdir()):
        fields = control_fields(control.read_text(encoding="utf-8"))
        if "Package" not in fields or "Version" not in fields:
            raise ValueError(f"{control}: not a Debian control file (no Package or Version field)")
        components.append(deb_component(fields, f"/var/lib/dpkg/status.d/{control.name}"))
    name, _, tag = image.rpartition(":")
    metadata = sbom.setdefault("metadata", {})
    metadata["component"] = {"type": "container", "bom-ref": image, "name": name, "version": tag}
    return sbom


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sbom", type=Path, required=True)
    parser.add_argument("--status-dir", type=Path, required=True)
    parser.add_argument("--image", required=True, help="NAME:TAG of the image")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        sbom = json.loads(args.sbom.read_text(encoding="utf-8"))
        merged = merge(sbom, args.status_dir, args.image)
    except (OSError, ValueError, KeyError) as err:
        print(f"sbom_debs.py: {err}", file=sys.stderr)
        return 1
    args.out.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
