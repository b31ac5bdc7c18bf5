"""Where a Rollout's built-in metrics are read: the service's own (app) or its gateway's.

``app``: the conventional ``http_requests_total`` and ``http_request_duration_seconds`` the
service exports (builtin.py), scoped by track and revision. ``gateway``: the Gateway
implementation's own per-backend metrics (gateway.py), which also count the requests a canary
never answered (a Traefik 502 for a pod that died) and need nothing from the service.

``auto`` (the default) reads the gateway when the HTTPRoute's parent Gateway has a GatewayClass
whose controllerName kanary knows and can read per backend (Traefik, Istio), else the app.
Envoy Gateway mixes both backends of a rule in one Envoy cluster unless mergeBackends is set,
so ``auto`` never picks it and ``gateway`` refuses it with that reason.

Pure: the caller passes what the watch caches hold of the route, Gateways and GatewayClasses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from kanary.analysis.gateway import ENVOY_PER_RULE, GATEWAY_CLASSES, Implementation
from kanary.objects import GATEWAY_GROUP
from kanary.spec import AnalysisSpec, MetricsSource

# The implementations whose metrics tell kanary's two backends apart by default.
PER_BACKEND: tuple[Implementation, ...] = ("traefik", "istio")
# A gateway's counters for <name>-canary outlive a revision: a window never reaches back past
# this before the rollout started, so a new canary is not judged on the last one's requests.
MIN_WINDOW_SECONDS = 1.0


@dataclass(frozen=True)
class GatewayClassSeen:
    """The GatewayClass behind the HTTPRoute's (first found) parent Gateway."""

    gateway: str  # "<namespace>/<name>"
    class_name: str
    controller: str  # spec.controllerName
    # status.supportedFeatures' names; None: the class lists none (not known)
    features: frozenset[str] | None = None


@dataclass(frozen=True)
class Measurement:
    """Where this tick's built-in queries and the request count go."""

    source: Literal["app", "gateway"]
    implementation: Implementation | None = None  # set for gateway
    port: int = 80  # the backendRefs' port (spec.service.port)
    why: str = ""  # one line for status: "gateway: traefik (GatewayClass traefik)"


APP = Measurement("app", why="app: the service's own http_requests_total")


def parent_gateways(route: Mapping[str, Any] | None, route_namespace: str) -> list[tuple[str, str]]:
    """(namespace, name) of the Gateways an HTTPRoute attaches to, in its parentRefs' order."""
    out: list[tuple[str, str]] = []
    for ref in ((route or {}).get("spec") or {}).get("parentRefs") or []:
        if ref.get("kind", "Gateway") != "Gateway" or ref.get("group", GATEWAY_GROUP) != (
            GATEWAY_GROUP
        ):
            continue
        key = (str(ref.get("namespace") or route_namespace), str(ref.get("name", "")))
        if key[1] and key not in out:
            out.append(key)
    return out


def gateway_class_of(
    route: Mapping[str, Any] | None,
    route_namespace: str,
    class_of_gateway: Callable[[tuple[str, str]], str | None],
    controller_of_class: Callable[[str], str | None],
    features_of_class: Callable[[str], frozenset[str] | None] = lambda _: None,
) -> GatewayClassSeen | None:
    """The class of the route's first parent Gateway that is seen, with its class seen."""
    for key in parent_gateways(route, route_namespace):
        class_name = class_of_gateway(key)
        controller = controller_of_class(class_name) if class_name else None
        if class_name and controller:
            features = features_of_class(class_name)
            return GatewayClassSeen(f"{key[0]}/{key[1]}", class_name, controller, features)
    return None


def supported_features(status: Mapping[str, Any] | None) -> frozenset[str] | None:
    """A GatewayClass status' supportedFeatures (v1.4: objects {name}; older: strings)."""
    listed = (status or {}).get("supportedFeatures")
    if not listed:
        return None
    return frozenset(str(f.get("name") if isinstance(f, Mapping) else f) for f in listed)


def choose(
    analysis: AnalysisSpec, routed: bool, seen: GatewayClassSeen | None, port: int
) -> Measurement | str:
    """The Measurement for this Rollout, or why the gateway it asks for cannot be read."""
    if analysis.source == MetricsSource.APP:
        return APP
    wanted = analysis.source == MetricsSource.GATEWAY
    if not routed:
        if wanted:  # the CRD refuses this; a spec read from elsewhere might not have been
            return "source gateway: the Rollout has no spec.trafficRouting.gatewayAPI"
        return Measurement("app", why="app: no HTTPRoute, so no gateway to read")
    if seen is None:
        if wanted:
            return "source gateway: the HTTPRoute's parent Gateway or its GatewayClass not found"
        return Measurement("app", why="app: the HTTPRoute's Gateway or GatewayClass not seen")
    implementation = GATEWAY_CLASSES.get(seen.controller)
    shown = f"GatewayClass {seen.class_name} ({seen.controller})"
    if implementation in PER_BACKEND:
        return Measurement(
            "gateway",
            implementation,
            port,
            f"gateway: {implementation} metrics of {seen.gateway} ({shown})",
        )
    if not wanted:
        return Measurement("app", why=f"app: kanary cannot read per-backend metrics of {shown}")
    if implementation == "envoy-gateway":
        return f"source gateway: {ENVOY_PER_RULE}"
    known = ", ".join(sorted(c for c, i in GATEWAY_CLASSES.items() if i in PER_BACKEND))
    return f"source gateway: no metrics mapping for {shown}; known controllers: {known}"


def window_seconds(
    measurement: Measurement, window: float, now: datetime, since: datetime | None
) -> float:
    """The window a check reads: the spec's, but for a gateway never before ``since`` (when the
    rollout started), since the gateway's series for <name>-canary are the same for every
    revision and app series are scoped by revision instead."""
    if measurement.source != "gateway" or since is None:
        return window
    elapsed = float(int((now - since).total_seconds()))  # whole seconds: "15s", not "15250ms"
    return max(MIN_WINDOW_SECONDS, min(window, elapsed))
