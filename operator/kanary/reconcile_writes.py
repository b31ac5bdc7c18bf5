"""The writes of one tick: the engine's actions executed in order (Deployments, Services, the
route through its router), and Events folded into Kubernetes Event series. Split out of
reconcile.py."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from kanary import actions as act
from kanary.engine import Decision, template_hash
from kanary.objects import (
    controller_revision,
    deployment,
    services,
    track_name,
)
from kanary.observation import (
    Observation,
)
from kanary.reconcile_state import (
    EVENT_FOLD_SECONDS,
    EVENT_SERIES_SECONDS,
    EventSeries,
    PostEvent,
    Runtime,
    View,
    _template_of,
)
from kanary.routers.gateway import (
    GatewayRouter,
)
from kanary.routers.replica_ratio import ReplicaRatioRouter
from kanary.spec import RolloutSpec

log = logging.getLogger("kanary")

# ---- writes ----------------------------------------------------------------------------------


class _EventPoster:
    """Each distinct Event of a Rollout is one Kubernetes Event series: the first occurrence
    creates the Event; a repeat patches its count and lastTimestamp, at most once per
    EVENT_FOLD_SECONDS (repeats in between are counted into the next patch); a repeat after
    EVENT_SERIES_SECONDS, or of an Event that expired (404), starts a new one."""

    def __init__(
        self, rt: Runtime, meta: Mapping[str, Any], post: PostEvent, now: datetime
    ) -> None:
        self.rt, self.post, self.now = rt, post, now
        self.uid, self.namespace = str(meta.get("uid", "")), str(meta.get("namespace", ""))

    def __call__(self, kind: str, reason: str, message: str) -> None:
        key = (self.uid, kind, reason, message)
        at = self.rt.monotonic()
        series = self.rt.recent_events.get(key)
        if series is None or at - series.posted >= EVENT_SERIES_SECONDS:
            self._prune(at)
            self.rt.recent_events[key] = EventSeries(self.post(kind, reason, message), 1, at)
            return
        series.count += 1
        if at - series.posted < EVENT_FOLD_SECONDS:
            return  # counted, written with the next repeat
        series.posted = at
        if series.name is not None:
            try:
                self.rt.kube.repeat_event(self.namespace, series.name, series.count, self.now)
                return
            except ApiException as e:
                if e.status != 404:
                    raise
        series.name, series.count = self.post(kind, reason, message), 1

    def _prune(self, at: float) -> None:
        if len(self.rt.recent_events) > 10000:
            cutoff = at - EVENT_SERIES_SECONDS
            for k in [k for k, v in self.rt.recent_events.items() if v.posted < cutoff]:
                del self.rt.recent_events[k]


def execute(
    rt: Runtime,
    spec: RolloutSpec,
    meta: Mapping[str, Any],
    view: View,
    obs: Observation,
    decision: Decision,
    events: list[act.EmitEvent],
) -> tuple[int, int] | None:
    """Apply the engine's writes in order; the (stable, canary) split written, if any. Events
    are collected into `events`, to be posted once every write and the status went through:
    an Event says what happened (a write refused in a terminating namespace posts none)."""
    name, namespace, uid = meta["name"], meta["namespace"], meta["uid"]
    written: tuple[int, int] | None = None
    for action in decision.actions:
        match action:
            case act.EnsureServices(names=names):
                for svc in services(spec, name, namespace, uid):
                    if not names or svc["metadata"]["name"] in names:
                        rt.kube.apply(svc)
            case act.ApplyCanary(revision=rev, replicas=n):
                _apply_deployment(rt, spec, meta, view, "canary", rev, n)
            case act.ApplyStable(revision=rev, replicas=n):
                _apply_deployment(rt, spec, meta, view, "stable", rev, n)
            case act.ScaleStable(replicas=n):
                rt.kube.scale(namespace, track_name(name, "stable"), n)
            case act.SetWeight(weight=w, header=header, mirror=mirror):
                written = _router(rt, spec, namespace, name).set_weight(w, header, mirror)
            case act.EmitEvent():
                events.append(action)
    return written


class NewerSpec(Exception):
    """The Rollout has spec fields this operator's models do not know."""


class UnknownTemplate(Exception):
    """A Deployment must be recreated with a revision whose template was not recorded."""


def _apply_deployment(
    rt: Runtime,
    spec: RolloutSpec,
    meta: Mapping[str, Any],
    view: View,
    track: str,
    revision: str,
    replicas: int,
) -> None:
    name, namespace, uid = meta["name"], meta["namespace"], meta["uid"]
    template = _template_of(spec, view, revision)
    if template is None:
        raise UnknownTemplate(
            f"the {track} track's revision {revision} has no recorded template "
            f"(ControllerRevision {name}-{revision} is missing): change spec.template to roll out"
        )
    if revision == template_hash(spec.template) and revision not in view.revisions:
        number = int(meta.get("generation") or 1)
        rt.kube.apply(controller_revision(spec, name, namespace, uid, revision, number))
    manifest = deployment(
        spec,
        name,
        namespace,
        uid,
        "stable" if track == "stable" else "canary",
        revision,
        replicas,
        template=dict(template),
    )
    stored = rt.kube.apply(manifest)
    generation = int(((stored or {}).get("metadata") or {}).get("generation") or 0)
    if generation:
        rt.applied_generation[(namespace, manifest["metadata"]["name"])] = generation


def _router(
    rt: Runtime, spec: RolloutSpec, namespace: str, name: str
) -> GatewayRouter | ReplicaRatioRouter:
    gw = spec.traffic_routing.gateway_api if spec.traffic_routing else None
    if gw is None:
        return ReplicaRatioRouter()
    return GatewayRouter(rt.kube, namespace, gw.http_route, name, gw.rule)


def _without_weights(decision: Decision) -> Decision:
    kept = [a for a in decision.actions if not isinstance(a, act.SetWeight)]
    return dataclasses.replace(decision, actions=kept)


def is_terminating(error: ApiException) -> bool:
    """The namespace is being deleted (403 on create) or the object is already gone."""
    body = str(getattr(error, "body", "") or "")
    return (error.status == 403 and "being terminated" in body) or error.status == 404
