"""Kubernetes writes kanary makes, through the official client (sync: call via asyncio.to_thread).

Reads come from Kopf's watch-fed indexes (handlers.py), so this module only writes, plus the one
fresh read of an HTTPRoute that a weight change needs for its optimistic-concurrency check and
the Secrets of AlertProviders (read by name, cached briefly: kanary does not watch Secrets).
Every write that could mix two decisions carries a precondition: the status patch the
resourceVersion read (409 if the Rollout changed), the action consumption a JSON patch `test`.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, cast

from kubernetes import client as k8s

from kanary.objects import FIELD_MANAGER, GATEWAY_GROUP, Manifest
from kanary.spec import API_GROUP, API_VERSION, PLURAL

APPLY = "application/apply-patch+yaml"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
GATEWAY_VERSION = "v1"


def _body(response: Any) -> dict[str, Any]:
    """A write's answer, asked for with ``_preload_content=False``: its JSON as a dict. The
    client would build its model (a V1Deployment of a few hundred objects) only for kanary to
    turn it back into a dict or drop it (py-spy: 3-4 % of the operator's time in a fleet
    rollout). Non-2xx answers still raise ApiException."""
    try:
        return cast(dict[str, Any], json.loads(response.data or b"{}"))
    finally:
        response.release_conn()


class NotLeader(Exception):
    """A write refused before it was sent: this process does not hold the Lease, or its last
    renewal is older than the renew deadline (fencing, leader.may_act)."""


class Kube:
    """The few calls kanary makes. One instance per operator process; thread-safe like ApiClient.

    ``fence``, when set, is asked before every write; a write it refuses raises NotLeader and is
    never sent, so a replica that lost (or may have lost) the Lease writes nothing.
    """

    def __init__(
        self,
        api_client: Any | None = None,
        fence: Callable[[], bool] | None = None,
        identity: str = "",
    ) -> None:
        self.api_client = api_client or k8s.ApiClient()
        self.apps = k8s.AppsV1Api(self.api_client)
        self.core = k8s.CoreV1Api(self.api_client)
        self.custom = k8s.CustomObjectsApi(self.api_client)
        self.writes = 0  # counted for the API-writes-per-step benchmark
        self.fence = fence
        self.identity = identity
        self._here = threading.local()  # writes made by the calling thread (one tick)

    def writes_in_this_thread(self) -> int:
        return int(getattr(self._here, "writes", 0))

    def _write(self) -> None:
        if self.fence is not None and not self.fence():
            raise NotLeader("this replica does not hold the Lease: the write was not sent")
        self.writes += 1
        self._here.writes = self.writes_in_this_thread() + 1

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
        self._write()
        return _body(
            patch(
                name,
                namespace,
                manifest,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type=APPLY,
                _preload_content=False,
            )
        )

    def scale(self, namespace: str, name: str, replicas: int) -> None:
        self._write()
        _body(
            self.apps.patch_namespaced_deployment(
                name,
                namespace,
                {"spec": {"replicas": replicas}},
                _content_type=MERGE_PATCH,
                _preload_content=False,
            )
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

    def label_httproute(self, namespace: str, name: str, labels: Mapping[str, str]) -> None:
        """Merge patch of the route's labels (the rest of the route is the user's)."""
        self._write()
        self.custom.patch_namespaced_custom_object(
            GATEWAY_GROUP,
            GATEWAY_VERSION,
            namespace,
            "httproutes",
            name,
            {"metadata": {"labels": dict(labels)}},
            _content_type=MERGE_PATCH,
        )

    def json_patch_httproute(
        self, namespace: str, name: str, ops: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """The patched route as the API server stored it."""
        self._write()
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
        self._write()
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
        self._write()
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
        self._write()
        self.custom.patch_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace, PLURAL, name, ops, _content_type=JSON_PATCH
        )

    def post_event(
        self,
        involved: Mapping[str, Any],
        type_: str,
        reason: str,
        message: str,
        now: datetime,
    ) -> str:
        """A core v1 Event about a Rollout (fenced and counted like every write); its name,
        for a later repeat_event of the same series."""
        self._write()
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        namespace = str(involved.get("namespace", ""))
        body = {
            "metadata": {
                "generateName": f"{involved.get('name', 'rollout')}.",
                "namespace": namespace,
            },
            "involvedObject": {
                "apiVersion": f"{API_GROUP}/{API_VERSION}",
                "kind": "Rollout",
                "namespace": namespace,
                "name": involved.get("name"),
                "uid": involved.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "source": {"component": "kanary"},
            "reportingComponent": "kanary",
            "reportingInstance": self.identity or "kanary",
        }
        created = _body(
            self.core.create_namespaced_event(namespace, cast(Any, body), _preload_content=False)
        )
        return str(created["metadata"]["name"])

    def repeat_event(self, namespace: str, name: str, count: int, now: datetime) -> None:
        """The same Event happened again: its count and lastTimestamp (a Kubernetes Event
        series, as client-go's recorder keeps one); 404 once the Event has expired."""
        self._write()
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        _body(
            self.core.patch_namespaced_event(
                name,
                namespace,
                {"count": count, "lastTimestamp": stamp},
                _content_type=MERGE_PATCH,
                _preload_content=False,
            )
        )
