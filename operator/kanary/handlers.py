"""Kopf wiring: watch-fed state in, the pure engine's decision out. No decisions are made here.

One timer per Rollout ticks every TICK_SECONDS: it builds an Observation from Kopf's indexes and
the pod clock, runs an analysis check when one is due (in a thread), asks the engine, executes
the actions (in a thread: the client is sync) and writes the new status in one patch.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from kanary import actions as act
from kanary import metrics_export
from kanary.analysis.check import run_check
from kanary.analysis.source import PrometheusSource
from kanary.analysis.templating import template_errors
from kanary.durations import parse_duration
from kanary.engine import Decision, analysis_due, decide, template_hash
from kanary.kube import Kube
from kanary.objects import (
    ANNOTATION_ACTION,
    ANNOTATION_ACTION_ID,
    LABEL_REVISION,
    LABEL_ROLLOUT,
    LABEL_TRACK,
    deployment,
    services,
    track_name,
)
from kanary.observation import MANUAL_ACTIONS, ManualAction, Observation, TrackState
from kanary.podclock import PodClock
from kanary.readiness import readiness_figures
from kanary.routers import RouteProblem, TrafficRouter
from kanary.routers.gateway import GatewayRouter, route_problem
from kanary.routers.replica_ratio import ReplicaRatioRouter
from kanary.spec import API_GROUP, API_VERSION, PLURAL, RolloutSpec
from kanary.status import RolloutStatus

TICK_SECONDS = 1.0
log = logging.getLogger("kanary")


@dataclasses.dataclass
class Runtime:
    """Process-wide state: the client, the pod clock and what was already written."""

    kube: Kube
    clock: PodClock = dataclasses.field(default_factory=PodClock)
    route_problems: dict[tuple[str, str], str] = dataclasses.field(default_factory=dict)
    ensured_services: set[tuple[str, str, str]] = dataclasses.field(default_factory=set)


_runtime: Runtime | None = None


def runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        _runtime = Runtime(kube=Kube())
    return _runtime


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


@kopf.index("apps", "v1", "deployments", labels={LABEL_ROLLOUT: kopf.PRESENT})
def tracks(
    namespace: str | None,
    labels: Mapping[str, str],
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    **_: Any,
) -> dict[tuple[str, str, str], TrackState]:
    template_labels = spec.get("template", {}).get("metadata", {}).get("labels") or {}
    replicas = int(spec.get("replicas", 1))
    ready = int(status.get("readyReplicas", 0) or 0)
    updated = int(status.get("updatedReplicas", 0) or 0)
    settled = (
        int(status.get("observedGeneration", 0) or 0) >= int(meta.get("generation", 0) or 0)
        and updated == replicas
        and ready == replicas
        and int(status.get("replicas", 0) or 0) == replicas
    )
    containers = spec.get("template", {}).get("spec", {}).get("containers") or []
    state = TrackState(
        exists=True,
        images=",".join(str(c.get("image", "")) for c in containers),
        revision=template_labels.get(LABEL_REVISION),
        replicas=replicas,
        ready=ready if updated >= ready else updated,
        settled=settled,
    )
    return {(namespace or "", labels[LABEL_ROLLOUT], labels.get(LABEL_TRACK, "")): state}


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


# ---- the tick --------------------------------------------------------------------------------


def _for_kubectl(status: RolloutStatus, spec: RolloutSpec, obs: Observation) -> RolloutStatus:
    """The printer columns' fields: step "i/N" and the images each track runs."""
    index = status.current_step_index
    steps = len(spec.strategy.steps)
    canary = ",".join(spec.template.images()) if status.stage == "Stepping" else None
    return status.model_copy(
        update={
            "step": None if index is None else f"{min(index + 1, steps)}/{steps}",
            "stable_image": obs.stable.images or None,
            "canary_image": canary,
        }
    )


def _manual_action(annotations: Mapping[str, str]) -> tuple[ManualAction | None, str | None]:
    raw = annotations.get(ANNOTATION_ACTION)
    if raw is None:
        return None, None
    for action in MANUAL_ACTIONS:
        if raw == action:
            return action, None
    return None, f"unknown {ANNOTATION_ACTION} {raw!r}: use one of {', '.join(MANUAL_ACTIONS)}"


def _router(rt: Runtime, spec: RolloutSpec, namespace: str, name: str) -> TrafficRouter:
    gw = spec.traffic_routing.gateway_api if spec.traffic_routing else None
    if gw is None:
        return ReplicaRatioRouter()
    return GatewayRouter(rt.kube, namespace, gw.http_route, name)


def _execute(
    rt: Runtime,
    spec: RolloutSpec,
    body: kopf.Body,
    obs: Observation,
    decision: Decision,
) -> None:
    """Apply the engine's actions in order, skipping writes the watched state shows are done."""
    meta = body["metadata"]
    name, namespace, uid = meta["name"], meta["namespace"], meta["uid"]
    for action in decision.actions:
        match action:
            case act.EnsureServices():
                for svc in services(spec, name, namespace, uid):
                    key = (namespace, svc["metadata"]["name"], repr(svc["spec"]) + uid)
                    if key not in rt.ensured_services:
                        rt.kube.apply(svc)
                        rt.ensured_services.add(key)
            case act.ApplyCanary(revision=rev, replicas=n):
                if (obs.canary.exists, obs.canary.revision, obs.canary.replicas) != (True, rev, n):
                    rt.kube.apply(deployment(spec, name, namespace, uid, "canary", rev, n))
            case act.ApplyStable(revision=rev, replicas=n):
                if (obs.stable.exists, obs.stable.revision, obs.stable.replicas) != (True, rev, n):
                    rt.kube.apply(deployment(spec, name, namespace, uid, "stable", rev, n))
            case act.ScaleStable(replicas=n):
                if obs.stable.replicas != n:
                    rt.kube.scale(namespace, track_name(name, "stable"), n)
            case act.SetWeight(weight=w):
                _router(rt, spec, namespace, name).set_weight(w)
                rt.route_problems.pop((namespace, name), None)
            case act.EmitEvent(type=kind, reason=reason, message=message):
                kopf.event(body, type=kind, reason=reason, message=message)


def _stored(value: Any) -> Any:
    """A value as the API server keeps it: a merge patch's nulls delete keys, so none remain."""
    if isinstance(value, dict):
        return {k: _stored(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_stored(v) for v in value]
    return value


def _status_patch(old: Mapping[str, Any], new: RolloutStatus) -> dict[str, Any]:
    """Merge-patch body: changed keys, and None for keys that went away. Compared as stored,
    so a status that did not change is not written again."""
    fresh = new.to_patch()
    patch = {k: v for k, v in fresh.items() if _stored(old.get(k)) != _stored(v)}
    patch.update({k: None for k in old if fresh.get(k) is None and k not in patch})
    return {k: v for k, v in patch.items() if not (v is None and old.get(k) is None)}


def _invalid_patch(old: Mapping[str, Any], reason: str, generation: int) -> dict[str, Any]:
    status = RolloutStatus.model_validate(dict(old))
    return _status_patch(
        old,
        status.model_copy(
            update={"phase": "Invalid", "message": reason, "observed_generation": generation}
        ),
    )


# backoff: a failed tick (an API error) is retried in seconds, not Kopf's default 60 s, which
# would stall a rollout (even a rollback) for a minute.
@kopf.timer(API_GROUP, API_VERSION, PLURAL, interval=TICK_SECONDS, backoff=2 * TICK_SECONDS)  # type: ignore[arg-type]
async def tick(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    namespace: str,
    name: str,
    patch: kopf.Patch,
    tracks: kopf.Index[Any, TrackState],
    **_: Any,
) -> None:
    rt = runtime()
    now = datetime.now(UTC)
    old_status = dict(status)
    generation = int(meta.get("generation") or 0)
    try:
        rollout = RolloutSpec.model_validate(dict(spec))
    except ValidationError as e:
        reason = "; ".join(
            f"spec.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        if old_status.get("message") != reason:
            kopf.warn(body, reason="Invalid", message=reason)
        patch.status.update(_invalid_patch(old_status, reason, generation))
        return

    manual, bad_action = _manual_action(meta.get("annotations") or {})
    if bad_action:
        kopf.warn(body, reason="UnknownAction", message=bad_action)

    current = RolloutStatus.model_validate(old_status)
    canary_rev = current.canary_revision or ""
    invalid = "; ".join(template_errors(rollout)) or None
    obs = Observation(
        now=now,
        generation=generation,
        template_hash=template_hash(rollout.template),
        stable=_track(tracks, namespace, name, "stable"),
        canary=_track(tracks, namespace, name, "canary"),
        readiness=readiness_figures(rt.clock.timings(namespace, name, canary_rev), now),
        manual=manual,
        manual_id=(meta.get("annotations") or {}).get(ANNOTATION_ACTION_ID),
        route_problem=rt.route_problems.get((namespace, name)),
        invalid=invalid,
    )
    if obs.route_problem:
        obs = await _recheck_route(rt, rollout, namespace, name, obs)
    if invalid is None and rollout.strategy.analysis and analysis_due(rollout, current, now):
        outcome = await asyncio.to_thread(
            run_check,
            rollout,
            _source(rollout),
            namespace,
            name,
            canary_rev,
            current.stable_revision or "",
            now,
        )
        obs = dataclasses.replace(obs, analysis=outcome)
        metrics_export.record_analysis(namespace, name, outcome)

    decision = decide(rollout, current, obs)
    try:
        await asyncio.to_thread(_execute, rt, rollout, body, obs, decision)
    except RouteProblem as problem:
        rt.route_problems[(namespace, name)] = str(problem)
        obs = dataclasses.replace(obs, route_problem=str(problem))
        decision = decide(rollout, current, obs)
        await asyncio.to_thread(_execute, rt, rollout, body, obs, _without_weights(decision))
    patch.status.update(_status_patch(old_status, _for_kubectl(decision.status, rollout, obs)))
    if bad_action or manual:  # consumed only once the actions it caused were written
        patch.metadata.annotations[ANNOTATION_ACTION] = None
        patch.metadata.annotations[ANNOTATION_ACTION_ID] = None
    metrics_export.record_status(namespace, name, current, decision.status)


def _track(index: kopf.Index[Any, TrackState], namespace: str, name: str, track: str) -> TrackState:
    for state in index.get((namespace, name, track), []):
        return state
    return TrackState()


def _without_weights(decision: Decision) -> Decision:
    kept = [a for a in decision.actions if not isinstance(a, act.SetWeight)]
    return dataclasses.replace(decision, actions=kept)


async def _recheck_route(
    rt: Runtime, spec: RolloutSpec, namespace: str, name: str, obs: Observation
) -> Observation:
    """A remembered route problem is re-read each tick, so fixing the route resumes the rollout."""
    gw = spec.traffic_routing.gateway_api if spec.traffic_routing else None
    if gw is None:
        rt.route_problems.pop((namespace, name), None)
        return dataclasses.replace(obs, route_problem=None)
    route = await asyncio.to_thread(rt.kube.get_httproute, namespace, gw.http_route)
    problem = route_problem(route, gw.http_route, name)
    if problem is None:
        rt.route_problems.pop((namespace, name), None)
    else:
        rt.route_problems[(namespace, name)] = problem
    return dataclasses.replace(obs, route_problem=problem)


_sources: dict[tuple[str, float], PrometheusSource] = {}


def _source(spec: RolloutSpec) -> PrometheusSource:
    assert spec.strategy.analysis is not None
    prom = spec.strategy.analysis.prometheus
    key = (prom.url, parse_duration(prom.timeout))
    if key not in _sources:
        _sources[key] = PrometheusSource(prom.url, timeout_seconds=key[1])
    return _sources[key]
