"""Kopf wiring only: watch-fed indexes in, one reconcile (reconcile.py) per Rollout per tick.

One timer per Rollout ticks every TICK_SECONDS. The indexes keep what kanary owns (Deployments,
Services, ControllerRevisions) and the HTTPRoutes, so a tick reads nothing from the API server
unless it has to write. A tick's error becomes state (condition ReconcileError and a folded
Warning Event) and is retried in 2 s without a traceback; a Rollout whose namespace is being
deleted is left alone quietly.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
import urllib3
from kubernetes.client.exceptions import ApiException

from kanary import metrics_export
from kanary.analysis.endpoints import PrometheusPolicy
from kanary.analysis.metrics_source import gateway_class_of
from kanary.analysis.source import PrometheusSource
from kanary.durations import parse_duration
from kanary.kube import Kube
from kanary.notify.delivery import Deliverer
from kanary.notify.dispatch import Notifier
from kanary.notify.providers import SecretUnreadable, parse_ref
from kanary.notify.spec import PROVIDER_PLURAL
from kanary.objects import GATEWAY_GROUP, LABEL_REVISION, LABEL_ROLLOUT, LABEL_TRACK
from kanary.reconcile import (
    Conflict,
    Runtime,
    SeenDeployment,
    UnknownTemplate,
    View,
    is_terminating,
    reconcile,
    seen_deployment,
    with_reconcile_error,
)
from kanary.spec import API_GROUP, API_VERSION, PLURAL, RolloutSpec

TICK_SECONDS = 1.0
log = logging.getLogger("kanary")

_runtime: Runtime | None = None
_policy: PrometheusPolicy | None = None


def runtime() -> Runtime:
    global _runtime, _policy
    if _runtime is None:
        _policy = PrometheusPolicy.from_env(os.environ)
        kube = Kube()
        _runtime = Runtime(kube=kube, notifier=_notifier(kube))
    return _runtime


ALERT_PROVIDERS_ENV = "KANARY_ALERT_PROVIDERS"


def _notifier(kube: Kube) -> Notifier:
    """Alerts for every Rollout go to the providers the cluster admin names in
    KANARY_ALERT_PROVIDERS ("namespace/name,..."), besides each Rollout's own."""
    admin = [r.strip() for r in os.environ.get(ALERT_PROVIDERS_ENV, "").split(",") if r.strip()]
    holder: list[Notifier] = []

    def failed(provider: str, message: str) -> None:
        holder[0].on_failure(provider, message)

    def read_secret(namespace: str, name: str) -> dict[str, str] | None:
        try:
            return kube.secret_data(namespace, name)
        except ApiException as e:
            raise SecretUnreadable(f"API {e.status} {e.reason}") from e
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise SecretUnreadable(f"{type(e).__name__}: {e}".splitlines()[0][:200]) from e

    notifier = Notifier(Deliverer(failed), kube, read_secret, admin_refs=admin)
    holder.append(notifier)
    return notifier


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = f"{API_GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=API_GROUP, key="last-handled-configuration"
    )
    # Our own Events only (kopf.event); handler logs stay in the operator log.
    settings.posting.level = logging.ERROR
    settings.watching.server_timeout = 300
    runtime()


# ---- watch-fed state -------------------------------------------------------------------------

_OWNED = {LABEL_ROLLOUT: kopf.PRESENT}


@kopf.index("apps", "v1", "deployments", labels=_OWNED)
def tracks(
    namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[tuple[str, str, str], SeenDeployment]:
    key = (namespace or "", labels[LABEL_ROLLOUT], labels.get(LABEL_TRACK, ""))
    return {key: seen_deployment(body)}


@kopf.index("", "v1", "services", labels=_OWNED)
def owned_services(
    namespace: str | None, name: str, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
    kept = {"metadata": {"labels": dict(labels)}, "spec": dict(body.get("spec") or {})}
    return {(namespace or "", labels[LABEL_ROLLOUT]): (name, kept)}


@kopf.index("apps", "v1", "controllerrevisions", labels=_OWNED)
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
def gateway_classes(name: str, spec: kopf.Spec, **_: Any) -> dict[str, str]:
    return {name: str(spec.get("controllerName", ""))}


@kopf.index(API_GROUP, API_VERSION, PROVIDER_PLURAL)
def alert_providers(
    namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[tuple[str, str], dict[str, Any]]:
    return {(namespace or "", name): dict(spec)}


@kopf.on.event("", "v1", "pods", labels={LABEL_TRACK: "canary"})
def canary_pod(event: Mapping[str, Any], body: Mapping[str, Any], **_: Any) -> None:
    seen_at = datetime.now(UTC)
    meta = body.get("metadata", {})
    if event.get("type") == "DELETED":
        runtime().clock.forget(str(meta.get("namespace")), str(meta.get("name")))
        return
    seconds = runtime().clock.observe(body, seen_at)
    if seconds is not None:
        metrics_export.record_pod_ready(seconds)


def _view(spec: Mapping[str, Any], namespace: str, name: str, idx: Mapping[str, Any]) -> View:
    """This Rollout's part of the indexes Kopf passes as keyword arguments (named as above)."""
    tracks: kopf.Index[Any, SeenDeployment] = idx["tracks"]
    owned_services: kopf.Index[Any, tuple[str, dict[str, Any]]] = idx["owned_services"]
    revisions: kopf.Index[Any, tuple[str, dict[str, Any]]] = idx["revisions"]
    routes: kopf.Index[Any, dict[str, Any]] = idx["routes"]
    alert_providers: kopf.Index[Any, dict[str, Any]] = idx["alert_providers"]
    gateway = ((spec.get("trafficRouting") or {}).get("gatewayAPI") or {}).get("httpRoute")
    route = next(iter(routes.get((namespace, gateway), [])), None) if gateway else None
    gateways: kopf.Index[Any, str] = idx["gateways"]
    classes: kopf.Index[Any, str] = idx["gateway_classes"]
    seen_class = gateway_class_of(
        route,
        namespace,
        lambda key: next(iter(gateways.get(key, [])), None),
        lambda name: next(iter(classes.get(name, [])), None),
    )
    strategy = spec.get("strategy") or {}
    notifier = runtime().notifier
    refs = [
        *((spec.get("notifications") or {}).get("providers") or []),
        *(str(g.get("provider")) for g in strategy.get("gates") or []),
        *(notifier.admin_refs if notifier is not None else ()),
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
    )


# ---- the tick --------------------------------------------------------------------------------


# backoff: a failed tick is retried in seconds, not Kopf's default 60 s, which would stall a
# rollout (even a rollback) for a minute.
@kopf.timer(API_GROUP, API_VERSION, PLURAL, interval=TICK_SECONDS, backoff=2 * TICK_SECONDS)  # type: ignore[arg-type]
async def tick(
    body: kopf.Body,
    spec: kopf.Spec,
    namespace: str,
    name: str,
    **indexes: Any,
) -> None:
    rt = runtime()
    if rt.namespace_terminating(namespace):
        return
    now = datetime.now(UTC)
    snapshot = {
        "metadata": dict(body.metadata),
        "spec": dict(spec),
        "status": dict(body.status),
    }
    view = _view(spec, namespace, name, indexes)

    def post(kind: str, reason: str, message: str) -> None:
        kopf.event(body, type=kind, reason=reason, message=message)

    try:
        await asyncio.to_thread(reconcile, rt, snapshot, view, now, post, _source, _policy_resolve)
    except Conflict as e:
        log.debug("%s; the next tick decides again", e)
    except ApiException as e:
        if is_terminating(e):
            log.debug("rollout %s/%s: namespace or object going away", namespace, name)
            if e.status == 403:
                rt.terminating[namespace] = rt.monotonic()
            return
        await _report(rt, snapshot, post, f"API {e.status} {e.reason}: {_api_message(e)}")
    except (urllib3.exceptions.HTTPError, UnknownTemplate, OSError) as e:
        await _report(rt, snapshot, post, f"{type(e).__name__}: {e}".splitlines()[0][:300])


async def _report(rt: Runtime, snapshot: Mapping[str, Any], post: Any, message: str) -> None:
    """The failed tick as state: condition ReconcileError (best effort) and a folded Warning;
    then Kopf retries in 2 s and logs one line (no traceback: the error is not a bug)."""
    meta = snapshot["metadata"]
    try:
        patch = with_reconcile_error(snapshot["status"], message, datetime.now(UTC))
        if patch:
            await asyncio.to_thread(
                rt.kube.patch_rollout_status,
                meta["namespace"],
                meta["name"],
                str(meta.get("resourceVersion", "")),
                patch,
            )
            post("Warning", "ReconcileError", message)
    except (ApiException, urllib3.exceptions.HTTPError) as e:
        log.debug("could not record the error on %s/%s: %s", meta["namespace"], meta["name"], e)
    raise kopf.TemporaryError(message, delay=2 * TICK_SECONDS)


def _api_message(e: ApiException) -> str:
    """The API server's own one-line message from a Status body, else the reason."""
    import json

    try:
        return str(json.loads(e.body or "{}").get("message") or e.reason)[:300]
    except ValueError:
        return str(e.reason)


def _policy_resolve(url: str | None) -> str:
    runtime()
    assert _policy is not None
    return _policy.resolve(url)


_sources: dict[tuple[str, float], PrometheusSource] = {}


def _source(spec: RolloutSpec) -> PrometheusSource:
    """reconcile() has put the allowed URL (the policy's answer) into the spec."""
    assert spec.strategy.analysis is not None
    prom = spec.strategy.analysis.prometheus
    key = (_policy_resolve(prom.url), parse_duration(prom.timeout))
    if key not in _sources:
        _sources[key] = PrometheusSource(key[0], timeout_seconds=key[1])
    return _sources[key]
