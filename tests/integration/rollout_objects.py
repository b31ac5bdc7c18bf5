"""Rollout and HTTPRoute bodies shared by the operator tests, the e2e tests and the bench."""

from __future__ import annotations

from typing import Any

GROUP, VERSION = "kanary.dev", "v1alpha1"


def rollout_body(
    name: str,
    image: str,
    steps: list[dict[str, Any]],
    *,
    gateway: bool = True,
    replicas: int = 2,
    pod_annotations: dict[str, str] | None = None,
    strategy: dict[str, Any] | None = None,
) -> dict[str, Any]:
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
                ]
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
