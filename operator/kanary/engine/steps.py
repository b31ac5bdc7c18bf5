"""The stages and their steps: creating, steady, stepping (setWeight, setHeaderRoute, setMirror
and pause steps), advancing, promotion; plus template changes (supersede). Counted analysis
checks and canary readiness are in judging.py, rollback in rollback.py."""

from __future__ import annotations

from typing import Any

from kanary import canary_math
from kanary.actions import SetWeight
from kanary.engine.gates import _gate_holds
from kanary.engine.judging import _analysis_allows_advance, _readiness_violation, _take_readiness
from kanary.engine.rollback import _roll_back, _scale_down_if_due, _scale_down_time
from kanary.engine.tick import (
    _canary_pods_for,
    _pause_reason_of,
    _Tick,
    _track_ready,
    takes_traffic,
)
from kanary.spec import HeaderRoute
from kanary.status import AnalysisStatus, ReadinessStatus

# ---- template changes --------------------------------------------------------------------------


def _follow_template(tick: _Tick) -> None:
    wanted = tick.obs.template_hash
    status = tick.status
    match status.stage:
        case "Steady" if wanted != status.stable_revision:
            _start_rollout(tick)
        case "Stepping" if wanted != status.canary_revision:
            _supersede(tick)
        case "Promoting" if wanted != status.canary_revision:
            _supersede_promotion(tick)
        case "Aborted" if wanted != status.canary_revision:
            if wanted == status.stable_revision:
                _back_to_stable(tick)
            else:
                _start_rollout(tick)
        case _:
            pass


def _supersede(tick: _Tick) -> None:
    """A new template mid-rollout: traffic off the old canary, then the new one from step 0."""
    old = tick.status.canary_revision
    wanted = tick.obs.template_hash
    reverted = wanted == tick.status.stable_revision
    why = "template reverted to the stable revision" if reverted else f"new template {wanted}"
    tick.record("Superseded", why)
    if takes_traffic(tick.status):
        tick.act(SetWeight(0))
    tick.event("Superseded", f"rollout of {old} stopped at {tick.label()}: {why}")
    if reverted:
        tick.update(scale_down_at=_scale_down_time(tick))
        _enter_steady(tick)
        _scale_down_if_due(tick)
    else:
        _start_rollout(tick)


def _supersede_promotion(tick: _Tick) -> None:
    """The stable Deployment already has the promoted template: it is the new stable revision."""
    promoted = tick.status.canary_revision
    tick.record("Superseded", f"new template {tick.obs.template_hash} during promotion")
    tick.act(SetWeight(0))
    tick.event("Superseded", f"promotion of {promoted} superseded by a new template")
    tick.update(stable_revision=promoted)
    _start_rollout(tick)


def _back_to_stable(tick: _Tick) -> None:
    tick.event("Reverted", f"template is back to the stable revision {tick.status.stable_revision}")
    _enter_steady(tick)


# ---- stages ------------------------------------------------------------------------------------


def _run_stage(tick: _Tick) -> None:
    if tick.moved:
        return
    match tick.status.stage:
        case None | "Creating":
            _creating(tick)
        case "Steady":
            _steady(tick)
        case "Stepping":
            _stepping(tick)
        case "Promoting":
            _promoting(tick)
        case "Aborted":
            _take_readiness(tick)  # a pod rolled back for being late still shows when it made it
            _scale_down_if_due(tick)


def _creating(tick: _Tick) -> None:
    if tick.status.stage is None and tick.obs.stable.exists and tick.obs.stable.revision:
        _adopt(tick, tick.obs.stable.revision)
        return
    wanted = tick.obs.template_hash
    if tick.status.stage is None:
        _enter_creating(tick)
    tick.update(stable_revision=wanted)  # follows template edits until the first one is Ready
    if _track_ready(tick.obs.stable, wanted, tick.replicas) and not tick.obs.route_problem:
        tick.act(SetWeight(0))
        tick.event("Available", f"stable track {wanted} Ready with {tick.replicas} pods")
        _enter_steady(tick)


def _enter_creating(tick: _Tick) -> None:
    tick.update(
        stage="Creating",
        stable_revision=tick.obs.template_hash,
        step_started_at=tick.now,
        rollout_started_at=tick.now,
    )
    tick.event("Creating", f"creating stable track {tick.obs.template_hash}, {tick.replicas} pods")


def _adopt(tick: _Tick, running: str) -> None:
    """No progress recorded but a stable track exists: trust what runs, start over from there."""
    tick.update(stable_revision=running)
    if not tick.obs.route_problem:
        tick.act(SetWeight(0))
    tick.event("Adopted", f"stable track runs revision {running}")
    _enter_steady(tick)
    if tick.obs.template_hash != running:
        _start_rollout(tick)


def _steady(tick: _Tick) -> None:
    _scale_down_if_due(tick)


def _enter_steady(tick: _Tick) -> None:
    tick.moved = True
    tick.update(
        stage="Steady",
        canary_revision=None,
        canary_weight=0,
        header_route=None,
        mirror_percent=None,
        current_step_index=None,
        step_started_at=None,
        pause_reason=None,
        gate=None,
    )


def _stepping(tick: _Tick) -> None:
    if tick.continuing_rollout():
        _take_readiness(tick)
        violation = _readiness_violation(tick)
        if violation is not None:
            _roll_back(tick, "PodReadyTooSlow", violation)
            return
    if tick.status.pause_reason in ("User", "Inconclusive"):
        return
    if tick.step_index >= len(tick.steps):
        _start_promotion(tick, "the steps were shortened past the current one")
        return
    step = tick.step()
    if step.set_weight is not None:
        _weight_step(tick, step.set_weight)
    elif step.set_header_route is not None:
        _header_step(tick, step.set_header_route)
    elif step.set_mirror is not None:
        _mirror_step(tick, step.set_mirror.percent)
    elif step.pause is not None and step.pause.seconds() is not None:
        _timed_pause_step(tick, step.pause.seconds() or 0.0)


def _weight_step(tick: _Tick, weight: int) -> None:
    if not takes_traffic(tick.status) and _gate_holds(tick, "pre-rollout"):
        return
    wanted = _canary_pods_for(tick, weight)
    if not _canary_ready_in_time(tick, wanted) or tick.obs.route_problem:
        return
    written = _weight_to_write(tick, weight, wanted)
    if written != tick.status.canary_weight:
        tick.act(SetWeight(written))
        tick.update(canary_weight=written, weight_set_at=tick.now)
        if tick.spec.strategy.analysis is None:
            # advances in this same tick: one Event says both (fewer writes per step)
            _advance(tick, f"canary weight {written}% ({tick.label()} done)")
            return
        tick.event("WeightSet", f"{tick.label()}: canary weight {written}%")
        return  # judged on checks whose window began after this write
    if _analysis_allows_advance(tick):
        _advance(tick)


def _canary_ready_in_time(tick: _Tick, wanted: int) -> bool:
    """The canary has `wanted` Ready pods of its revision; if not, and the step has run for
    progressDeadlineSeconds, it is rolled back."""
    if _track_ready(tick.obs.canary, tick.status.canary_revision, wanted):
        return True
    deadline = tick.spec.strategy.progress_deadline_seconds
    if tick.in_step_for(deadline):
        ready = min(tick.obs.canary.ready, wanted)
        why = f"progress deadline: canary not Ready after {deadline}s ({ready}/{wanted} pods Ready)"
        if tick.obs.canary_trouble:
            why += f"; {tick.obs.canary_trouble}"
        _roll_back(tick, "ProgressDeadlineExceeded", why)
    return False


def _header_step(tick: _Tick, step: HeaderRoute) -> None:
    """setHeaderRoute: requests with the headers go to the canary (no match: the header route
    is removed)."""
    wanted = step if step.match else None
    if wanted is None:
        text = "header route removed"
    else:
        text = f"requests with {wanted.describe()} go to the canary"
    # blue-green's first step waits for the preview Ready at full size, header or not
    _route_step(tick, wanted is not None or tick.blue_green, text, header_route=wanted)


def _mirror_step(tick: _Tick, percent: int) -> None:
    """setMirror: a copy of `percent`% of the owned rule's requests goes to the canary, whose
    answers the gateway throws away (0: the mirror is removed)."""
    wanted = percent or None
    text = f"{percent}% of requests mirrored to the canary" if wanted else "mirror removed"
    _route_step(tick, wanted is not None, text, mirror_percent=wanted)


def _route_step(tick: _Tick, needs_pods: bool, text: str, **routing: Any) -> None:
    """A step that changes what the route sends the canary besides the weight: once the canary
    has its Ready pods, the status takes `routing` and the route write carries it (SetWeight's
    header and mirror); with analysis, the step ends on a passing check taken after that
    write, as a weight step does."""
    if needs_pods:
        if not takes_traffic(tick.status) and _gate_holds(tick, "pre-rollout"):
            return
        weight = canary_math.weight_through(tick.steps, tick.step_index)
        if not _canary_ready_in_time(tick, _canary_pods_for(tick, weight)):
            return
    if tick.obs.route_problem:
        return
    if any(getattr(tick.status, k) != v for k, v in routing.items()):
        tick.update(**routing, weight_set_at=tick.now)
        tick.act(SetWeight(tick.status.canary_weight))
        # blue-green's preview step ends at once: the wait for promotion that follows is
        # where its analysis holds (and `kanary promote` needs nothing before it)
        if tick.spec.strategy.analysis is None or not takes_traffic(tick.status) or tick.blue_green:
            _advance(tick, f"{text} ({tick.label()} done)")
            return
        tick.event("RouteSet", f"{tick.label()}: {text}")
        return
    if tick.blue_green or _analysis_allows_advance(tick):
        _advance(tick)


def _weight_to_write(tick: _Tick, weight: int, pods: int) -> int:
    """Gateway: the step's weight (never below the one written); replica-ratio: the pod share."""
    if tick.ratio_mode:
        return canary_math.ratio_percent(pods, tick.replicas - pods)
    return max(weight, tick.status.canary_weight)


def _timed_pause_step(tick: _Tick, seconds: float) -> None:
    if tick.in_step_for(seconds) and _analysis_allows_advance(tick):
        _advance(tick)


def _advance(tick: _Tick, done: str | None = None) -> None:
    """Enter the next step (or promotion); `done` says what the step just left did, in the
    same Event as the announcement."""
    following = tick.step_index + 1
    if following >= len(tick.steps):
        if _gate_holds(tick, "confirm-promotion"):
            return
        _start_promotion(tick, "all steps done" + (f"; {done}" if done else ""))
        return
    step = tick.steps[following]
    tick.moved = True
    tick.update(
        current_step_index=following,
        step_started_at=tick.now,
        pause_reason=_pause_reason_of(step),
    )
    _announce_step(tick, done)


def _step_text(tick: _Tick) -> str:
    step = tick.step()
    text = f"{tick.label()}: {canary_math.describe_step(step)}"
    if step.set_weight is not None:
        pods = _canary_pods_for(tick, step.set_weight)
        text += f" ({pods} canary pod{'' if pods == 1 else 's'})"
    return text


def _announce_step(tick: _Tick, done: str | None = None) -> None:
    step = tick.step()
    text = _step_text(tick) + (f"; {done}" if done else "")
    if step.pause is not None and step.pause.duration is None:
        tick.event("Paused", f"{text}: `kanary promote` to continue")
    else:
        tick.event("Step", text)


def _start_rollout(tick: _Tick) -> None:
    revision = tick.obs.template_hash
    first = tick.steps[0]
    tick.moved = True
    tick.update(
        stage="Stepping",
        canary_revision=revision,
        current_step_index=0,
        canary_weight=0,
        header_route=None,
        mirror_percent=None,
        step_started_at=tick.now,
        rollout_started_at=tick.now,
        pause_reason=_pause_reason_of(first),
        scale_down_at=None,
        weight_set_at=None,
        canary_unavailable_since=None,
        analysis=AnalysisStatus(),
        readiness=ReadinessStatus(),
        gate=None,
    )
    images = ", ".join(tick.spec.template.images())
    started = (
        f"rollout of {revision} ({images}) started: {len(tick.steps)} steps, "
        f"stable {tick.status.stable_revision}"
    )
    if first.pause is not None and first.pause.duration is None:
        tick.event("RolloutStarted", started)
        _announce_step(tick)  # Paused: on-call must see it as such
    else:
        tick.event("RolloutStarted", f"{started}; {_step_text(tick)}")


def _canary_takes_all_first(tick: _Tick) -> bool:
    """Gateway mode: stable keeps the old template until the canary has carried 100% since an
    earlier tick, so it is never re-templated while it carries traffic (promote --full at 5%)."""
    return not tick.ratio_mode and tick.incoming.canary_weight < 100


def _start_promotion(tick: _Tick, why: str) -> None:
    tick.moved = True
    tick.update(
        stage="Promoting",
        current_step_index=len(tick.steps),
        step_started_at=tick.now,
        pause_reason=None,
        gate=None,
    )
    revision = tick.status.canary_revision
    tick.event("Promoting", f"promoting {revision} ({why}): stable track takes the new template")


def _promoting(tick: _Tick) -> None:
    revision = tick.status.canary_revision
    if _canary_takes_all_first(tick):
        if _track_ready(tick.obs.canary, revision, tick.replicas) and not tick.obs.route_problem:
            tick.act(SetWeight(100))
            tick.update(canary_weight=100, weight_set_at=tick.now)
            tick.event("WeightSet", "promotion: canary weight 100% before stable is re-templated")
        return
    if not _track_ready(tick.obs.stable, revision, tick.replicas) or tick.obs.route_problem:
        return
    tick.act(SetWeight(0))
    tick.record("Promoted", "")
    tick.event("Promoted", f"{revision} promoted: stable track Ready, 100% of traffic")
    tick.update(
        stable_revision=revision,
        scale_down_at=_scale_down_time(tick, tick.spec.strategy.scale_down_delay_seconds),
    )
    _enter_steady(tick)
    _scale_down_if_due(tick)
