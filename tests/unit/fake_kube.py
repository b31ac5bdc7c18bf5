"""A fake Kube for the I/O glue's unit tests: it models what reconcile.py depends on.

Deployments (generation bumped on a spec change, readiness set by the test), Services with
selectors, ControllerRevisions, an HTTPRoute with rules and weights (JSON patches with `test`
ops, resourceVersion bumps, 422 on a failed test) and the Rollout itself (status merge patches
with a resourceVersion precondition: 409; annotation JSON patches: 422). It records every write.
`view()` is what Kopf's indexes would show.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jsonpatch  # type: ignore[import-untyped]
from kubernetes.client.exceptions import ApiException

from kanary.analysis.metrics_source import (
    GatewayClassSeen,
    gateway_class_of,
    supported_features,
)
from kanary.objects import LABEL_REVISION, LABEL_ROLLOUT, LABEL_STEERED, LABEL_TRACK
from kanary.reconcile import Conflict, Runtime, Ticked, View, reconcile, seen_deployment
from kanary.status import RolloutStatus

Key = tuple[str, str, str]  # kind, namespace, name


def _api_error(status: int, reason: str) -> ApiException:
    error = ApiException(status=status, reason=reason)
    error.body = json.dumps({"kind": "Status", "message": reason, "code": status})
    return error


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, dict) and isinstance(target.get(k), dict):
            _merge(target[k], v)
        else:
            target[k] = copy.deepcopy(v)
    return target


@dataclass
class FakeKube:
    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)  # "apply Deployment demo-stable", ...
    rv: int = 100
    unready: set[str] = field(default_factory=set)  # Deployments whose pods are not Ready
    # Deployments whose status the controller-manager has not written since their last spec
    # change (the pass that creates a ReplicaSet has its status update refused by a conflict:
    # observedGeneration, replicas and readyReplicas stay as they were until its next pass)
    lagging: set[str] = field(default_factory=set)
    writes: int = 0
    terminating: set[str] = field(default_factory=set)  # namespaces being deleted

    def _bump(self, obj: dict[str, Any]) -> None:
        self.rv += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.rv)

    # ---- the Kube interface ------------------------------------------------------------------

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.writes += 1
        meta = manifest["metadata"]
        key = (manifest["kind"], meta["namespace"], meta["name"])
        if meta["namespace"] in self.terminating and key not in self.objects:
            raise _api_error(
                403,
                f'{manifest["kind"].lower()}s "{meta["name"]}" is forbidden: unable to create '
                f"new content in namespace {meta['namespace']} because it is being terminated",
            )
        self.log.append(f"apply {manifest['kind']} {meta['name']}")
        old = self.objects.get(key)
        new = copy.deepcopy(manifest)
        generation = int((old or {}).get("metadata", {}).get("generation", 0))
        if old is None or old.get("spec") != new.get("spec"):
            generation += 1
        new["metadata"]["generation"] = generation
        if old is not None:  # server-side apply keeps fields other managers own
            for k in ("annotations",):
                if k in old["metadata"]:
                    new["metadata"][k] = old["metadata"][k]
        self._bump(new)
        self.objects[key] = new
        return copy.deepcopy(new)

    def scale(self, namespace: str, name: str, replicas: int) -> None:
        self.writes += 1
        self.log.append(f"scale {name} {replicas}")
        obj = self.objects[("Deployment", namespace, name)]
        obj["spec"]["replicas"] = replicas
        obj["metadata"]["generation"] += 1
        self._bump(obj)

    def get_httproute(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.log.append(f"get HTTPRoute {name}")
        route = self.objects.get(("HTTPRoute", namespace, name))
        return copy.deepcopy(route) if route is not None else None

    def label_httproute(self, namespace: str, name: str, labels: Mapping[str, str]) -> None:
        self.writes += 1
        route = self.objects[("HTTPRoute", namespace, name)]
        self.log.append(f"label HTTPRoute {name}")
        route["metadata"]["labels"] = {**(route["metadata"].get("labels") or {}), **labels}
        self._bump(route)

    def json_patch_httproute(
        self, namespace: str, name: str, ops: list[dict[str, Any]]
    ) -> dict[str, Any]:
        self.writes += 1
        key = ("HTTPRoute", namespace, name)
        try:
            patched = jsonpatch.apply_patch(copy.deepcopy(self.objects[key]), ops)
        except jsonpatch.JsonPatchTestFailed as e:
            raise _api_error(422, f"the test failed: {e}") from e
        self.log.append(f"patch HTTPRoute {name}")
        self._bump(patched)
        self.objects[key] = patched
        return copy.deepcopy(patched)

    def patch_rollout_status(
        self, namespace: str, name: str, resource_version: str, status: dict[str, Any]
    ) -> None:
        self.writes += 1
        rollout = self.objects[("Rollout", namespace, name)]
        if rollout["metadata"]["resourceVersion"] != resource_version:
            raise _api_error(409, "the object has been modified")
        self.log.append(f"status {name}")
        rollout["status"] = _merge(rollout.setdefault("status", {}), status)
        self._bump(rollout)

    def json_patch_rollout_status(
        self, namespace: str, name: str, ops: list[dict[str, Any]]
    ) -> None:
        """The status subresource: only /status paths may change (as the API server does)."""
        self.writes += 1
        key = ("Rollout", namespace, name)
        if any(not op["path"].startswith("/status/") for op in ops):
            raise _api_error(422, "only status may change through the status subresource")
        try:
            patched = jsonpatch.apply_patch(copy.deepcopy(self.objects[key]), ops)
        except (jsonpatch.JsonPatchTestFailed, jsonpatch.JsonPointerException) as e:
            raise _api_error(422, f"the test failed: {e}") from e
        self.log.append(f"status-patch Rollout {name}")
        self._bump(patched)
        self.objects[key] = patched

    def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        secret = self.objects.get(("Secret", namespace, name))
        return None if secret is None else dict(secret.get("stringData") or {})

    def post_event(
        self, involved: Mapping[str, Any], type_: str, reason: str, message: str, now: datetime
    ) -> str:
        self.writes += 1
        self.rv += 1
        namespace, name = str(involved["namespace"]), f"{involved['name']}.{self.rv:x}"
        self.objects[("Event", namespace, name)] = {
            "metadata": {"name": name, "namespace": namespace},
            "type": type_,
            "reason": reason,
            "message": message,
            "count": 1,
            "firstTimestamp": now.isoformat(),
            "lastTimestamp": now.isoformat(),
        }
        self.log.append(f"event {reason}")
        return name

    def repeat_event(self, namespace: str, name: str, count: int, now: datetime) -> None:
        self.writes += 1
        event = self.objects.get(("Event", namespace, name))
        if event is None:
            raise _api_error(404, f'events "{name}" not found')
        event.update(count=count, lastTimestamp=now.isoformat())
        self.log.append(f"repeat event {event['reason']} x{count}")

    def event_objects(self, namespace: str) -> list[dict[str, Any]]:
        return [
            o for (kind, ns, _), o in self.objects.items() if kind == "Event" and ns == namespace
        ]

    def json_patch_rollout(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> None:
        self.writes += 1
        key = ("Rollout", namespace, name)
        try:
            patched = jsonpatch.apply_patch(copy.deepcopy(self.objects[key]), ops)
        except (jsonpatch.JsonPatchTestFailed, jsonpatch.JsonPointerException) as e:
            raise _api_error(422, f"the test failed: {e}") from e
        self.log.append(f"patch Rollout {name}")
        self._bump(patched)
        self.objects[key] = patched

    # ---- what the tests do to the world ------------------------------------------------------

    def put(self, obj: dict[str, Any]) -> None:
        obj = copy.deepcopy(obj)
        obj["metadata"].setdefault("generation", 1)
        self._bump(obj)
        self.objects[
            (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        ] = obj

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind, namespace, name))

    def delete(self, kind: str, namespace: str, name: str) -> None:
        del self.objects[(kind, namespace, name)]

    def annotate(self, namespace: str, name: str, **annotations: str) -> None:
        rollout = self.objects[("Rollout", namespace, name)]
        rollout["metadata"].setdefault("annotations", {}).update(annotations)
        self._bump(rollout)

    def settle(self) -> None:
        """The Deployment controller and kubelets: every Deployment's pods match its spec and
        are Ready (unless listed in `unready`)."""
        for (kind, _, name), obj in self.objects.items():
            if kind != "Deployment" or name in self.lagging:
                continue
            n = obj["spec"]["replicas"]
            ready = 0 if name in self.unready else n
            obj["status"] = {
                "observedGeneration": obj["metadata"]["generation"],
                "replicas": n,
                "updatedReplicas": n,
                "readyReplicas": ready,
            }

    def view(self, namespace: str, rollout: str) -> View:
        def owned(kind: str) -> list[dict[str, Any]]:
            return [
                o
                for (k, ns, _), o in self.objects.items()
                if k == kind
                and ns == namespace
                and (o["metadata"].get("labels") or {}).get(LABEL_ROLLOUT) == rollout
            ]

        tracks = {
            o["metadata"]["labels"].get(LABEL_TRACK): seen_deployment(o)
            for o in owned("Deployment")
        }
        spec = self.objects[("Rollout", namespace, rollout)]["spec"]
        route_name = ((spec.get("trafficRouting") or {}).get("gatewayAPI") or {}).get("httpRoute")
        route = self.objects.get(("HTTPRoute", namespace, route_name)) if route_name else None
        route = copy.deepcopy(route)  # not a read kanary does: the watch's cache
        if route is not None and LABEL_STEERED not in (route["metadata"].get("labels") or {}):
            route = None  # the watch selects on that label (scope.watch_selectors)

        def spec_field(kind: str, ns: str, name: str, key: str) -> str | None:
            found = self.objects.get((kind, ns, name))
            return None if found is None else str(found["spec"].get(key, ""))

        def class_of_route(route: Mapping[str, Any] | None) -> GatewayClassSeen | None:
            return gateway_class_of(
                route,
                namespace,
                lambda key: spec_field("Gateway", key[0], key[1], "gatewayClassName"),
                lambda name: spec_field("GatewayClass", "", name, "controllerName"),
                lambda name: supported_features(
                    (self.objects.get(("GatewayClass", "", name)) or {}).get("status")
                ),
            )

        return View(
            stable=tracks.get("stable"),
            canary=tracks.get("canary"),
            services={o["metadata"]["name"]: o for o in owned("Service")},
            route=route,
            revisions={
                o["metadata"]["labels"][LABEL_REVISION]: o["data"]["template"]
                for o in owned("ControllerRevision")
            },
            alert_providers={
                (ns, name): o["spec"]
                for (kind, ns, name), o in self.objects.items()
                if kind == "AlertProvider"
            },
            gateway_class=class_of_route(route),
            class_of_route=class_of_route,
        )


@dataclass
class Harness:
    """One Rollout in namespace `ns` reconciled tick by tick with a fake clock."""

    kube: FakeKube
    name: str = "demo"
    ns: str = "ns"
    now: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    prometheus: Any = None  # a MetricSource for analysis checks
    resolve: Any = None
    conflicts: int = 0  # ticks that met a 409 on their status write (tick)
    ticked: Ticked | None = None  # what the last tick's reconcile() returned

    def __post_init__(self) -> None:
        # the fake clock: what Runtime times (Event folding, route reads) follows `now`
        self.rt = Runtime(kube=self.kube, monotonic=lambda: self.now.timestamp())  # type: ignore[arg-type]

    @property
    def body(self) -> dict[str, Any]:
        rollout = self.kube.get("Rollout", self.ns, self.name)
        assert rollout is not None
        return rollout

    @property
    def status(self) -> RolloutStatus:
        return RolloutStatus.model_validate(self.body.get("status") or {})

    def tick(self, seconds: float = 1.0, settle: bool = True) -> None:
        snapshot = copy.deepcopy(self.body)
        try:
            self.ticked = reconcile(
                self.rt,
                snapshot,
                self.kube.view(self.ns, self.name),
                self.now,
                self._post,
                lambda spec: self.prometheus,
                self.resolve,
            )
        except Conflict:
            # As handlers._reconcile_one: the Rollout changed during the tick (an alert's
            # acceptance recorded by the delivery thread, say); the next tick decides again.
            self.conflicts += 1
        if settle:
            self.kube.settle()
        from datetime import timedelta

        self.now += timedelta(seconds=seconds)

    def _post(self, kind: str, reason: str, message: str) -> str:
        self.events.append((kind, reason, message))
        return self.kube.post_event(self.body["metadata"], kind, reason, message, self.now)

    def run_until(self, done: Any, limit: int = 600) -> None:
        for _ in range(limit):
            self.tick()
            if done(self.status):
                return
        raise AssertionError(f"not done after {limit} ticks: {self.status.message}")

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.events]

    def messages(self) -> list[str]:
        return [message for _, _, message in self.events]
