"""Gateway API: kanary changes only the weights of the HTTPRoute backendRefs it owns."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from kanary.kube import Kube
from kanary.objects import track_name
from kanary.routers.base import RouteProblem


def _backend_refs(route: Mapping[str, Any]) -> list[tuple[int, int, str]]:
    """(rule index, backendRef index, service name) for every Service backendRef in the route."""
    refs = []
    for ri, rule in enumerate(route.get("spec", {}).get("rules") or []):
        for bi, ref in enumerate(rule.get("backendRefs") or []):
            if ref.get("kind", "Service") == "Service" and ref.get("group", "") in ("", "core"):
                refs.append((ri, bi, str(ref.get("name", ""))))
    return refs


def route_problem(route: Mapping[str, Any] | None, route_name: str, rollout: str) -> str | None:
    """Why weights cannot be written to this route, or None when it references both tracks."""
    if route is None:
        return f"HTTPRoute {route_name} not found"
    names = {name for _, _, name in _backend_refs(route)}
    missing = [
        n for n in (track_name(rollout, "stable"), track_name(rollout, "canary")) if n not in names
    ]
    if missing:
        return f"HTTPRoute {route_name} has no backendRef to Service {' or '.join(missing)}"
    return None


def weight_patch(route: Mapping[str, Any], rollout: str, weight: int) -> list[dict[str, Any]]:
    """A JSON patch setting only our two weights, guarded by the resourceVersion read."""
    want = {track_name(rollout, "stable"): 100 - weight, track_name(rollout, "canary"): weight}
    ops: list[dict[str, Any]] = [
        {
            "op": "test",
            "path": "/metadata/resourceVersion",
            "value": route["metadata"]["resourceVersion"],
        }
    ]
    for ri, bi, name in _backend_refs(route):
        if name in want:
            ops.append(
                {
                    "op": "add",
                    "path": f"/spec/rules/{ri}/backendRefs/{bi}/weight",
                    "value": want[name],
                }
            )
    return ops


def route_weights(route: Mapping[str, Any], rollout: str) -> dict[str, int]:
    """Current weight per track Service (a missing weight means 1, as Gateway API says)."""
    out: dict[str, int] = {}
    rules = route.get("spec", {}).get("rules") or []
    for ri, bi, name in _backend_refs(route):
        if name in (track_name(rollout, "stable"), track_name(rollout, "canary")):
            out[name] = int(rules[ri]["backendRefs"][bi].get("weight", 1))
    return out


_ATTEMPTS = 3


class GatewayRouter:
    def __init__(self, kube: Kube, namespace: str, route_name: str, rollout: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.route_name = route_name
        self.rollout = rollout

    def set_weight(self, weight: int) -> None:
        want = {
            track_name(self.rollout, "stable"): 100 - weight,
            track_name(self.rollout, "canary"): weight,
        }
        for attempt in range(_ATTEMPTS):
            route = self.kube.get_httproute(self.namespace, self.route_name)
            problem = route_problem(route, self.route_name, self.rollout)
            if problem or route is None:
                raise RouteProblem(problem)
            if route_weights(route, self.rollout) == want:
                return
            try:
                self.kube.json_patch_httproute(
                    self.namespace, self.route_name, weight_patch(route, self.rollout, weight)
                )
                return
            except ApiException as e:
                # 422: the resourceVersion test failed (someone, e.g. the gateway writing the
                # route's status, changed it since the read): read again and retry.
                if e.status != 422 or attempt == _ATTEMPTS - 1:
                    raise
