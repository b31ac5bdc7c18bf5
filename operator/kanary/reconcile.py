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
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from kanary import __version__, metrics_export
from kanary import actions as act
from kanary.analysis.templating import template_errors
from kanary.engine import decide, template_hash
from kanary.engine.tick import header_in_force, mirror_in_force
from kanary.kube import Kube
from kanary.notify import text
from kanary.notify.alerts import raise_alerts
from kanary.notify.gates import ask_gate
from kanary.notify.model import Target
from kanary.objects import (
    ANNOTATION_ACTION,
    ANNOTATION_ACTION_ID,
    Track,
    contains,
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
from kanary.readiness import readiness_figures
from kanary.reconcile_analysis import SourceFor, analyse, with_prometheus
from kanary.reconcile_state import (
    PostEvent,
    Runtime,
    SeenDeployment,
    Ticked,
    View,
    _template_of,
    seen_deployment,
)
from kanary.reconcile_writes import (
    NewerSpec,
    UnknownTemplate,
    _EventPoster,
    _without_weights,
    execute,
    is_terminating,
)
from kanary.routers import RouteProblem, features, header_rules, mirror_filter
from kanary.routers.gateway import (
    find_rule,
    header_problem,
    split_of,
    steered_route,
    wanted_header_rule,
)
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


# ---- the tick --------------------------------------------------------------------------------


def _with_unseen_route(
    rt: Runtime, view: View, namespace: str, route_name: str, label: bool
) -> View:
    """The view with the route the watch has not sent (not labelled yet, or just labelled): read
    directly, and labelled (`label`: the Rollout is valid) so that the watch sends it from now
    on. A route found missing is read again ROUTE_ABSENT_SECONDS later, not every tick."""
    if not rt.may_read_route(namespace, route_name):
        return view
    route = steered_route(rt.kube, namespace, route_name, label)
    rt.route_read(namespace, route_name, route is not None)
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
        view = _with_unseen_route(rt, view, namespace, gw.http_route, label=invalid is None)
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
    patch = status_patch(old_status, status)
    if not _waits(rt, str(meta.get("uid", "")), old_status, patch, now):
        write_status(rt.kube, meta, old_status, status, patch)
    for event in happened:
        events(event.type, event.reason, event.message)
    if rt.notifier is not None:
        rt.notifier.dispatch(str(meta.get("uid", "")), namespace, name, status, targets, now)
    if bad_action or manual:  # consumed only once the decision it caused is written
        consume_action(rt.kube, namespace, name, annotations)
    metrics_export.record_status(namespace, name, current, decision.status)
    return Ticked(status, decision.recheck_at, spec.strategy.analysis)


def _waits(
    rt: Runtime, uid: str, old: Mapping[str, Any], patch: dict[str, Any], now: datetime
) -> bool:
    """An observation-only status change (status_write.observation_only) waits to be written
    with the next decision, or until it has waited COALESCE_SECONDS; handlers wakes the Rollout
    by then (Runtime.unwritten)."""
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
        stable=_track_with_pods(rt, spec, view, "stable", namespace, name),
        canary=_track_with_pods(rt, spec, view, "canary", namespace, name),
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


def _track_with_pods(
    rt: Runtime, spec: RolloutSpec, view: View, track: Track, namespace: str, name: str
) -> TrackState:
    """A track's Deployment, settled as soon as its pods are (the pod watch is a pass of the
    controller-manager ahead of the Deployment's status)."""
    seen = view.canary if track == "canary" else view.stable
    state = _track(rt, spec, view, seen, namespace, track_name(name, track))
    return rt.with_pods(state, namespace, name, track)


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
