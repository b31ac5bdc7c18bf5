"""The step engine: spec + status + what was observed -> the next status and the writes to make.

Pure: no clock (time is ``obs.now``), no client, no I/O. The I/O layer must execute the actions in
order and write the returned status only after they all succeeded; every action is an idempotent
write, so a crash between the two re-decides from the old status and repeats the same writes,
and a restart from a written status resumes exactly where it stopped (all progress is in status).

Deployments are driven level-style (the wanted replicas and revision are derived from the stage
and compared with what was observed, so a lost write is redone); route weights, which are not
observed, are written once, at the transition that changes them (and again when a route reported
broken is fixed). At most one step or stage is entered per call: a step entered now is judged on
the next observation, which shows the writes made for it. A manual action with an id applies once.

Stages (status.stage) and their phases:
  Creating  (Progressing) first stable track being created; Steady once it is Ready.
  Steady    (Healthy)     stable runs the template; a template change starts a rollout.
  Stepping  (Progressing, Paused with pauseReason) runs steps[currentStepIndex]:
            setWeight w: canary scaled to ceil(replicas*w/100), Ready -> weight written -> next;
            pause {duration}: elapsed and the latest analysis passed -> next;
            pause {}: Paused until `promote`. After the last step: Promoting.
  Promoting (Progressing) stable takes the canary template; Ready -> weight 0 -> Steady.
  Aborted   (RolledBack)  weight 0 written; canary to 0 replicas at scaleDownAt.
Invalid is an overlay: phase Invalid, nothing written, the stage kept for when it is fixed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from kanary import canary_math
from kanary.actions import (
    Action,
    ApplyCanary,
    ApplyStable,
    EmitEvent,
    EnsureServices,
    ScaleStable,
    SetWeight,
)
from kanary.analysis import judgement
from kanary.observation import ManualAction, Observation, TrackState
from kanary.spec import AnalysisSpec, Phase, PodTemplate, RolloutSpec, Step
from kanary.status import (
    AnalysisStatus,
    Condition,
    ConditionType,
    HistoryEntry,
    LastAction,
    Outcome,
    PauseReason,
    ReadinessStatus,
    RolloutStatus,
)

HISTORY_LIMIT = 10
CONDITION_ORDER: tuple[ConditionType, ...] = (
    "Available",
    "Progressing",
    "Paused",
    "Completed",
    "RolledBack",
    "ReconcileError",
)


@dataclass(frozen=True)
class Decision:
    status: RolloutStatus
    actions: Sequence[Action]  # in execution order


def template_hash(template: PodTemplate) -> str:
    """Stable short hash of the template's canonical JSON: the kanary.dev/revision label."""
    body = template.model_dump(mode="json", by_alias=True)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def analysis_due(spec: RolloutSpec, status: RolloutStatus, now: datetime) -> bool:
    """Run a check now? Only while the canary takes traffic in a running or step-paused rollout."""
    analysis = spec.strategy.analysis
    if analysis is None or status.phase == "Invalid":
        return False
    if status.stage != "Stepping" or status.canary_weight <= 0:
        return False
    if status.canary_unavailable_since is not None:
        return False  # no Ready canary pod, so no canary traffic to judge
    if status.pause_reason not in (None, "Step"):
        return False
    last = status.analysis.last_check_at
    return last is None or (now - last).total_seconds() >= analysis.interval_seconds()


def decide(spec: RolloutSpec, status: RolloutStatus, obs: Observation) -> Decision:
    tick = _Tick(spec, status, obs)
    tick.update(observed_generation=obs.generation)
    if obs.invalid is not None:
        _hold_invalid(tick, obs.invalid)
    else:
        _note_route_problem(tick)
        _take_analysis(tick)
        _follow_template(tick)
        _apply_manual(tick)
        _watch_canary(tick)
        _run_stage(tick)
        _converge_tracks(tick)
        _converge_services(tick)
        _finish(tick)
    _converge_weight(tick)
    return Decision(status=tick.status, actions=tick.actions)


# ---- the decision in the making ----------------------------------------------------------------


class _Tick:
    """One call of decide(): the inputs, the status so far and the actions so far."""

    def __init__(self, spec: RolloutSpec, status: RolloutStatus, obs: Observation) -> None:
        self.spec = spec
        self.obs = obs
        self.incoming = status
        self.status = status
        self.actions: list[Action] = []
        # Set when this tick entered a new stage or step: that one is judged on the next
        # observation, which will show the writes made for it (one transition per tick).
        self.moved = False

    @property
    def now(self) -> datetime:
        return self.obs.now

    @property
    def steps(self) -> list[Step]:
        return self.spec.strategy.steps

    @property
    def replicas(self) -> int:
        return self.spec.replicas

    @property
    def ratio_mode(self) -> bool:
        routing = self.spec.traffic_routing
        return routing is None or routing.gateway_api is None

    @property
    def step_index(self) -> int:
        return self.status.current_step_index or 0

    def step(self) -> Step:
        """The current step (the last one, if the plan was shortened under a running rollout)."""
        return self.steps[min(self.step_index, len(self.steps) - 1)]

    def label(self) -> str:
        return canary_math.step_label(self.step_index, self.steps)

    def continuing_rollout(self) -> bool:
        """Same rollout as when this tick began: the observed canary figures are about it."""
        return (
            self.incoming.stage == "Stepping"
            and self.incoming.canary_revision == self.status.canary_revision
        )

    def seconds_in_step(self) -> float:
        started = self.status.step_started_at
        return 0.0 if started is None else (self.now - started).total_seconds()

    def update(self, **changes: Any) -> None:
        self.status = self.status.model_copy(update=changes)

    def act(self, action: Action) -> None:
        self.actions.append(action)

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        self.act(EmitEvent(type="Warning" if warning else "Normal", reason=reason, message=message))

    def record(self, outcome: Outcome, reason: str) -> None:
        entry = HistoryEntry(
            revision=self.status.canary_revision or "",
            outcome=outcome,
            started=self.status.rollout_started_at,
            finished=self.now,
            reason=reason,
        )
        self.update(history=[*self.status.history, entry][-HISTORY_LIMIT:])


# ---- invalid -----------------------------------------------------------------------------------


def _hold_invalid(tick: _Tick, reason: str) -> None:
    """Nothing but a rollback is written while the spec is invalid: a canary with traffic is
    rolled back (its checks cannot run, so it must not keep traffic unjudged); otherwise the
    stage is kept for when the spec is fixed."""
    if tick.incoming.phase != "Invalid" or tick.incoming.message != reason:
        tick.event("Invalid", reason, warning=True)
    if tick.obs.manual is not None and _manual_is_new(tick):
        _acknowledge(tick, tick.obs.manual, "the Rollout is Invalid: fix the spec first")
    if tick.status.stage in ("Stepping", "Promoting") and tick.status.canary_weight > 0:
        _roll_back(tick, "InvalidSpec", f"spec became invalid mid-rollout: {reason}")
    tick.update(phase="Invalid", message=reason)
    _set_conditions(tick, "Invalid")


# ---- analysis ----------------------------------------------------------------------------------


def _take_analysis(tick: _Tick) -> None:
    """Count a check that finished this tick; its verdict may roll back or pause the rollout."""
    outcome = tick.obs.analysis
    analysis = tick.spec.strategy.analysis
    if outcome is None or analysis is None or tick.status.stage != "Stepping":
        return
    last = tick.status.analysis.last_check_at
    if last is not None and outcome.at <= last:
        return  # already counted (the same check seen again after a restart)
    counts = judgement.next_counters(tick.status.analysis, outcome)
    tick.update(analysis=counts.model_copy(update={"summary": outcome.summary}))
    _judge_analysis(tick, analysis)


def _judge_analysis(tick: _Tick, analysis: AnalysisSpec) -> None:
    counts = tick.status.analysis
    limit = judgement.limit_reached(analysis, counts)
    if limit is None:
        return
    reason = judgement.limit_reason(analysis, counts, counts.summary)
    if limit == "rollback":
        _roll_back(tick, _analysis_cause(analysis, counts), reason)
    elif tick.status.pause_reason != "Inconclusive":
        tick.update(pause_reason="Inconclusive")
        tick.event(
            "AnalysisInconclusive",
            f"{tick.label()}: paused, {reason}; `kanary resume` or `kanary abort`",
            warning=True,
        )


def _analysis_cause(analysis: AnalysisSpec, counts: AnalysisStatus) -> str:
    """The RolledBack condition's reason (and the rollbacks metric's label)."""
    if counts.consecutive_failures >= analysis.failure_limit:
        return "AnalysisFailed"
    if counts.consecutive_errors >= analysis.error_limit:
        return "AnalysisError"
    return "AnalysisInconclusive"


def _analysis_allows_advance(tick: _Tick) -> bool:
    """With traffic on the canary, a step ends only on a passing check whose whole window
    came after the weight in force was written (so not before one window of dwell), and taken
    during the current step."""
    analysis = tick.spec.strategy.analysis
    if analysis is None or tick.status.canary_weight <= 0:
        return True
    window = timedelta(seconds=analysis.window_seconds())
    starts = [t for t in (tick.status.step_started_at,) if t is not None]
    if tick.status.weight_set_at is not None:
        starts.append(tick.status.weight_set_at + window)
    return judgement.may_advance(tick.status.analysis, max(starts, default=None))


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
    if tick.status.canary_weight > 0:
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


# ---- manual actions ----------------------------------------------------------------------------


def _manual_is_new(tick: _Tick) -> bool:
    request_id = tick.obs.manual_id
    return request_id is None or request_id != tick.status.last_manual_id


def _apply_manual(tick: _Tick) -> None:
    action = tick.obs.manual
    if action is None or not _manual_is_new(tick):
        return
    _acknowledge(tick, action, _MANUAL[action](tick))


def _acknowledge(tick: _Tick, action: ManualAction, refusal: str | None) -> None:
    """status.lastAction answers the request (`kanary ACTION --wait` reads it)."""
    if tick.obs.manual_id is not None:
        tick.update(last_manual_id=tick.obs.manual_id)
    answer = LastAction(
        id=tick.obs.manual_id or action,
        action=action,
        result="Accepted" if refusal is None else "Refused",
        reason=refusal or "",
        at=tick.now,
    )
    tick.update(last_action=answer)
    if refusal is not None:
        tick.event("ManualActionRefused", f"{action}: {refusal}", warning=True)


def _promote(tick: _Tick) -> str | None:
    if tick.status.stage != "Stepping":
        return f"nothing to promote: the rollout is {_phase_of(tick.status)}"
    step = tick.step()
    if step.pause is None:
        return (
            f"{tick.label()} is {canary_math.describe_step(step)}, not a pause; "
            "`promote --full` promotes now"
        )
    tick.event("ManualPromote", f"{tick.label()} ({canary_math.describe_step(step)}) ended by user")
    _advance(tick)
    return None


def _promote_full(tick: _Tick) -> str | None:
    if tick.status.stage != "Stepping":
        return f"nothing to promote: the rollout is {_phase_of(tick.status)}"
    _start_promotion(tick, f"promote --full at {tick.label()}")
    return None


def _abort(tick: _Tick) -> str | None:
    if tick.status.stage not in ("Stepping", "Promoting"):
        return f"nothing to abort: the rollout is {_phase_of(tick.status)}"
    _roll_back(tick, "Aborted", "aborted by user")
    return None


def _retry(tick: _Tick) -> str | None:
    if tick.status.stage != "Aborted":
        return f"nothing to retry: the rollout is {_phase_of(tick.status)}"
    _start_rollout(tick)
    return None


def _pause(tick: _Tick) -> str | None:
    if tick.status.stage != "Stepping":
        return f"only a running rollout can pause: the rollout is {_phase_of(tick.status)}"
    if tick.status.pause_reason is not None:
        return f"already paused ({_pause_text(tick)})"
    tick.update(pause_reason="User")
    tick.event("Paused", f"{tick.label()}: paused by user")
    return None


def _resume(tick: _Tick) -> str | None:
    reason = tick.status.pause_reason if tick.status.stage == "Stepping" else None
    if reason is None:
        return f"not paused: the rollout is {_phase_of(tick.status)}"
    if reason == "Step":
        return f"{tick.label()} is a pause until promote: use `kanary promote`"
    step = tick.step()
    counts = tick.status.analysis.model_copy(update={"consecutive_inconclusive": 0})
    tick.update(pause_reason=_pause_reason_of(step), analysis=counts)
    tick.event("Resumed", f"{tick.label()}: resumed by user")
    return None


_MANUAL: dict[ManualAction, Callable[[_Tick], str | None]] = {
    "promote": _promote,
    "promote-full": _promote_full,
    "abort": _abort,
    "retry": _retry,
    "pause": _pause,
    "resume": _resume,
}


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
    tick.act(EnsureServices())
    tick.event("Creating", f"creating stable track {tick.obs.template_hash}, {tick.replicas} pods")


def _adopt(tick: _Tick, running: str) -> None:
    """No progress recorded but a stable track exists: trust what runs, start over from there."""
    tick.update(stable_revision=running)
    tick.act(EnsureServices())
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
        current_step_index=None,
        step_started_at=None,
        pause_reason=None,
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
    elif step.pause is not None and step.pause.seconds() is not None:
        _timed_pause_step(tick, step.pause.seconds() or 0.0)


def _weight_step(tick: _Tick, weight: int) -> None:
    wanted = _canary_pods_for(tick, weight)
    if not _track_ready(tick.obs.canary, tick.status.canary_revision, wanted):
        deadline = tick.spec.strategy.progress_deadline_seconds
        if tick.seconds_in_step() > deadline:
            ready = min(tick.obs.canary.ready, wanted)
            why = (
                f"progress deadline: canary not Ready after {deadline}s "
                f"({ready}/{wanted} pods Ready)"
            )
            _roll_back(tick, "ProgressDeadlineExceeded", why)
        return
    if tick.obs.route_problem:
        return
    written = _weight_to_write(tick, weight, wanted)
    if written != tick.status.canary_weight:
        tick.act(SetWeight(written))
        tick.update(canary_weight=written, weight_set_at=tick.now)
        tick.event("WeightSet", f"{tick.label()}: canary weight {written}%")
        if tick.spec.strategy.analysis is not None:
            return  # judged on checks whose window began after this write
    if _analysis_allows_advance(tick):
        _advance(tick)


def _canary_pods_for(tick: _Tick, weight: int) -> int:
    """Pods for a step's weight, never fewer than the traffic already sent to the canary needs
    (a plan edited under a running rollout must not take weight back)."""
    return max(canary_math.replicas_for_weight(tick.replicas, weight), _written_pods(tick))


def _written_pods(tick: _Tick) -> int:
    written = tick.status.canary_weight
    if tick.ratio_mode:
        return canary_math.replicas_for_ratio(tick.replicas, written)
    return canary_math.replicas_for_weight(tick.replicas, written)


def _weight_to_write(tick: _Tick, weight: int, pods: int) -> int:
    """Gateway: the step's weight (never below the one written); replica-ratio: the pod share."""
    if tick.ratio_mode:
        return canary_math.ratio_percent(pods, tick.replicas - pods)
    return max(weight, tick.status.canary_weight)


def _timed_pause_step(tick: _Tick, seconds: float) -> None:
    if tick.seconds_in_step() >= seconds and _analysis_allows_advance(tick):
        _advance(tick)


def _advance(tick: _Tick) -> None:
    following = tick.step_index + 1
    if following >= len(tick.steps):
        _start_promotion(tick, "all steps done")
        return
    step = tick.steps[following]
    tick.moved = True
    tick.update(
        current_step_index=following,
        step_started_at=tick.now,
        pause_reason=_pause_reason_of(step),
    )
    _announce_step(tick)


def _announce_step(tick: _Tick) -> None:
    step = tick.step()
    text = f"{tick.label()}: {canary_math.describe_step(step)}"
    if step.set_weight is not None:
        pods = _canary_pods_for(tick, step.set_weight)
        text += f" ({pods} canary pod{'' if pods == 1 else 's'})"
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
        step_started_at=tick.now,
        rollout_started_at=tick.now,
        pause_reason=_pause_reason_of(first),
        scale_down_at=None,
        weight_set_at=None,
        canary_unavailable_since=None,
        analysis=AnalysisStatus(),
        readiness=ReadinessStatus(),
    )
    tick.act(EnsureServices())
    images = ", ".join(tick.spec.template.images())
    tick.event(
        "RolloutStarted",
        f"rollout of {revision} ({images}) started: {len(tick.steps)} steps, "
        f"stable {tick.status.stable_revision}",
    )
    _announce_step(tick)


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


# ---- rollback ----------------------------------------------------------------------------------


def _roll_back(tick: _Tick, cause: str, reason: str) -> None:
    """Weight to 0 first, in one write; the canary goes to 0 pods later; stable is untouched."""
    where = tick.label()
    tick.moved = True
    tick.act(SetWeight(0))
    tick.record("RolledBack", reason)
    tick.update(
        stage="Aborted",
        canary_weight=0,
        pause_reason=None,
        scale_down_at=_scale_down_time(tick),
    )
    _put_condition(tick, "RolledBack", True, cause, f"{where}: {reason}")
    revision = tick.status.canary_revision
    tick.event("RolledBack", f"{revision} rolled back at {where}: {reason}", warning=True)
    _scale_down_if_due(tick)


def _scale_down_time(tick: _Tick, delay: int | None = None) -> datetime:
    """When the canary may go to 0 pods: after the router has stopped sending it traffic."""
    # Replica-ratio mode has no weight to write: canary pods are its traffic, so they go at once.
    if tick.ratio_mode:
        return tick.now
    if delay is None:
        delay = tick.spec.strategy.abort_scale_down_delay_seconds
    return tick.now + timedelta(seconds=delay)


def _scale_down_if_due(tick: _Tick) -> None:
    """Scale-down waits while the route is broken: its weight 0 may not have been written."""
    due = tick.status.scale_down_at
    if due is None or tick.now < due or tick.obs.route_problem:
        return
    tick.update(scale_down_at=None)
    tick.event("ScaledDown", "canary scaled to 0 pods")


# ---- readiness ---------------------------------------------------------------------------------


def _take_readiness(tick: _Tick) -> None:
    figures = tick.obs.readiness
    if figures.count == 0 and figures.oldest_unready_pod is None:
        return
    tick.update(
        readiness=ReadinessStatus(
            count=figures.count,
            p50_seconds=figures.p50_seconds,
            max_seconds=figures.max_seconds,
            slowest_pod=figures.slowest_pod,
        )
    )


def _readiness_violation(tick: _Tick) -> str | None:
    limit = tick.spec.strategy.readiness.max_pod_ready_seconds
    figures = tick.obs.readiness
    if limit is None:
        return None
    if figures.max_seconds is not None and figures.max_seconds > limit:
        return (
            f"canary pod {figures.slowest_pod} took {figures.max_seconds:.1f}s to become Ready "
            f"(maxPodReadySeconds {limit:g})"
        )
    unready = figures.oldest_unready_seconds
    if unready is not None and unready > limit:
        return (
            f"canary pod {figures.oldest_unready_pod} not Ready after {unready:.1f}s "
            f"(maxPodReadySeconds {limit:g})"
        )
    return None


# ---- canary availability, route weights and Services, level-triggered -------------------------


def _watch_canary(tick: _Tick) -> None:
    """A canary with traffic and no Ready pod (never Ready, or Ready once and not any more)
    loses its traffic at once, gets it back when a pod is Ready again, and is rolled back
    (CanaryUnavailable) when none is Ready for unavailableGraceSeconds."""
    status = tick.status
    if status.stage not in ("Stepping", "Promoting") or status.canary_weight <= 0:
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
            tick.event("CanaryAvailable", f"{tick.label()}: canary pods Ready again: weight "
                       f"{status.canary_weight}% restored")
        return
    if since is None:
        tick.update(canary_unavailable_since=tick.now)
        tick.act(SetWeight(0))
        tick.event(
            "CanaryUnavailable",
            f"{tick.label()}: no Ready canary pod: weight 0% until one is Ready "
            f"(rollback after {grace}s)",
            warning=True,
        )
        since = tick.now
    if (tick.now - since).total_seconds() >= grace:
        _roll_back(tick, "CanaryUnavailable", f"no Ready canary pod for {grace}s")


def _wanted_weight(tick: _Tick) -> int:
    """The canary weight the route must hold now: the one in force, or 0 while no canary pod
    is Ready."""
    if tick.status.canary_unavailable_since is not None:
        return 0
    return tick.status.canary_weight


def _converge_weight(tick: _Tick) -> None:
    """Set and verify, every tick: a route whose weights differ from kanary's (re-applied by
    GitOps, edited by hand) is written back, unless this tick already writes a weight."""
    if tick.ratio_mode or tick.obs.route_problem or tick.status.stage in (None, "Creating"):
        return
    if any(isinstance(a, SetWeight) for a in tick.actions):
        return
    seen, wanted = tick.obs.route_split, _wanted_weight(tick)
    if seen is None or seen == (100 - wanted, wanted):
        return
    tick.act(SetWeight(wanted))
    tick.event(
        "WeightRestored",
        f"the route held stable {seen[0]} / canary {seen[1]}, kanary's split is "
        f"{100 - wanted} / {wanted}: written back",
        warning=True,
    )


def _converge_services(tick: _Tick) -> None:
    names = tick.obs.services_drifted
    if not names or tick.status.stage is None or (tick.moved and tick.incoming.stage is None):
        return
    tick.act(EnsureServices(names=tuple(names)))
    tick.event(
        "ServiceRestored",
        f"Service {', '.join(names)} missing or changed outside kanary: restored",
        warning=True,
    )


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
    _ensure_canary(tick, revision, _canary_pods_for(tick, weight))


def _stable_replicas_in_step(tick: _Tick) -> int:
    if not tick.ratio_mode:
        return tick.replicas  # full capacity until promotion, so a rollback is one weight write
    return tick.replicas - _written_pods(tick)


def _scale_canary_down(tick: _Tick) -> None:
    canary = tick.obs.canary
    if tick.status.scale_down_at is None and canary.exists and canary.replicas > 0:
        tick.act(ApplyCanary(revision=tick.obs.template_hash, replicas=0))


def _track_ready(track: TrackState, revision: str | None, replicas: int) -> bool:
    return (
        track.exists
        and track.revision == revision
        and track.replicas == replicas
        and track.ready >= replicas
        and track.settled
    )


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


def _phase_of(status: RolloutStatus) -> Phase | None:
    match status.stage:
        case "Creating" | "Promoting":
            return "Progressing"
        case "Steady":
            return "Healthy"
        case "Stepping":
            return "Paused" if status.pause_reason is not None else "Progressing"
        case "Aborted":
            return "RolledBack"
        case None:
            return status.phase


def _note_route_problem(tick: _Tick) -> None:
    problem = tick.obs.route_problem
    if problem == tick.status.route_problem:
        return
    tick.update(route_problem=problem)
    if problem is not None:
        tick.event("RouteProblem", f"{problem}: traffic weights cannot be written", warning=True)
        return
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


def _stalled(tick: _Tick) -> bool:
    """Creating or promoting past the deadline: nothing to roll back to, so it is only reported."""
    if tick.status.stage not in ("Creating", "Promoting"):
        return False
    return tick.seconds_in_step() > tick.spec.strategy.progress_deadline_seconds


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
    serving = stable.ready > 0 or (tick.status.canary_weight > 0 and canary.ready > 0)
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
                f"{what}: stable track not Ready after {deadline}s "
                f"({track.ready}/{tick.replicas})"
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


def _condition(status: RolloutStatus, kind: ConditionType) -> Condition | None:
    return next((c for c in status.conditions if c.type == kind), None)


def _put_condition(tick: _Tick, kind: ConditionType, ok: bool, reason: str, message: str) -> None:
    """lastTransitionTime moves only when the condition's status flips."""
    value: Literal["True", "False"] = "True" if ok else "False"
    previous = _condition(tick.status, kind)
    since = previous.last_transition_time if previous and previous.status == value else tick.now
    fresh = Condition(
        type=kind, status=value, reason=reason, message=message, last_transition_time=since
    )
    others = {c.type: c for c in tick.status.conditions if c.type != kind}
    others[kind] = fresh
    ordered = [others[k] for k in CONDITION_ORDER if k in others]
    tick.update(conditions=ordered)


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
    text = f"{tick.label()}: weight {tick.status.canary_weight}%; {_step_detail(tick)}"
    summary = tick.status.analysis.summary
    return f"{text}; {summary}" if summary else text


def _step_detail(tick: _Tick) -> str:
    unavailable = tick.status.canary_unavailable_since
    if unavailable is not None:
        grace = timedelta(seconds=tick.spec.strategy.unavailable_grace_seconds)
        rollback = _clock(unavailable + grace)
        return f"no Ready canary pod: weight 0% until one is, rollback at {rollback}"
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


def _pause_reason_of(step: Step) -> PauseReason | None:
    return "Step" if step.pause is not None and step.pause.duration is None else None


def _clock(at: datetime) -> str:
    """Time of day in UTC, to the second: enough for on-call to know when something is due."""
    return f"{at.astimezone(UTC):%H:%M:%S}Z"
