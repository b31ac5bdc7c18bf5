"""manifests/prometheus' scrape config, run by a real Prometheus, relabels pods as the analysis
expects: namespace, pod, rollout, track, revision, and nothing of pods kanary does not own.

No cluster: pods come from hack/prometheus-pod-sd.py's HTTP SD server (given a fixed pod
list here), which labels targets as kubernetes_sd_configs role pod does; the Gin processes
behind the "pods" are real and listen on 127.0.0.1.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from kanary.analysis.builtin import requests_query
from kanary.analysis.source import PrometheusSource, Value
from kanary.analysis.templating import Scope
from tests.integration.analysis_fixtures import (
    PROMETHEUS_CONFIG,
    Gin,
    PrometheusServer,
    free_port,
    load,
    pod_sd_module,
)

pytestmark = pytest.mark.integration


def pod(
    name: str,
    port: int,
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    phase: str = "Running",
    ip: str = "127.0.0.1",
    port_name: str = "http",
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "shop",
            "uid": f"uid-{name}",
            "labels": labels if labels is not None else {},
            "annotations": annotations or {},
            "ownerReferences": [{"kind": "ReplicaSet", "name": f"{name}-rs", "controller": True}],
        },
        "spec": {
            "nodeName": "kwok-node-0",
            "containers": [
                {
                    "name": "app",
                    "image": "kanary/gin-demo:v2",
                    "ports": [{"name": port_name, "containerPort": port, "protocol": "TCP"}],
                },
                {
                    "name": "sidecar",
                    "image": "busybox",
                    "ports": [{"name": "admin", "containerPort": 1}],
                },
            ],
        },
        "status": {
            "phase": phase,
            "podIP": ip,
            "hostIP": "10.243.0.1",
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def kanary_labels(track: str, revision: str) -> dict[str, str]:
    return {
        "app": "disc",
        "kanary.dev/rollout": "disc",
        "kanary.dev/track": track,
        "kanary.dev/revision": revision,
    }


@pytest.fixture()
def gins(tmp_path: Path) -> Iterator[dict[str, Gin]]:
    started = {
        track: Gin(f"disc-{track}", {}, {"APP_VERSION": track}, tmp_path / f"{track}.log").start()
        for track in ("stable", "canary")
    }
    try:
        yield started
    finally:
        for g in started.values():
            g.stop()


def test_pods_are_relabeled_for_the_analysis(gins: dict[str, Gin], tmp_path: Path) -> None:
    sd = pod_sd_module()
    stable, canary = gins["stable"], gins["canary"]
    pods = [
        pod("disc-stable-7d9f5c-a", stable.port, labels=kanary_labels("stable", "7d9f5c")),
        pod(
            "disc-canary-5c4b1a-b",
            canary.port,
            labels=kanary_labels("canary", "5c4b1a"),
            annotations={"prometheus.io/path": "/metrics"},
        ),
        # none of these may become a target
        pod("not-kanary", stable.port, labels={"app": "other"}),
        pod(
            "opted-out",
            stable.port,
            labels=kanary_labels("stable", "7d9f5c"),
            annotations={"prometheus.io/scrape": "false"},
        ),
        pod(
            "pending", stable.port, labels=kanary_labels("canary", "5c4b1a"), phase="Pending", ip=""
        ),
        pod("finished", stable.port, labels=kanary_labels("canary", "5c4b1a"), phase="Succeeded"),
        pod("no-http-port", stable.port, labels=kanary_labels("canary", "5c4b1a"), port_name="web"),
    ]
    sd_server = sd.make_server(f"127.0.0.1:{free_port()}", lambda: pods)
    sd_thread = threading.Thread(target=sd_server.serve_forever, daemon=True)
    sd_thread.start()
    url = f"http://127.0.0.1:{sd_server.server_address[1]}/targets"
    config = sd.http_sd_variant(yaml.safe_load(PROMETHEUS_CONFIG.read_text()), url, "1s")
    prom = PrometheusServer(tmp_path / "prometheus", config)
    try:
        prom.start()
        prom.wait_targets_up(2)
        targets = prom.api("/api/v1/targets")
        active = sorted((t["labels"] for t in targets["activeTargets"]), key=lambda t: t["pod"])
        assert active == [
            {
                "instance": canary.address,
                "job": "kanary-pods",
                "namespace": "shop",
                "pod": "disc-canary-5c4b1a-b",
                "revision": "5c4b1a",
                "rollout": "disc",
                "track": "canary",
            },
            {
                "instance": stable.address,
                "job": "kanary-pods",
                "namespace": "shop",
                "pod": "disc-stable-7d9f5c-a",
                "revision": "7d9f5c",
                "rollout": "disc",
                "track": "stable",
            },
        ]
        # 6 pods with an IP, 2 container ports each: all dropped but the two above
        assert len(targets["droppedTargets"]) == 6 * 2 - 2

        result = load(canary.address, seconds=3, rate=50, workers=2)
        time.sleep(2.5)
        scope = Scope("shop", "disc", "canary", "5c4b1a", 5)
        with PrometheusSource(prom.url, 2) as src:
            got = src.query(requests_query(scope), datetime.now(UTC))
        assert isinstance(got, Value) and got.value > 0.5 * result.total, (got, result.total)
    finally:
        prom.stop()
        sd_server.shutdown()
        sd_server.server_close()
        sd_thread.join(timeout=5)
