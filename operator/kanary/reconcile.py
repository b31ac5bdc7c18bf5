"""One reconcile of one Rollout: what the watches show in, the engine's decision out, written.

No Kopf here (handlers.py wires this to Kopf's watches, indexes and wake-ups), so unit tests
drive it with a fake Kube. Every tick converges: the owned Deployments, Services and the two
route weights are compared with what the watches show and written only on a difference; a
converged Rollout makes zero API writes. The writes that could mix two decisions carry a
precondition (the status patch the resourceVersion read; consuming a manual action a JSON
patch `test` of its exact value).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from kanary import __version__, metrics_export
from kanary import actions as act
from kanary.analysis.metrics_source import GatewayClassSeen
from kanary.analysis.templating import template_errors
from kanary.engine import Decision, decide, template_hash
from kanary.engine.tick import header_in_force, mirror_in_force
from kanary.kube import Kube
from kanary.notify import text
from kanary.notify.alerts import raise_alerts
from kanary.notify.dispatch import Notifier
from kanary.notify.gates import ask_gate
from kanary.notify.model import Target
from kanary.objects import (
    ANNOTATION_ACTION,
    ANNOTATION_ACTION_ID,
    LABEL_REVISION,
    contains,
    controller_revision,
    deployment,
    service_drifted,
    services,
    track_name,
)
from kanary.observation import (
    MANUAL_ACTIONS,
    ManualAction,
    Observation,
    TrackState,
)
from kanary.podclock import PodClock
from kanary.readiness import readiness_figures
from kanary.reconcile_analysis import SourceFor, analyse, with_prometheus
from kanary.routers import RouteProblem, features, header_rules, mirror_filter
from kanary.routers.gateway import (
    GatewayRouter,
    find_rule,
    header_problem,
    split_of,
    steered_route,
    wanted_header_rule,
)
from kanary.routers.replica_ratio import ReplicaRatioRouter
from kanary.spec import GatewayAPIRouting, RolloutSpec
from kanary.status import RolloutStatus
from kanary.status_write import (
    COALESCE_SECONDS,
    Conflict,
    for_kubectl,
    invalid_status,
    observation_only,
    status_patch,
    with_reconcile_error,
    write_status,
)

__all__ = [
    "Conflict",
    "NewerSpec",
    "Runtime",
    "SeenDeployment",
    "Ticked",
    "UnknownTemplate",
    "View",
    "consume_action",
    "is_terminating",
    "reconcile",
    "seen_deployment",
    "status_patch",
    "with_reconcile_error",
]

log = logging.getLogger("kanary")

TERMINATING_SECONDS = 30.0
EVENT_FOLD_SECONDS = 60.0  # the same Event (reason and message) for one Rollout, at most this often
EVENT_SERIES_SECONDS = 3600.0  # a repeat within this (the API server's default Event TTL) counts

PostEvent = Callable[[str, str, str], str | None]  # (type, reason, message) -> the Event's name


@dataclasses.dataclass(frozen=True)
class SeenDeployment:
    """An owned Deployment as the watch shows it."""

    state: TrackState
    template: Mapping[str, Any]
    generation: int


@dataclasses.dataclass(frozen=True)
class View:
    """What the watch caches show of one Rollout's world this tick."""

    stable: SeenDeployment | None = None
    canary: SeenDeployment | None = None
    services: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    route: Mapping[str, Any] | None = None  # the HTTPRoute the spec names, if any
    revisions: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    # (namespace, name) -> spec of the AlertProviders the Rollout may use (watch index)
    alert_providers: Mapping[tuple[str, str], Mapping[str, Any]] = dataclasses.field(
        default_factory=dict
    )
    gateway_class: GatewayClassSeen | None = None  # behind the route's parent Gateway, if seen
    # the class behind a route read outside the watch (steered_route), from the same caches
    class_of_route: Callable[[Mapping[str, Any]], GatewayClassSeen | None] | None = None


@dataclasses.dataclass(frozen=True)
class Ticked:
    """What one tick left: the status (as written, or waiting to be: Runtime.unwritten) and the
    engine's next time-based turn (engine.Decision.recheck_at), for wakeups.next_tick."""

    status: RolloutStatus
    recheck_at: datetime | None


@dataclasses.dataclass
class EventSeries:
    """One Event object and how often it happened (count) as last written."""

    name: str | None  # None: the poster did not say (the Event is posted anew on a repeat)
    count: int
    posted: float  # monotonic: when it was last written


@dataclasses.dataclass
class Runtime:
    """Process-wide state: the client, the pod clock and a little memory of our own writes."""

    kube: Kube
    clock: PodClock = dataclasses.field(default_factory=PodClock)
    # (namespace, Deployment) -> the generation our last apply produced: a template that still
    # differs from ours at that generation is the API server's normalisation, not someone's edit.
    applied_generation: dict[tuple[str, str], int] = dataclasses.field(default_factory=dict)
    # (rollout uid, type, reason, message) -> the Event series that says it (_EventPoster)
    recent_events: dict[tuple[str, str, str, str], EventSeries] = dataclasses.field(
        default_factory=dict
    )
    monotonic: Callable[[], float] = time.monotonic
    # namespace -> when a write there was refused because it is being deleted
    terminating: dict[str, float] = dataclasses.field(default_factory=dict)
    notifier: Notifier | None = None  # alerts and gates; None: none are sent
    # rollout uid -> (gate type, revision, when) of the gate it last asked (notify.gates)
    gate_asked: dict[str, tuple[str, str, datetime]] = dataclasses.field(default_factory=dict)
    # rollout uid -> since when an observation-only status change waits to be written
    unwritten: dict[str, datetime] = dataclasses.field(default_factory=dict)

    def forget(self, namespace: str, name: str, uid: str) -> None:
        """The Rollout is gone: drop what this process remembered of it, so memory follows the
        Rollouts that exist."""
        for track in ("stable", "canary"):
            self.applied_generation.pop((namespace, track_name(name, track)), None)
        for key in [k for k in self.recent_events if k[0] == uid]:
            del self.recent_events[key]
        self.gate_asked.pop(uid, None)
        self.unwritten.pop(uid, None)
        self.clock.forget_rollout(namespace, name)  # its pods' DELETED events may be missed
        self.terminating = still_terminating(self.terminating, self.monotonic())
        if self.notifier is not None:
            self.notifier.forget(uid)

    def namespace_terminating(self, namespace: str) -> bool:
        """A write in `namespace` was refused as terminating in the last TERMINATING_SECONDS:
        its Rollouts are left alone (the namespace controller is deleting what they own)."""
        since = self.terminating.get(namespace)
        if since is None:
            return False
        if self.monotonic() - since < TERMINATING_SECONDS:
            return True
        del self.terminating[namespace]
        return False


def still_terminating(terminating: Mapping[str, float], now: float) -> dict[str, float]:
    """The namespaces whose refusal is recent (a deleted namespace is not asked about again)."""
    return {ns: at for ns, at in terminating.items() if now - at < TERMINATING_SECONDS}


def track_state(body: Mapping[str, Any]) -> TrackState:
    """TrackState of an owned Deployment body."""
    spec, status = body.get("spec") or {}, body.get("status") or {}
    meta = body.get("metadata") or {}
    template_labels = (spec.get("template") or {}).get("metadata", {}).get("labels") or {}
    replicas = int(spec.get("replicas", 1))
    ready = int(status.get("readyReplicas", 0) or 0)
    updated = int(status.get("updatedReplicas", 0) or 0)
    settled = (
        int(status.get("observedGeneration", 0) or 0) >= int(meta.get("generation", 0) or 0)
        and updated == replicas
        and ready == replicas
        and int(status.get("replicas", 0) or 0) == replicas
    )
    containers = (spec.get("template") or {}).get("spec", {}).get("containers") or []
    return TrackState(
        exists=True,
        images=",".join(str(c.get("image", "")) for c in containers),
        revision=template_labels.get(LABEL_REVISION),
        replicas=replicas,
        ready=ready if updated >= ready else updated,
        settled=settled,
    )


def seen_deployment(body: Mapping[str, Any]) -> SeenDeployment:
    spec = body.get("spec") or {}
    return SeenDeployment(
        state=track_state(body),
        template=spec.get("template") or {},
        generation=int((body.get("metadata") or {}).get("generation") or 0),
    )


# ---- the tick --------------------------------------------------------------------------------


def _with_unseen_route(kube: Kube, view: View, namespace: str, route_name: str) -> View:
    """The view with the route the watch has not sent (not labelled yet, or just labelled): read
    directly, and labelled so that the watch sends it from now on."""
    route = steered_route(kube, namespace, route_name)
    if route is None:
        return view
    seen_class = view.class_of_route(route) if view.class_of_route else view.gateway_class
    return dataclasses.replace(view, route=route, gateway_class=seen_class)


def reconcile(
    rt: Runtime,
    body: Mapping[str, Any],
    view: View,
    now: datetime,
    post_event: PostEvent,
    source_for: SourceFor,
    resolve_prometheus: Callable[[str | None], str] | None = None,
) -> Ticked | None:
    """The status this tick wrote (or found already written) and when the engine wants to look
    again; None for a Rollout being deleted, which is left alone."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    if meta.get("deletionTimestamp"):
        return None  # being deleted: the garbage collector removes what we own; leave it alone
    old_status = dict(body.get("status") or {})
    generation = int(meta.get("generation") or 0)
    events = _EventPoster(rt, meta, post_event, now)
    try:
        spec = RolloutSpec.model_validate(dict(body.get("spec") or {}))
    except ValidationError as e:
        unknown = [err for err in e.errors() if err["type"] == "extra_forbidden"]
        if unknown and len(unknown) == len(e.errors()):
            # The API server let them in, so the CRD knows them: it is newer than this
            # operator (an upgrade in progress, or the CRD applied first). Marking the Rollout
            # Invalid would roll back a canary in flight; change nothing instead.
            fields = ", ".join("spec." + ".".join(str(p) for p in err["loc"]) for err in unknown)
            raise NewerSpec(
                f"{fields}: not known to this operator ({__version__}); the CRD is newer than "
                "the operator: upgrade the operator. Nothing is changed until then"
            ) from e
        reason = "; ".join(
            f"spec.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        events("Warning", "Invalid", reason)
        refused = invalid_status(old_status, reason, generation)
        write_status(rt.kube, meta, old_status, refused)
        return Ticked(refused, None)

    annotations = meta.get("annotations") or {}
    manual, bad_action = manual_action(annotations)
    if bad_action:
        events("Warning", "UnknownAction", bad_action)
    current = RolloutStatus.model_validate(old_status)
    alert_template = spec.notifications.template if spec.notifications else None
    problems = [*template_errors(spec), *text.template_problems(alert_template or "")]
    invalid = "; ".join(problems) or None
    prometheus_url: str | None = None
    if invalid is None and spec.strategy.analysis is not None and resolve_prometheus is not None:
        try:
            prometheus_url = resolve_prometheus(spec.strategy.analysis.prometheus.url)
        except ValueError as e:
            invalid = str(e)
    gw = spec.traffic_routing.gateway_api if spec.traffic_routing else None
    if gw is not None and view.route is None:
        view = _with_unseen_route(rt.kube, view, namespace, gw.http_route)
    if invalid is None and gw is not None:
        invalid = header_route_problem(spec, view.route, gw, name)
        invalid = invalid or features.refusal(spec, view.gateway_class)
    obs = observe(rt, spec, current, view, namespace, name, now, generation)
    obs = dataclasses.replace(
        obs,
        invalid=invalid,
        manual=manual,
        manual_id=annotations.get(ANNOTATION_ACTION_ID),
    )
    # A person's request is applied at once: a tick that has one runs no analysis check (which
    # can take seconds), the next tick does.
    if invalid is None and manual is None and spec.strategy.analysis is not None:
        if prometheus_url is not None:
            spec = with_prometheus(spec, prometheus_url)
        obs = analyse(spec, current, obs, view.gateway_class, namespace, name, source_for)

    if invalid is None and manual is None:
        answer = ask_gate(
            rt.notifier, rt.gate_asked, spec, current, view.alert_providers, meta, now
        )
        obs = dataclasses.replace(obs, gate=answer)

    decision = decide(spec, current, obs)
    happened: list[act.EmitEvent] = []
    try:
        split = execute(rt, spec, meta, view, obs, decision, happened)
    except RouteProblem as problem:
        obs = dataclasses.replace(obs, route_problem=str(problem), route_split=None)
        decision = decide(spec, current, obs)
        happened = []
        split = execute(rt, spec, meta, view, obs, _without_weights(decision), happened)
    status = for_kubectl(decision.status, spec, obs)
    seen = split or obs.route_split  # the split as stored: written this tick, else watched
    if seen is not None:
        status = status.model_copy(update={"verified_weight": seen[1]})
    targets: tuple[Target, ...] = ()
    if rt.notifier is not None:
        resolved = rt.notifier.resolve(spec, namespace, view.alert_providers)
        targets = resolved.targets
        context = rt.notifier.context(str(meta.get("uid", "")), namespace, name, resolved, current)
        status, alert_events = raise_alerts(spec, current, status, context, now)
        happened.extend(alert_events)
    if not _waits(rt, str(meta.get("uid", "")), old_status, status, now):
        write_status(rt.kube, meta, old_status, status)
    for event in happened:
        events(event.type, event.reason, event.message)
    if rt.notifier is not None:
        rt.notifier.dispatch(str(meta.get("uid", "")), namespace, name, status, targets, now)
    if bad_action or manual:  # consumed only once the decision it caused is written
        consume_action(rt.kube, namespace, name, annotations)
    metrics_export.record_status(namespace, name, current, decision.status)
    return Ticked(status, decision.recheck_at)


def _waits(
    rt: Runtime, uid: str, old: Mapping[str, Any], new: RolloutStatus, now: datetime
) -> bool:
    """An observation-only status change (status_write.observation_only) waits to be written
    with the next decision, or until it has waited COALESCE_SECONDS; handlers wakes the Rollout
    by then (Runtime.unwritten)."""
    patch = status_patch(old, new)
    if patch and observation_only(old, patch):
        since = rt.unwritten.setdefault(uid, now)
        if (now - since).total_seconds() < COALESCE_SECONDS:
            return True
    rt.unwritten.pop(uid, None)
    return False


def observe(
    rt: Runtime,
    spec: RolloutSpec,
    current: RolloutStatus,
    view: View,
    namespace: str,
    name: str,
    now: datetime,
    generation: int,
) -> Observation:
    revision = template_hash(spec.template)
    since = current.rollout_started_at if current.stage == "Stepping" else None
    timings = rt.clock.timings(namespace, name, current.canary_revision or "")
    problem, split, header_drifted, mirror_drifted = None, None, False, False
    gw = spec.traffic_routing.gateway_api if spec.traffic_routing else None
    if gw is not None:
        found = find_rule(view.route, gw.http_route, name, gw.rule)
        if isinstance(found, str):
            problem = found
        elif view.route is not None:
            split = split_of(view.route, found)
            try:
                rule = wanted_header_rule(view.route, found, name, header_in_force(current))
                header_drifted = header_rules.drifted(view.route, rule, name)
            except RouteProblem:
                pass  # the Rollout is Invalid (header_route_problem)
            mirror = mirror_filter.wanted_filter(
                view.route, found.index, found.canary_ref, name, mirror_in_force(current)
            )
            mirror_drifted = mirror_filter.drifted(view.route, found.index, name, mirror)
    # selector, ports and labels are compared; the owner reference (uid) is not
    drifted = tuple(
        s["metadata"]["name"]
        for s in services(spec, name, namespace, uid="")
        if service_drifted(view.services.get(s["metadata"]["name"]), s)
    )
    return Observation(
        now=now,
        generation=generation,
        template_hash=revision,
        stable=_track(rt, spec, view, view.stable, namespace, track_name(name, "stable")),
        canary=_track(rt, spec, view, view.canary, namespace, track_name(name, "canary")),
        readiness=readiness_figures(
            [t for t in timings if since is None or t.created >= since], now
        ),
        route_problem=problem,
        route_split=split,
        header_rule_drifted=header_drifted,
        mirror_drifted=mirror_drifted,
        services_drifted=drifted,
        canary_trouble=rt.clock.trouble(namespace, name, current.canary_revision or ""),
    )


def header_route_problem(
    spec: RolloutSpec, route: Mapping[str, Any] | None, gw: GatewayAPIRouting, name: str
) -> str | None:
    """Why a setHeaderRoute of the spec cannot be added to the user's route as it is now (a
    header its rule already matches, no room): the Rollout is Invalid, naming the step."""
    found = find_rule(route, gw.http_route, name, gw.rule)
    if isinstance(found, str) or route is None:
        return None  # a route problem, reported as such
    return header_problem(route, found, name, spec.strategy.plan())


def _track(
    rt: Runtime,
    spec: RolloutSpec,
    view: View,
    seen: SeenDeployment | None,
    namespace: str,
    deployment_name: str,
) -> TrackState:
    if seen is None:
        return TrackState()
    wanted = _template_of(spec, view, seen.state.revision)
    ours = rt.applied_generation.get((namespace, deployment_name))
    drifted = (
        wanted is not None
        and ours != seen.generation
        and not contains(seen.template.get("spec"), wanted.get("spec"))
    )
    return dataclasses.replace(seen.state, drifted=drifted)


def _template_of(spec: RolloutSpec, view: View, revision: str | None) -> Mapping[str, Any] | None:
    """The pod template kanary applies for `revision`: the spec's, or the one recorded."""
    if revision is None:
        return None
    if revision == template_hash(spec.template):
        return spec.template.model_dump(by_alias=True)
    return view.revisions.get(revision)


def manual_action(annotations: Mapping[str, str]) -> tuple[ManualAction | None, str | None]:
    raw = annotations.get(ANNOTATION_ACTION)
    if raw is None:
        return None, None
    for action in MANUAL_ACTIONS:
        if raw == action:
            return action, None
    return None, f"unknown {ANNOTATION_ACTION} {raw!r}: use one of {', '.join(MANUAL_ACTIONS)}"


def consume_action(kube: Kube, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
    """Remove exactly the request this tick saw: a newer one written meanwhile stays (422)."""
    ops: list[dict[str, Any]] = []
    for key in (ANNOTATION_ACTION, ANNOTATION_ACTION_ID):
        if key in annotations:
            path = "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")
            ops.append({"op": "test", "path": path, "value": annotations[key]})
            ops.append({"op": "remove", "path": path})
    if not ops:
        return
    try:
        kube.json_patch_rollout(namespace, name, ops)
    except ApiException as e:
        if e.status != 422:
            raise
        log.info("rollout %s/%s: a new action arrived during the tick; it is next", namespace, name)


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
