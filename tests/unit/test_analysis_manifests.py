"""manifests/prometheus and hack/prometheus-pod-sd.py: the scrape config's shape, least
privilege, and the pod discovery stand-in's labels (the real relabeling runs in
tests/integration/test_analysis_pod_discovery.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests" / "prometheus"


def load_all(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def pod_sd() -> Any:
    spec = importlib.util.spec_from_file_location(
        "prometheus_pod_sd", REPO / "hack" / "prometheus-pod-sd.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((MANIFESTS / "config" / "prometheus.yml").read_text())
    return loaded


def test_scrape_config_discovers_pods_and_sets_the_analysis_labels() -> None:
    cfg = config()
    assert cfg["global"]["scrape_interval"] == "1s"
    (job,) = cfg["scrape_configs"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
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
    assert generator["files"] == ["config/prometheus.yml"]
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


def test_pod_sd_labels_targets_as_kubernetes_sd_does() -> None:
    sd = pod_sd()
    pod = {
        "metadata": {
            "name": "gin-canary-x",
            "namespace": "demo",
            "labels": {"kanary.dev/rollout": "gin", "kanary.dev/track": "canary"},
            "annotations": {"prometheus.io/path": "/m"},
        },
        "spec": {
            "containers": [
                {"name": "app", "ports": [{"name": "http", "containerPort": 80}]},
                {"name": "side"},
            ]
        },
        "status": {"phase": "Running", "podIP": "10.244.0.7"},
    }
    (app, side) = sd.target_groups([pod, {**pod, "status": {"phase": "Pending"}}])
    assert app["targets"] == ["10.244.0.7:80"]
    assert side["targets"] == ["10.244.0.7"]
    labels = app["labels"]
    assert labels["__meta_kubernetes_namespace"] == "demo"
    assert labels["__meta_kubernetes_pod_name"] == "gin-canary-x"
    assert labels["__meta_kubernetes_pod_label_kanary_dev_rollout"] == "gin"
    assert labels["__meta_kubernetes_pod_labelpresent_kanary_dev_track"] == "true"
    assert labels["__meta_kubernetes_pod_annotation_prometheus_io_path"] == "/m"
    assert labels["__meta_kubernetes_pod_container_port_name"] == "http"
    assert labels["__meta_kubernetes_pod_container_port_number"] == "80"
    assert labels["__meta_kubernetes_pod_phase"] == "Running"
    assert labels["__meta_kubernetes_pod_ready"] == "false"
    assert "__meta_kubernetes_pod_container_port_name" not in side["labels"]


def test_http_sd_variant_changes_only_the_discovery() -> None:
    sd = pod_sd()
    cfg = config()
    variant = sd.http_sd_variant(cfg, "http://127.0.0.1:9092/targets", "2s")
    (job,) = variant["scrape_configs"]
    assert "kubernetes_sd_configs" not in job
    assert job["http_sd_configs"] == [
        {"url": "http://127.0.0.1:9092/targets", "refresh_interval": "2s"}
    ]
    job["kubernetes_sd_configs"] = cfg["scrape_configs"][0]["kubernetes_sd_configs"]
    del job["http_sd_configs"]
    assert variant == cfg
