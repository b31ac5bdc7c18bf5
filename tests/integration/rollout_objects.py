"""Rollout and HTTPRoute bodies shared by the operator tests, the e2e tests and the bench."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

GROUP, VERSION = "kanary.dev", "v1alpha1"
EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"


def example_security_context() -> dict[str, Any]:
    """The container securityContext of manifests/examples/rollout-gin-demo.yaml, as shipped."""
    body = yaml.safe_load((EXAMPLES / "rollout-gin-demo.yaml").read_text())
    context: dict[str, Any] = body["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    return context


# The local cluster has one real node (kubelet + containerd) and kwok nodes tainted
# kwok.x-k8s.io/node=fake:NoSchedule. A pod spec with ON_KWOK lands on a kwok node: its
# lifecycle is kwok's (annotations), its process the pod runner's. Without it, it lands on
# the real node: a real container, Ready by its own readinessProbe.
ON_KWOK: dict[str, Any] = {
    "nodeSelector": {"type": "kwok"},
    "tolerations": [
        {"key": "kwok.x-k8s.io/node", "operator": "Equal", "value": "fake", "effect": "NoSchedule"}
    ],
}


def rollout_body(
    name: str,
    image: str,
    steps: list[dict[str, Any]],
    *,
    gateway: bool = True,
    replicas: int = 2,
    pod_annotations: dict[str, str] | None = None,
    strategy: dict[str, Any] | None = None,
    kwok: bool = True,
) -> dict[str, Any]:
    """kwok=False: the pods run on the real node (see ON_KWOK)."""
    spec: dict[str, Any] = {
        "replicas": replicas,
        "template": {
            "metadata": {"labels": {"app": name}, "annotations": pod_annotations or {}},
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "image": image,
                        "ports": [{"name": "http", "containerPort": 8080}],
                    }
                ],
                **(ON_KWOK if kwok else {}),
            },
        },
        "service": {"port": 80, "targetPort": "http"},
        "strategy": {
            "steps": steps,
            "abortScaleDownDelaySeconds": 2,
            "scaleDownDelaySeconds": 3,
            **(strategy or {}),
        },
    }
    if gateway:
        spec["trafficRouting"] = {"gatewayAPI": {"httpRoute": name}}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": spec,
    }


def httproute(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {
            "parentRefs": [{"name": "kanary-gateway", "namespace": "kanary-system"}],
            "rules": [
                {
                    "backendRefs": [
                        {"name": f"{name}-stable", "port": 80, "weight": 100},
                        {"name": f"{name}-canary", "port": 80, "weight": 0},
                    ]
                }
            ],
        },
    }
