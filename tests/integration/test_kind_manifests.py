"""Every manifest `make kind-up` (hack/kind-up.sh) applies, dry-run against a real API server.

kind needs Docker, which the development machine does not have, so kind-up itself never runs
here. What can be checked is that the API server of the local cluster (Kubernetes v1.34, the
Gateway API v1.4.1 CRDs that hack/cluster/up.sh installs, the admission chain incl. Pod
Security) accepts each object exactly as kind-up sends it: `kubectl apply --server-side
--dry-run=server`, nothing persisted. The namespaces the objects live in are created for real
first (a dry-run cannot put an object into a namespace that does not exist); they are harmless.
"""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.integration.conftest import REPO_ROOT, Cluster

pytestmark = pytest.mark.integration

MANIFESTS = REPO_ROOT / "manifests"
FIELD_MANAGER = "kanary-test-kind-manifests"

# (what kind-up applies, kubectl's source arguments), in kind-up's order.
SOURCES: list[tuple[str, list[str]]] = [
    ("traefik", ["-k", str(MANIFESTS / "traefik")]),
    ("prometheus", ["-k", str(MANIFESTS / "prometheus")]),
    ("crds", ["-f", str(REPO_ROOT / "crds")]),
    ("namespace", ["-f", str(MANIFESTS / "namespace.yaml")]),
    ("rbac", ["-f", str(MANIFESTS / "rbac.yaml")]),
    ("operator", ["-f", str(MANIFESTS / "operator.yaml")]),
    ("gateway", ["-f", str(MANIFESTS / "gateway")]),
]


def kubectl(
    cluster: Cluster, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(cluster.kubectl), "--kubeconfig", str(cluster.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def rendered(cluster: Cluster, source: list[str]) -> list[dict[str, object]]:
    """The objects a source stands for: `kubectl kustomize` for -k, the YAML files for -f."""
    flag, path = source
    if flag == "-k":
        out = kubectl(cluster, "kustomize", path)
        assert out.returncode == 0, out.stderr
        text = out.stdout
    else:
        files = (
            sorted(p for p in (REPO_ROOT / path).glob("*.yaml"))
            if (REPO_ROOT / path).is_dir()
            else [REPO_ROOT / path]
        )
        text = "\n---\n".join(f.read_text() for f in files)
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.fixture(scope="module")
def namespaces(cluster: Cluster) -> list[str]:
    """Create (really) every Namespace the kind-up manifests define."""
    docs = [d for _, src in SOURCES for d in rendered(cluster, src) if d["kind"] == "Namespace"]
    names = [str(d["metadata"]["name"]) for d in docs]  # type: ignore[index]
    assert {"kanary-system", "monitoring", "traefik"} <= set(names)
    out = kubectl(
        cluster,
        "apply",
        "--server-side",
        "--force-conflicts",
        f"--field-manager={FIELD_MANAGER}",
        "-f",
        "-",
        stdin=yaml.safe_dump_all(docs),
    )
    assert out.returncode == 0, out.stderr
    return names


@pytest.mark.parametrize("name,source", SOURCES, ids=[n for n, _ in SOURCES])
def test_server_side_dry_run(
    cluster: Cluster, namespaces: list[str], name: str, source: list[str]
) -> None:
    objects = rendered(cluster, source)
    assert objects, f"{name}: no objects in {source}"
    # --force-conflicts: objects the cluster's own setup applied already (the Rollout CRD,
    # kanary-system) have other field managers; a conflict there is not a manifest error.
    out = kubectl(
        cluster,
        "apply",
        "--server-side",
        "--dry-run=server",
        "--force-conflicts",
        f"--field-manager={FIELD_MANAGER}",
        *source,
    )
    assert out.returncode == 0, f"{name}: kubectl apply failed:\n{out.stderr}"
    # One "(server dry run)" line per object, and no admission warning (Pod Security etc.).
    lines = [ln for ln in out.stdout.splitlines() if ln.endswith("(server dry run)")]
    assert len(lines) == len(objects), f"{name}: {len(objects)} objects, got:\n{out.stdout}"
    for obj in objects:
        meta: dict[str, str] = obj["metadata"]  # type: ignore[assignment]
        assert any(f"/{meta['name']} " in ln for ln in lines), f"{name}: {meta['name']} missing"
    assert "Warning" not in out.stderr, f"{name}: {out.stderr}"
