"""Kopf wiring, part 2 of 2: the watch-fed indexes (what kanary owns, the HTTPRoutes it steers,
their Gateways and GatewayClasses, AlertProviders) and one Rollout's View of them for a tick.
Split out of handlers.py; registered when handlers imports it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import kopf

from kanary.analysis.metrics_source import (
    GatewayClassSeen,
    gateway_class_of,
    supported_features,
)
from kanary.notify.providers import parse_ref
from kanary.notify.spec import PROVIDER_PLURAL
from kanary.objects import GATEWAY_GROUP, LABEL_REVISION, LABEL_ROLLOUT, LABEL_TRACK
from kanary.reconcile import SeenDeployment, View, seen_deployment
from kanary.spec import API_GROUP, API_VERSION

OWNED = {LABEL_ROLLOUT: kopf.PRESENT}


@kopf.index("apps", "v1", "deployments", labels=OWNED)
def tracks(
    namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[tuple[str, str, str], SeenDeployment]:
    key = (namespace or "", labels[LABEL_ROLLOUT], labels.get(LABEL_TRACK, ""))
    return {key: seen_deployment(body)}


@kopf.index("", "v1", "services", labels=OWNED)
def owned_services(
    namespace: str | None, name: str, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
    kept = {"metadata": {"labels": dict(labels)}, "spec": dict(body.get("spec") or {})}
    return {(namespace or "", labels[LABEL_ROLLOUT]): (name, kept)}


@kopf.index("apps", "v1", "controllerrevisions", labels=OWNED)
def revisions(
    namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
    template = dict((body.get("data") or {}).get("template") or {})
    return {(namespace or "", labels[LABEL_ROLLOUT]): (labels.get(LABEL_REVISION, ""), template)}


@kopf.index(GATEWAY_GROUP, "v1", "httproutes")
def routes(
    namespace: str | None, name: str, body: kopf.Body, meta: kopf.Meta, **_: Any
) -> dict[tuple[str, str], dict[str, Any]]:
    route_spec = body.get("spec") or {}
    kept = {
        "metadata": {"resourceVersion": meta.get("resourceVersion")},
        "spec": {
            "rules": list(route_spec.get("rules") or []),
            "parentRefs": list(route_spec.get("parentRefs") or []),
        },
    }
    return {(namespace or "", name): kept}


@kopf.index(GATEWAY_GROUP, "v1", "gateways")
def gateways(
    namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[tuple[str, str], str]:
    return {(namespace or "", name): str(spec.get("gatewayClassName", ""))}


@kopf.index(GATEWAY_GROUP, "v1", "gatewayclasses")
def gateway_classes(
    name: str, spec: kopf.Spec, status: kopf.Status, **_: Any
) -> dict[str, tuple[str, frozenset[str] | None]]:
    return {name: (str(spec.get("controllerName", "")), supported_features(status))}


@kopf.index(API_GROUP, API_VERSION, PROVIDER_PLURAL)
def alert_providers(
    namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[tuple[str, str], dict[str, Any]]:
    return {(namespace or "", name): dict(spec)}


def view(
    spec: Mapping[str, Any],
    namespace: str,
    name: str,
    idx: Mapping[str, Any],
    admin_refs: Sequence[str],
) -> View:
    """This Rollout's part of the indexes Kopf passes as keyword arguments (named as above)."""
    tracks: kopf.Index[Any, SeenDeployment] = idx["tracks"]
    owned_services: kopf.Index[Any, tuple[str, dict[str, Any]]] = idx["owned_services"]
    revisions: kopf.Index[Any, tuple[str, dict[str, Any]]] = idx["revisions"]
    routes: kopf.Index[Any, dict[str, Any]] = idx["routes"]
    alert_providers: kopf.Index[Any, dict[str, Any]] = idx["alert_providers"]
    gateway = ((spec.get("trafficRouting") or {}).get("gatewayAPI") or {}).get("httpRoute")
    route = next(iter(routes.get((namespace, gateway), [])), None) if gateway else None
    gateways: kopf.Index[Any, str] = idx["gateways"]
    classes: kopf.Index[Any, tuple[str, frozenset[str] | None]] = idx["gateway_classes"]

    def class_of_route(route: Mapping[str, Any] | None) -> GatewayClassSeen | None:
        return gateway_class_of(
            route,
            namespace,
            lambda key: next(iter(gateways.get(key, [])), None),
            lambda name: next(iter(classes.get(name, [])), (None, None))[0],
            lambda name: next(iter(classes.get(name, [])), (None, None))[1],
        )

    seen_class = class_of_route(route)
    strategy = spec.get("strategy") or {}
    refs = [
        *((spec.get("notifications") or {}).get("providers") or []),
        *(str(g.get("provider")) for g in strategy.get("gates") or []),
        *admin_refs,
    ]
    providers: dict[tuple[str, str], dict[str, Any]] = {}
    for ref in refs:
        key = parse_ref(str(ref), namespace)
        found = next(iter(alert_providers.get(key, [])), None)
        if found is not None:
            providers[key] = found
    return View(
        stable=next(iter(tracks.get((namespace, name, "stable"), [])), None),
        canary=next(iter(tracks.get((namespace, name, "canary"), [])), None),
        services=dict(owned_services.get((namespace, name), [])),
        route=route,
        revisions=dict(revisions.get((namespace, name), [])),
        alert_providers=providers,
        gateway_class=seen_class,
        class_of_route=class_of_route,
    )
