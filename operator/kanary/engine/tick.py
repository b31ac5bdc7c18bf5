"""One call of the step engine in the making (_Tick), what it returns (Decision), and the
small helpers the stages, the convergence and the report all use."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from kanary import canary_math
from kanary.actions import Action, EmitEvent
from kanary.analysis import sequential
from kanary.observation import Observation, TrackState
from kanary.spec import HeaderRoute, Phase, PodTemplate, RolloutSpec, Step
from kanary.status import (
    Condition,
    ConditionType,
    HistoryEntry,
    Outcome,
    PauseReason,
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
    "Alerting",
)


@dataclass(frozen=True)
class Decision:
    status: RolloutStatus
    actions: Sequence[Action]  # in execution order
    # The earliest moment a time-based condition this tick checked will turn (a pause's end, a
    # progress deadline, a grace, a scale-down): the Rollout need not tick before it unless a
    # watch event or an analysis check is due (wakeups.next_tick).
    recheck_at: datetime | None = None


def template_hash(template: PodTemplate) -> str:
    """Stable short hash of the template's canonical JSON: the kanary.dev/revision label."""
    body = template.model_dump(mode="json", by_alias=True)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def takes_traffic(status: RolloutStatus) -> bool:
    """The route sends the canary requests: a weight, a header route or a mirror."""
    return (
        status.canary_weight > 0
        or status.header_route is not None
        or status.mirror_percent is not None
    )


def header_in_force(status: RolloutStatus) -> HeaderRoute | None:
    """The header route the HTTPRoute must hold: the one in force, or none while no canary pod
    is Ready."""
    return None if status.canary_unavailable_since is not None else status.header_route


def mirror_in_force(status: RolloutStatus) -> int | None:
    """The mirror the HTTPRoute must hold: the one in force, or none while no canary pod is
    Ready."""
    return None if status.canary_unavailable_since is not None else status.mirror_percent


def canary_judged(status: RolloutStatus) -> bool:
    """The canary takes traffic in a running or step-paused rollout."""
    if status.phase == "Invalid" or status.stage != "Stepping" or not takes_traffic(status):
        return False
    if status.canary_unavailable_since is not None:
        return False  # no Ready canary pod, so no canary traffic to judge
    return status.pause_reason in (None, "Step")


def analysis_due(spec: RolloutSpec, status: RolloutStatus, now: datetime) -> bool:
    """Run a check now? Every interval while the canary is judged (canary_judged)."""
    analysis = spec.strategy.analysis
    if analysis is None or not canary_judged(status):
        return False
    last = status.analysis.last_check_at
    return last is None or (now - last).total_seconds() >= analysis.interval_seconds()


def sequential_due(spec: RolloutSpec, status: RolloutStatus) -> bool:
    """Test the error rate this tick? Every tick while the canary is judged, when the spec has
    the built-in error-rate with a max and the test is enabled."""
    analysis = spec.strategy.analysis
    return analysis is not None and sequential.applies(analysis) and canary_judged(status)


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
        self.recheck_at: datetime | None = None
        self.plan = spec.strategy.plan()

    @property
    def now(self) -> datetime:
        return self.obs.now

    @property
    def steps(self) -> list[Step]:
        """The steps run: the spec's, or those blueGreen stands for (Strategy.plan)."""
        return self.plan

    @property
    def blue_green(self) -> bool:
        return self.spec.strategy.is_blue_green()

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

    def in_step_for(self, seconds: float) -> bool:
        """seconds_in_step() >= seconds; until then, that moment is a time to look again."""
        started = self.status.step_started_at
        if started is not None:
            self.recheck(started + timedelta(seconds=seconds))
        return self.seconds_in_step() >= seconds

    def recheck(self, at: datetime) -> None:
        """A time-based condition checked this tick turns at `at` (Decision.recheck_at)."""
        if at > self.now and (self.recheck_at is None or at < self.recheck_at):
            self.recheck_at = at

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


# ---- helpers shared by the stages, the convergence and the report --------------------------------


def _canary_pods_for(tick: _Tick, weight: int) -> int:
    """Pods for a step's weight, never fewer than the traffic already sent to the canary needs
    (a plan edited under a running rollout must not take weight back), and at least one while
    a header route sends it requests or is about to."""
    header = (
        tick.status.header_route is not None
        or tick.status.mirror_percent is not None
        or canary_math.header_route_through(tick.steps, tick.step_index) is not None
        or canary_math.mirror_through(tick.steps, tick.step_index) is not None
    )
    pods = max(canary_math.replicas_for_weight(tick.replicas, weight), _written_pods(tick))
    if tick.blue_green:
        return tick.replicas  # the preview runs at full size, so the switch is one write
    return max(pods, 1) if header and tick.status.stage == "Stepping" else pods


def _written_pods(tick: _Tick) -> int:
    written = tick.status.canary_weight
    if tick.ratio_mode:
        return canary_math.replicas_for_ratio(tick.replicas, written)
    return canary_math.replicas_for_weight(tick.replicas, written)


def _track_ready(track: TrackState, revision: str | None, replicas: int) -> bool:
    return (
        track.exists
        and track.revision == revision
        and track.replicas == replicas
        and track.ready >= replicas
        and track.settled
    )


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


def _pause_reason_of(step: Step) -> PauseReason | None:
    return "Step" if step.pause is not None and step.pause.duration is None else None


def _clock(at: datetime) -> str:
    """Time of day in UTC, to the second: enough for on-call to know when something is due."""
    return f"{at.astimezone(UTC):%H:%M:%S}Z"
