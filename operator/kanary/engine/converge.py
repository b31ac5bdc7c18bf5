"""The level-triggered part: canary availability, route weights, Services and the two
Deployments are compared with what was observed every tick and written back when they differ."""

from __future__ import annotations

from datetime import timedelta

from kanary import canary_math
from kanary.actions import ApplyCanary, ApplyStable, EnsureServices, ScaleStable, SetWeight
from kanary.engine.rollback import _roll_back, _scale_down_time
from kanary.engine.steps import _canary_takes_all_first
from kanary.engine.tick import (
    _canary_pods_for,
    _Tick,
    _written_pods,
    header_in_force,
    mirror_in_force,
    takes_traffic,
)
from kanary.observation import TrackState
from kanary.spec import HeaderRoute
from kanary.status import RolloutStatus

# ---- canary availability, route weights and Services, level-triggered -------------------------


def _watch_canary(tick: _Tick) -> None:
    """A canary with traffic and no Ready pod (never Ready, or Ready once and not any more)
    loses its traffic at once, gets it back when a pod is Ready again, and is rolled back
    (CanaryUnavailable) when none is Ready for unavailableGraceSeconds."""
    status = tick.status
    if status.stage not in ("Stepping", "Promoting") or not takes_traffic(status):
        if status.canary_unavailable_since is not None:
            tick.update(canary_unavailable_since=None)
        return
    canary = tick.obs.canary
    ready = canary.ready if canary.exists and canary.revision == status.canary_revision else 0
    since = status.canary_unavailable_since
    grace = tick.spec.strategy.unavailable_grace_seconds
    if ready > 0:
        if since is not None:
            tick.update(canary_unavailable_since=None, weight_set_at=tick.now)
            tick.act(SetWeight(status.canary_weight))
            tick.event(
                "CanaryAvailable",
                f"{tick.label()}: canary pods Ready again: {_routing(status)} restored",
            )
        return
    if since is None:
        tick.update(canary_unavailable_since=tick.now)
        tick.act(SetWeight(0))
        tick.event(
            "CanaryUnavailable",
            f"{tick.label()}: no Ready canary pod: weight 0%{_no_header(status)} until one is "
            f"Ready (rollback after {grace}s)",
            warning=True,
        )
        since = tick.now
    tick.recheck(since + timedelta(seconds=grace))
    if (tick.now - since).total_seconds() >= grace:
        why = f"no Ready canary pod for {grace}s"
        if tick.obs.canary_trouble:
            why += f"; {tick.obs.canary_trouble}"
        _roll_back(tick, "CanaryUnavailable", why)


def _wanted_weight(tick: _Tick) -> int:
    """The canary weight the route must hold now: the one in force, or 0 while no canary pod
    is Ready."""
    if tick.status.canary_unavailable_since is not None:
        return 0
    return tick.status.canary_weight


def _routing(status: RolloutStatus) -> str:
    text = f"weight {status.canary_weight}%"
    if status.header_route is not None:
        text += f" and header route {status.header_route.describe()}"
    if status.mirror_percent is not None:
        text += f" and mirror {status.mirror_percent}%"
    return text


def _no_header(status: RolloutStatus) -> str:
    parts = [
        name
        for name, on in (("header route", status.header_route), ("mirror", status.mirror_percent))
        if on is not None
    ]
    return f", no {' or '.join(parts)}" if parts else ""


def _converge_weight(tick: _Tick) -> None:
    """Set and verify, every tick: a route whose weights or header rule differ from kanary's
    (re-applied by GitOps, edited by hand) is written back, unless this tick already writes
    the route; a header route or mirror this tick changed without a write is written here."""
    if tick.ratio_mode or tick.obs.route_problem or tick.status.stage in (None, "Creating"):
        return
    if any(isinstance(a, SetWeight) for a in tick.actions):
        return
    seen, wanted = tick.obs.route_split, _wanted_weight(tick)
    header, mirror = _routing_in_force(tick.status)
    if (header, mirror) != _routing_in_force(tick.incoming):
        tick.act(SetWeight(wanted))
        return
    if seen is not None and seen != (100 - wanted, wanted):
        drift = (
            "WeightRestored",
            f"the route held stable {seen[0]} / canary {seen[1]}, kanary's split is "
            f"{100 - wanted} / {wanted}",
        )
    elif tick.obs.header_rule_drifted:
        kanarys = header.describe() if header is not None else "none"
        drift = (
            "HeaderRouteRestored",
            f"the route's header rule was missing, changed or stale, kanary's is {kanarys}",
        )
    elif tick.obs.mirror_drifted:
        kanarys = f"{mirror}%" if mirror is not None else "none"
        drift = (
            "MirrorRestored",
            f"the owned rule's mirror filter was missing or changed, kanary's is {kanarys}",
        )
    else:
        return
    tick.act(SetWeight(wanted))
    tick.event(drift[0], f"{drift[1]}: written back", warning=True)


def _routing_in_force(status: RolloutStatus) -> tuple[HeaderRoute | None, int | None]:
    return header_in_force(status), mirror_in_force(status)


def _with_header(tick: _Tick) -> None:
    """Every route write carries the header route and the mirror the decided status holds."""
    header, mirror = _routing_in_force(tick.status)
    tick.actions = [
        SetWeight(a.weight, header, mirror) if isinstance(a, SetWeight) else a for a in tick.actions
    ]


def _converge_services(tick: _Tick) -> None:
    """The Services kanary owns, created or repaired whenever the watch shows them missing or
    changed; only a repair after creation is news for on-call."""
    names = tick.obs.services_drifted
    if not names or tick.status.stage is None:
        return
    tick.act(EnsureServices(names=tuple(names)))
    if tick.incoming.stage in (None, "Creating"):
        return
    tick.event(
        "ServiceRestored",
        f"Service {', '.join(names)} missing or changed outside kanary: restored",
        warning=True,
    )


def _note_route_problem(tick: _Tick) -> None:
    """A route problem is kept in status; it is announced (Warning RouteProblem, then
    RouteFixed) once the Rollout exists: while it is being created, a route applied with it
    may not have reached the watch yet, and a route that never comes is named by the progress
    deadline."""
    problem = tick.obs.route_problem
    if problem == tick.status.route_problem:
        return
    tick.update(route_problem=problem)
    creating = tick.incoming.stage in (None, "Creating")
    if problem is not None:
        if not creating:
            tick.event(
                "RouteProblem", f"{problem}: traffic weights cannot be written", warning=True
            )
        return
    if not creating:
        tick.event("RouteFixed", "route references both tracks again")
    _rewrite_weight(tick)


def _rewrite_weight(tick: _Tick) -> None:
    """A weight due while the route was broken (a rollback's 0) may be unwritten: write the one
    in force again, and give the canary its drain time from now before it is scaled down."""
    if tick.status.stage in (None, "Creating"):
        return  # no weight written yet; the stable track may not be Ready to take it all
    tick.act(SetWeight(tick.status.canary_weight))
    due = tick.status.scale_down_at
    if due is not None:
        tick.update(scale_down_at=max(due, _scale_down_time(tick)))


# ---- Deployments, level-triggered --------------------------------------------------------------


def _converge_tracks(tick: _Tick) -> None:
    match tick.status.stage:
        case "Creating":
            _ensure_stable(tick, tick.obs.template_hash)
        case "Steady":
            _keep_stable(tick)
            _scale_canary_down(tick)
        case "Stepping":
            _ensure_step_canary(tick)
            _scale_stable(tick, _stable_replicas_in_step(tick))
        case "Promoting":
            revision = tick.status.canary_revision or tick.obs.template_hash
            if _canary_takes_all_first(tick):
                _ensure_canary(tick, revision, tick.replicas)
                _scale_stable(tick, tick.replicas)
            else:
                _ensure_stable(tick, revision)
        case "Aborted":
            _scale_stable(tick, tick.replicas)
            _scale_canary_down(tick)
        case None:
            pass


def _ensure_stable(tick: _Tick, revision: str) -> None:
    stable = tick.obs.stable
    wanted = (True, revision, tick.replicas)
    if (stable.exists, stable.revision, stable.replicas) != wanted or stable.drifted:
        _note_missing(tick, "stable", stable)
        tick.act(ApplyStable(revision=revision, replicas=tick.replicas))


def _ensure_canary(tick: _Tick, revision: str, replicas: int) -> None:
    canary = tick.obs.canary
    wanted = (True, revision, replicas)
    if (canary.exists, canary.revision, canary.replicas) != wanted or canary.drifted:
        _note_missing(tick, "canary", canary)
        tick.act(ApplyCanary(revision=revision, replicas=replicas))


def _note_missing(tick: _Tick, track: str, state: TrackState) -> None:
    """A Deployment kanary made is gone or was edited: say so (the write repairs it). A canary
    about to be created for a rollout that starts this tick is not missing."""
    if not state.exists:
        if not tick.moved and tick.incoming.stage not in (None, "Creating"):
            tick.event(
                f"{track.capitalize()}Missing",
                f"{track} Deployment is gone: recreating it",
                warning=True,
            )
    elif state.drifted:
        tick.event(
            f"{track.capitalize()}Drifted",
            f"{track} Deployment was changed outside kanary: restoring its template",
            warning=True,
        )


def _keep_stable(tick: _Tick) -> None:
    """Healthy: a stable Deployment deleted or edited by hand gets its template back; a
    replicas change in the spec is only a scale."""
    _scale_stable(tick, tick.replicas)


def _scale_stable(tick: _Tick, replicas: int) -> None:
    """The stable track at `replicas`, on its own revision: recreated if it was deleted,
    re-templated if it was edited, else only scaled."""
    stable = tick.obs.stable
    revision = tick.status.stable_revision
    if revision and (not stable.exists or stable.revision != revision or stable.drifted):
        _note_missing(tick, "stable", stable)
        tick.act(ApplyStable(revision=revision, replicas=replicas))
    elif stable.exists and stable.replicas != replicas:
        tick.act(ScaleStable(replicas=replicas))


def _ensure_step_canary(tick: _Tick) -> None:
    revision = tick.status.canary_revision or tick.obs.template_hash
    weight = canary_math.weight_through(tick.steps, tick.step_index)
    gate = tick.status.gate
    if tick.ratio_mode and gate is not None and gate.type == "pre-rollout":
        weight = 0  # replica-ratio: canary pods are its traffic, so none before the gate says so
    _ensure_canary(tick, revision, _canary_pods_for(tick, weight))


def _stable_replicas_in_step(tick: _Tick) -> int:
    if not tick.ratio_mode:
        return tick.replicas  # full capacity until promotion, so a rollback is one weight write
    return tick.replicas - _written_pods(tick)


def _scale_canary_down(tick: _Tick) -> None:
    canary = tick.obs.canary
    if tick.status.scale_down_at is None and canary.exists and canary.replicas > 0:
        tick.act(ApplyCanary(revision=tick.obs.template_hash, replicas=0))
