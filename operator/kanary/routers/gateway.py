"""Gateway API: kanary owns the two weights of exactly one rule of the user's HTTPRoute.

The owned rule is the one named in spec.trafficRouting.gatewayAPI.rule, or else the one rule
that references both <name>-stable and <name>-canary. Other rules (a header match pinned to the
stable Service, say) are never written. Weights are set with a JSON patch that tests the
resourceVersion read and the backendRef names at the paths it writes (set-and-verify: the
patch's answer is the route as stored, and the weights read back from it are what status shows).

The route also gets the label kanary.dev/steered=true (once: steered_route), so that kanary's
route watch can select on it and the API server does not send it every route of the cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from kanary.kube import Kube
from kanary.objects import LABEL_STEERED, track_name
from kanary.routers import header_rules, mirror_filter
from kanary.routers.base import RouteProblem
from kanary.spec import HeaderRoute, Step


def steered_route(
    kube: Kube, namespace: str, name: str, label: bool = True
) -> dict[str, Any] | None:
    """The route read directly, because the watch has not sent it: labelled kanary.dev/steered
    unless it is already (one write per route; a label the user removes comes back), so that
    the watch, which selects on that label, sends it from now on. None if there is no route.
    `label` False: read only (an Invalid Rollout steers nothing, so it marks nothing)."""
    route = kube.get_httproute(namespace, name)
    if route is None or not label:
        return route
    if (route["metadata"].get("labels") or {}).get(LABEL_STEERED) != "true":
        kube.label_httproute(namespace, name, {LABEL_STEERED: "true"})
    return route


@dataclass(frozen=True)
class OwnedRule:
    index: int
    stable_ref: int  # backendRef index of <name>-stable in that rule
    canary_ref: int


def _service_refs(rule: Mapping[str, Any]) -> dict[str, int]:
    """Service name -> index of its first backendRef of kind Service in this rule."""
    out: dict[str, int] = {}
    for bi, ref in enumerate(rule.get("backendRefs") or []):
        if ref.get("kind", "Service") == "Service" and ref.get("group", "") in ("", "core"):
            out.setdefault(str(ref.get("name", "")), bi)
    return out


def find_rule(
    route: Mapping[str, Any] | None, route_name: str, rollout: str, rule_name: str | None = None
) -> OwnedRule | str:
    """The rule whose two weights kanary owns, or why there is none (one line for on-call)."""
    if route is None:
        return f"HTTPRoute {route_name} not found"
    stable, canary = track_name(rollout, "stable"), track_name(rollout, "canary")
    rules = route.get("spec", {}).get("rules") or []
    if rule_name is not None:
        named = [i for i, r in enumerate(rules) if r.get("name") == rule_name]
        if not named:
            return f"HTTPRoute {route_name} has no rule named {rule_name}"
        candidates = named
    else:
        candidates = list(range(len(rules)))
    both = []
    for i in candidates:
        refs = _service_refs(rules[i])
        if stable in refs and canary in refs:
            both.append(OwnedRule(i, refs[stable], refs[canary]))
    if len(both) == 1:
        return both[0]
    if len(both) > 1:
        return (
            f"HTTPRoute {route_name} has {len(both)} rules referencing both {stable} and "
            f"{canary}: name the one kanary owns in spec.trafficRouting.gatewayAPI.rule"
        )
    names: set[str] = set()
    for i in candidates:
        names.update(_service_refs(rules[i]))
    missing = [n for n in (stable, canary) if n not in names]
    where = f"HTTPRoute {route_name}" + (f" rule {rule_name}" if rule_name is not None else "")
    if missing:
        return f"{where} has no backendRef to Service {' or '.join(missing)}"
    return f"{where}: no rule references both {stable} and {canary}"


def route_problem(
    route: Mapping[str, Any] | None, route_name: str, rollout: str, rule_name: str | None = None
) -> str | None:
    """Why weights cannot be written to this route, or None."""
    found = find_rule(route, route_name, rollout, rule_name)
    return found if isinstance(found, str) else None


def split_of(route: Mapping[str, Any], rule: OwnedRule) -> tuple[int, int]:
    """(stable, canary) weights of the owned rule; a missing weight is 1, as Gateway API says."""
    refs = route["spec"]["rules"][rule.index]["backendRefs"]
    return int(refs[rule.stable_ref].get("weight", 1)), int(refs[rule.canary_ref].get("weight", 1))


def observed_split(
    route: Mapping[str, Any] | None, route_name: str, rollout: str, rule_name: str | None = None
) -> tuple[int, int] | None:
    found = find_rule(route, route_name, rollout, rule_name)
    if isinstance(found, str) or route is None:
        return None
    return split_of(route, found)


def wanted_header_rule(
    route: Mapping[str, Any], rule: OwnedRule, rollout: str, header: HeaderRoute | None
) -> dict[str, Any] | None:
    """The header rule the route must hold for `header` (None: none); RouteProblem if it
    cannot be built on this route."""
    if header is None:
        return None
    built = header_rules.header_rule(route, rule.index, rule.canary_ref, rollout, header)
    if isinstance(built, str):
        raise RouteProblem(built)
    return built


def header_problem(
    route: Mapping[str, Any], rule: OwnedRule, rollout: str, steps: Sequence[Step]
) -> str | None:
    """Why a setHeaderRoute of these steps cannot be written to this route, or None: checked
    every tick, before the rollout needs it, so a clash makes the Rollout Invalid at once
    (reconcile.header_route_problem)."""
    for i, step in enumerate(steps):
        if step.set_header_route is not None and step.set_header_route.match:
            built = header_rules.header_rule(
                route, rule.index, rule.canary_ref, rollout, step.set_header_route
            )
            if isinstance(built, str):
                return f"steps[{i}].{built}"
    return None


def weight_patch(
    route: Mapping[str, Any],
    rule: OwnedRule,
    weight: int,
    header_rule: dict[str, Any] | None = None,
    rollout: str = "",
    mirror: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """A JSON patch setting only the owned rule's two weights, guarded by the resourceVersion
    read and by the names at the paths it writes; with `rollout`, it also replaces kanary's
    mirror filter on the owned rule by `mirror` (mirror_filter.patch_ops) and kanary's header
    rule by `header_rule` (header_rules.patch_ops), in that order: the owned rule's index is
    still the one read when its filters are written."""
    base = f"/spec/rules/{rule.index}/backendRefs"
    refs = route["spec"]["rules"][rule.index]["backendRefs"]
    ops: list[dict[str, Any]] = [
        {
            "op": "test",
            "path": "/metadata/resourceVersion",
            "value": route["metadata"]["resourceVersion"],
        }
    ]
    for ref, value in ((rule.stable_ref, 100 - weight), (rule.canary_ref, weight)):
        ops.append({"op": "test", "path": f"{base}/{ref}/name", "value": refs[ref]["name"]})
        ops.append({"op": "add", "path": f"{base}/{ref}/weight", "value": value})
    if rollout and mirror_filter.drifted(route, rule.index, rollout, mirror):
        ops.extend(mirror_filter.patch_ops(route, rule.index, rollout, mirror))
    if rollout and header_rules.drifted(route, header_rule, rollout):
        ops.extend(header_rules.patch_ops(route, header_rule, rollout))
    return ops


_ATTEMPTS = 3


class GatewayRouter:
    def __init__(
        self, kube: Kube, namespace: str, route_name: str, rollout: str, rule: str | None = None
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.route_name = route_name
        self.rollout = rollout
        self.rule = rule

    def set_weight(
        self, weight: int, header: HeaderRoute | None = None, mirror: int | None = None
    ) -> tuple[int, int]:
        """Write the split, the mirror filter and the header rule (one patch) and return the
        split as the API server stored it (stable, canary)."""
        for attempt in range(_ATTEMPTS):
            route = self.kube.get_httproute(self.namespace, self.route_name)
            found = find_rule(route, self.route_name, self.rollout, self.rule)
            if isinstance(found, str) or route is None:
                raise RouteProblem(found)
            rule = wanted_header_rule(route, found, self.rollout, header)
            copy = mirror_filter.wanted_filter(
                route, found.index, found.canary_ref, self.rollout, mirror
            )
            same = not header_rules.drifted(route, rule, self.rollout) and not (
                mirror_filter.drifted(route, found.index, self.rollout, copy)
            )
            if split_of(route, found) == (100 - weight, weight) and same:
                return 100 - weight, weight
            try:
                stored = self.kube.json_patch_httproute(
                    self.namespace,
                    self.route_name,
                    weight_patch(route, found, weight, rule, self.rollout, copy),
                )
                return split_of(stored, found)
            except ApiException as e:
                # 422: a test failed (someone, e.g. the gateway writing the route's status,
                # changed it since the read): read again and retry.
                if e.status != 422 or attempt == _ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")
