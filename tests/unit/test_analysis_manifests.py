"""manifests/prometheus: the scrape config's shape and least privilege (the real pod
discovery and relabeling run in tests/integration/test_dataplane.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests" / "prometheus"


def load_all(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((MANIFESTS / "config" / "prometheus.yml").read_text())
    return loaded


def test_scrape_config_discovers_pods_and_sets_the_analysis_labels() -> None:
    cfg = config()
    assert cfg["global"]["scrape_interval"] == "1s"
    job, operator, traefik = cfg["scrape_configs"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
    # Traefik's own /metrics (the gateway metrics source): its pod in traefik, port "traefik"
    assert traefik["job_name"] == "traefik"
    keeps = {r["regex"] for r in traefik["relabel_configs"] if r.get("action") == "keep"}
    assert keeps == {"traefik", "Running"}
    # the operator's own /metrics: its pod in kanary-system, port "metrics"
    assert operator["job_name"] == "kanary-operator"
    assert operator["kubernetes_sd_configs"] == [
        {"role": "pod", "namespaces": {"names": ["kanary-system"]}}
    ]
    keeps = {r["regex"] for r in operator["relabel_configs"] if r.get("action") == "keep"}
    assert keeps == {"kanary", "Running", "metrics"}
    targets = {
        r["target_label"]: r["source_labels"] for r in job["relabel_configs"] if "target_label" in r
    }
    assert targets == {
        "__metrics_path__": ["__meta_kubernetes_pod_annotation_prometheus_io_path"],
        "namespace": ["__meta_kubernetes_namespace"],
        "pod": ["__meta_kubernetes_pod_name"],
        "rollout": ["__meta_kubernetes_pod_label_kanary_dev_rollout"],
        "track": ["__meta_kubernetes_pod_label_kanary_dev_track"],
        "revision": ["__meta_kubernetes_pod_label_kanary_dev_revision"],
    }
    first = job["relabel_configs"][0]
    assert first == {
        "source_labels": ["__meta_kubernetes_pod_label_kanary_dev_rollout"],
        "regex": ".+",
        "action": "keep",
    }


def test_kustomization_names_every_file_and_rbac_only_reads_pods() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    for name in kustomization["resources"]:
        assert (MANIFESTS / name).is_file(), name
    (generator,) = kustomization["configMapGenerator"]
    assert generator["files"] == ["config/prometheus.yml", "config/kanary-alerts.yml"]
    docs = {d["kind"]: d for d in load_all(MANIFESTS / "rbac.yaml")}
    assert docs["ClusterRole"]["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
    ]
    subject = docs["ClusterRoleBinding"]["subjects"][0]
    assert (subject["name"], subject["namespace"]) == ("prometheus", "monitoring")
    deployment = next(
        d for d in load_all(MANIFESTS / "deployment.yaml") if d["kind"] == "Deployment"
    )
    pod_spec = deployment["spec"]["template"]["spec"]
    assert pod_spec["serviceAccountName"] == "prometheus"
    assert pod_spec["volumes"][0]["configMap"]["name"] == generator["name"]
