"""setMirror: the RequestMirror filter kanary adds to the user's owned rule (and only ever
removes). Pure: the route in, the filter and the JSON patch operations out.

The filter is kanary's when it is a RequestMirror whose backendRef names <rollout>-canary; the
user's other filters are never written. ``percent`` is Gateway API v1.4's standard field
(Extended feature HTTPRouteRequestPercentageMirror; 100 needs only HTTPRouteRequestMirror, so
it is written without ``percent``). routers.features refuses a Gateway that lacks them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kanary.objects import contains, track_name


def is_kanarys(item: Mapping[str, Any], rollout: str) -> bool:
    ref = (item.get("requestMirror") or {}).get("backendRef") or {}
    return item.get("type") == "RequestMirror" and ref.get("name") == track_name(rollout, "canary")


def _rule(route: Mapping[str, Any], index: int) -> Mapping[str, Any]:
    rules: list[Mapping[str, Any]] = (route.get("spec") or {}).get("rules") or []
    return rules[index]


def wanted_filter(
    route: Mapping[str, Any], index: int, canary_ref: int, rollout: str, percent: int | None
) -> dict[str, Any] | None:
    """The filter for `percent` (None or 0: none), pointing at the canary backendRef's port."""
    if not percent:
        return None
    ref = (_rule(route, index).get("backendRefs") or [])[canary_ref]
    backend = {k: v for k, v in ref.items() if k in ("group", "kind", "namespace", "port")}
    mirror: dict[str, Any] = {"backendRef": {**backend, "name": track_name(rollout, "canary")}}
    if percent < 100:
        mirror["percent"] = percent
    return {"type": "RequestMirror", "requestMirror": mirror}


def drifted(
    route: Mapping[str, Any], index: int, rollout: str, wanted: dict[str, Any] | None
) -> bool:
    seen = [f for f in _rule(route, index).get("filters") or [] if is_kanarys(f, rollout)]
    if wanted is None:
        return bool(seen)
    return len(seen) != 1 or not contains(seen[0], wanted)  # the server may add defaults


def patch_ops(
    route: Mapping[str, Any], index: int, rollout: str, wanted: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Remove kanary's mirror filters of the rule (each guarded by a test of its type) and
    append `wanted`."""
    filters = list(_rule(route, index).get("filters") or [])
    base = f"/spec/rules/{index}/filters"
    ops: list[dict[str, Any]] = []
    for i in reversed([i for i, f in enumerate(filters) if is_kanarys(f, rollout)]):
        ops.append({"op": "test", "path": f"{base}/{i}", "value": filters[i]})
        ops.append({"op": "remove", "path": f"{base}/{i}"})
    if wanted is not None:
        if "filters" in _rule(route, index):
            ops.append({"op": "add", "path": f"{base}/-", "value": wanted})
        else:
            ops.append({"op": "add", "path": base, "value": [wanted]})
    return ops
