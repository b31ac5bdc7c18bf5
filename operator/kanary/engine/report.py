"""What the status says: the phase, the conditions and the one-line message."""

from __future__ import annotations

from datetime import timedelta

from kanary import canary_math
from kanary.engine.gates import _waiting_text
from kanary.engine.tick import (
    _canary_pods_for,
    _clock,
    _condition,
    _phase_of,
    _put_condition,
    _Tick,
    _track_ready,
    takes_traffic,
)
from kanary.observation import TrackState
from kanary.spec import Phase
from kanary.status import ConditionType, PauseReason, RolloutStatus

# ---- phase, conditions, message ----------------------------------------------------------------


def _finish(tick: _Tick) -> None:
    """Phase, conditions and message; a ReconcileError from a failed tick is cleared by this
    one, which got as far as deciding (the I/O layer records it again if the writes fail)."""
    kept = [c for c in tick.status.conditions if c.type != "ReconcileError"]
    if len(kept) != len(tick.status.conditions):
        tick.update(conditions=kept)
    phase = _phase_of(tick.status)
    tick.update(phase=phase)
    _set_conditions(tick, phase)
    tick.update(message=_message(tick))


def _stalled(tick: _Tick) -> bool:
    """Creating or promoting past the deadline: nothing to roll back to, so it is only reported."""
    if tick.status.stage not in ("Creating", "Promoting"):
        return False
    return tick.in_step_for(tick.spec.strategy.progress_deadline_seconds)


def _set_conditions(tick: _Tick, phase: Phase | None) -> None:
    was_stalled = _condition(tick.incoming, "Progressing")
    wanted = [
        _available(tick),
        _progressing(tick, phase),
        _paused(tick, phase),
        _completed(tick, phase),
        _rolled_back(tick, phase),
    ]
    for kind, ok, reason, message in wanted:
        _put_condition(tick, kind, ok, reason, message)
    now_stalled = _condition(tick.status, "Progressing")
    stall = "ProgressDeadlineExceeded"
    newly_stalled = was_stalled is None or was_stalled.reason != stall
    if now_stalled is not None and now_stalled.reason == stall and newly_stalled:
        tick.event(stall, now_stalled.message, warning=True)


_ConditionWish = tuple[ConditionType, bool, str, str]


def _available(tick: _Tick) -> _ConditionWish:
    stable, canary = tick.obs.stable, tick.obs.canary
    serving = stable.ready > 0 or (takes_traffic(tick.status) and canary.ready > 0)
    message = f"stable {stable.ready}/{stable.replicas} pods Ready"
    return ("Available", serving, "PodsReady" if serving else "NoReadyPods", message)


def _progressing(tick: _Tick, phase: Phase | None) -> _ConditionWish:
    stage = tick.status.stage or "Pending"
    if _stalled(tick):
        track = tick.obs.stable
        what = "creation" if stage == "Creating" else "promotion"
        deadline = tick.spec.strategy.progress_deadline_seconds
        if tick.obs.route_problem and track.ready >= tick.replicas:
            message = f"{what}: blocked for {deadline}s by the route: {tick.obs.route_problem}"
        else:
            message = (
                f"{what}: stable track not Ready after {deadline}s ({track.ready}/{tick.replicas})"
            )
        return ("Progressing", False, "ProgressDeadlineExceeded", message)
    if phase == "Progressing":
        return ("Progressing", True, stage, "")
    return ("Progressing", False, phase or "Pending", "")


def _paused(tick: _Tick, phase: Phase | None) -> _ConditionWish:
    reasons: dict[PauseReason, str] = {
        "Step": "PauseStep",
        "User": "PausedByUser",
        "Inconclusive": "AnalysisInconclusive",
    }
    reason = tick.status.pause_reason
    if phase == "Paused" and reason is not None:
        return ("Paused", True, reasons[reason], _pause_text(tick))
    return ("Paused", False, "NotPaused", "")


def _completed(tick: _Tick, phase: Phase | None) -> _ConditionWish:
    status = tick.status
    done = phase == "Healthy" and tick.obs.template_hash == status.stable_revision
    if not done:
        return ("Completed", False, phase or "Pending", "")
    promoted = bool(status.history) and status.history[-1].outcome == "Promoted"
    return ("Completed", True, "Promoted" if promoted else "UpToDate", f"{status.stable_revision}")


def _rolled_back(tick: _Tick, phase: Phase | None) -> _ConditionWish:
    current = _condition(tick.status, "RolledBack")
    if tick.status.stage == "Aborted" and current is not None and current.status == "True":
        return ("RolledBack", True, current.reason, current.message)
    if tick.status.stage == "Aborted":
        return ("RolledBack", True, "RolledBack", _last_reason(tick.status))
    return ("RolledBack", False, phase or "Pending", "")


def _last_reason(status: RolloutStatus) -> str:
    return status.history[-1].reason if status.history else ""


# ---- the one-line message ----------------------------------------------------------------------


def _message(tick: _Tick) -> str:
    text = _stage_message(tick)
    if tick.obs.route_problem:
        text += f"; blocked: {tick.obs.route_problem}"
    return text


def _stage_message(tick: _Tick) -> str:
    status, obs = tick.status, tick.obs
    match status.stage:
        case "Creating":
            return f"creating stable track {status.stable_revision}: {_pods(obs.stable, tick)}"
        case "Steady":
            return f"healthy: {status.stable_revision}, {_pods(obs.stable, tick)}" + _pending(tick)
        case "Stepping":
            return _step_message(tick)
        case "Promoting":
            return (
                f"promoting {status.canary_revision}: stable {_pods(obs.stable, tick)}; "
                f"weight {status.canary_weight}%"
            )
        case "Aborted":
            rolled = _condition(status, "RolledBack")
            reason = rolled.message if rolled is not None else _last_reason(status)
            return f"rolled back: {reason}" + _pending(tick)
        case None:
            return status.message


def _pods(track: TrackState, tick: _Tick) -> str:
    return f"{track.ready}/{tick.replicas} pods Ready"


def _pending(tick: _Tick) -> str:
    due = tick.status.scale_down_at
    if due is None:
        return ""
    if tick.obs.route_problem:
        return "; canary scale-down waits for the route"
    return f"; canary scale-down at {_clock(due)}"


def _step_message(tick: _Tick) -> str:
    header, mirror = tick.status.header_route, tick.status.mirror_percent
    routing = f" + header route {header.describe()}" if header is not None else ""
    routing += f" + mirror {mirror}%" if mirror is not None else ""
    text = f"{tick.label()}: weight {tick.status.canary_weight}%{routing}; {_step_detail(tick)}"
    summary = tick.status.analysis.summary
    return f"{text}; {summary}" if summary else text


def _step_detail(tick: _Tick) -> str:
    unavailable = tick.status.canary_unavailable_since
    if unavailable is not None:
        grace = timedelta(seconds=tick.spec.strategy.unavailable_grace_seconds)
        rollback = _clock(unavailable + grace)
        return f"no Ready canary pod: weight 0% until one is, rollback at {rollback}"
    if tick.status.gate is not None:
        return _waiting_text(tick.status.gate)
    if tick.status.pause_reason is not None:
        return _pause_text(tick)
    # Times are absolute: a message that counts seconds would rewrite status on every tick.
    step = tick.step()
    started = tick.status.step_started_at or tick.now
    if step.set_weight is not None:
        wanted = _canary_pods_for(tick, step.set_weight)
        if _track_ready(tick.obs.canary, tick.status.canary_revision, wanted):
            return f"setWeight {step.set_weight}: canary Ready; {_weight_hold(tick)}"
        deadline = started + timedelta(seconds=tick.spec.strategy.progress_deadline_seconds)
        ready = min(tick.obs.canary.ready, wanted) if tick.obs.canary.revision else 0
        return (
            f"setWeight {step.set_weight}: waiting for canary pods "
            f"({ready}/{wanted} Ready, deadline {_clock(deadline)})"
        )
    if step.set_header_route is not None or step.set_mirror is not None:
        described = canary_math.describe_step(step)
        header = step.set_header_route
        written = (
            tick.status.header_route == (header if header.match else None)
            if header is not None
            else tick.status.mirror_percent
            == ((step.set_mirror.percent or None) if step.set_mirror else None)
        )
        if written:
            return f"{described}: written; {_weight_hold(tick)}"
        deadline = started + timedelta(seconds=tick.spec.strategy.progress_deadline_seconds)
        return f"{described}: waiting for a Ready canary pod (deadline {_clock(deadline)})"
    pause = step.pause
    total = pause.seconds() if pause is not None else None
    if pause is None or total is None:
        return "paused until `kanary promote`"
    if tick.seconds_in_step() >= total:
        return f"pause {pause.duration} done; waiting for a passing analysis check"
    return f"pause {pause.duration} until {_clock(started + timedelta(seconds=total))}"


def _weight_hold(tick: _Tick) -> str:
    if tick.obs.route_problem:
        return "waiting for the route to be fixed"
    return "waiting for a passing analysis check"


def _pause_text(tick: _Tick) -> str:
    match tick.status.pause_reason:
        case "Step":
            return "paused until `kanary promote`"
        case "User":
            return "paused by user; `kanary resume` to continue"
        case "Inconclusive":
            count = tick.status.analysis.consecutive_inconclusive
            return f"paused after {count} inconclusive checks; `kanary resume` or `kanary abort`"
        case None:
            return ""
