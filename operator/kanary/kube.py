"""Kubernetes writes kanary makes, through the official client (sync: call via asyncio.to_thread).

Reads come from Kopf's watch-fed indexes (handlers.py), so this module only writes, plus the one
fresh read of an HTTPRoute that a weight change needs for its optimistic-concurrency check and
the Secrets of AlertProviders (read by name, cached briefly: kanary does not watch Secrets).
Every write that could mix two decisions carries a precondition: the status patch the
resourceVersion read (409 if the Rollout changed), the action consumption a JSON patch `test`.
"""

from __future__ import annotations

import base64
from typing import Any, cast

from kubernetes import client as k8s

from kanary.objects import FIELD_MANAGER, GATEWAY_GROUP, Manifest
from kanary.spec import API_GROUP, API_VERSION, PLURAL

APPLY = "application/apply-patch+yaml"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
GATEWAY_VERSION = "v1"


class Kube:
    """The few calls kanary makes. One instance per operator process; thread-safe like ApiClient."""

    def __init__(self, api_client: Any | None = None) -> None:
        self.api_client = api_client or k8s.ApiClient()
        self.apps = k8s.AppsV1Api(self.api_client)
        self.core = k8s.CoreV1Api(self.api_client)
        self.custom = k8s.CustomObjectsApi(self.api_client)
        self.writes = 0  # counted for the API-writes-per-step benchmark

    def apply(self, manifest: Manifest) -> dict[str, Any]:
        """Server-side apply: create or update in one idempotent call, kanary owning its fields.
        Returns the object as stored."""
        name = manifest["metadata"]["name"]
        namespace = manifest["metadata"]["namespace"]
        kind = manifest["kind"]
        patch = {
            "Deployment": self.apps.patch_namespaced_deployment,
            "ControllerRevision": self.apps.patch_namespaced_controller_revision,
            "Service": self.core.patch_namespaced_service,
        }.get(kind)
        if patch is None:
            raise ValueError(f"kanary does not apply {kind} objects")
        self.writes += 1
        stored = patch(
            name, namespace, manifest, field_manager=FIELD_MANAGER, force=True, _content_type=APPLY
        )
        return cast(dict[str, Any], self.api_client.sanitize_for_serialization(stored))

    def scale(self, namespace: str, name: str, replicas: int) -> None:
        self.writes += 1
        self.apps.patch_namespaced_deployment(
            name, namespace, {"spec": {"replicas": replicas}}, _content_type=MERGE_PATCH
        )

    def get_httproute(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            route = self.custom.get_namespaced_custom_object(
                GATEWAY_GROUP, GATEWAY_VERSION, namespace, "httproutes", name
            )
        except k8s.exceptions.ApiException as e:
            if e.status == 404:
                return None
            raise
        return cast(dict[str, Any], route)

    def json_patch_httproute(
        self, namespace: str, name: str, ops: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """The patched route as the API server stored it."""
        self.writes += 1
        stored = self.custom.patch_namespaced_custom_object(
            GATEWAY_GROUP,
            GATEWAY_VERSION,
            namespace,
            "httproutes",
            name,
            ops,
            _content_type=JSON_PATCH,
        )
        return cast(dict[str, Any], stored)

    def patch_rollout_status(
        self, namespace: str, name: str, resource_version: str, status: dict[str, Any]
    ) -> None:
        """Merge patch of the status subresource; 409 if the Rollout changed since it was read."""
        self.writes += 1
        self.custom.patch_namespaced_custom_object_status(
            API_GROUP,
            API_VERSION,
            namespace,
            PLURAL,
            name,
            {"metadata": {"resourceVersion": resource_version}, "status": status},
            _content_type=MERGE_PATCH,
        )

    def json_patch_rollout_status(
        self, namespace: str, name: str, ops: list[dict[str, Any]]
    ) -> None:
        """A JSON patch of the status subresource; 422 when a `test` op fails."""
        self.writes += 1
        self.custom.patch_namespaced_custom_object_status(
            API_GROUP, API_VERSION, namespace, PLURAL, name, ops, _content_type=JSON_PATCH
        )

    def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """A Secret's data, decoded; None when it does not exist."""
        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except k8s.exceptions.ApiException as e:
            if e.status == 404:
                return None
            raise
        return {
            k: base64.b64decode(v).decode("utf-8", "replace")
            for k, v in (secret.data or {}).items()
        }

    def json_patch_rollout(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> None:
        """422 when a `test` op fails (the request changed since it was read)."""
        self.writes += 1
        self.custom.patch_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace, PLURAL, name, ops, _content_type=JSON_PATCH
        )
