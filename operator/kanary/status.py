"""The Rollout status: everything needed to resume a rollout lives here, and on-call reads it."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from kanary.spec import HeaderRoute, Phase

Verdict = Literal["Pass", "Fail", "Inconclusive", "Error"]
Outcome = Literal["Promoted", "RolledBack", "Superseded"]
ConditionType = Literal[
    "Available", "Progressing", "Paused", "Completed", "RolledBack", "ReconcileError", "Alerting"
]
ActionResult = Literal["Accepted", "Refused"]

Stage = Literal["Creating", "Steady", "Stepping", "Promoting", "Aborted"]
"""Where the engine is; phase is derived from it (plus pauseReason, and Invalid as an overlay).

Creating: the first stable track is being created (Progressing).
Steady: stable runs the template, no canary traffic (Healthy).
Stepping: a rollout runs strategy.steps[currentStepIndex] (Progressing, or Paused).
Promoting: stable takes the canary's template; waiting for it to be Ready (Progressing).
Aborted: rolled back; canary weight 0, canary scaled to 0 at scaleDownAt (RolledBack).
"""

PauseReason = Literal["Step", "User", "Inconclusive"]
"""Why a Stepping rollout is Paused: a `pause: {}` step, `kanary pause`, inconclusive analysis."""


class StatusModel(BaseModel):
    """camelCase on the wire; unknown fields ignored, so an older operator reads a newer status."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class MetricResult(StatusModel):
    name: str
    verdict: Verdict
    value: float | None = None
    baseline: float | None = Field(default=None, description="the stable track's value")
    min: float | None = None
    max: float | None = None
    max_increase: float | None = Field(default=None, description="bound on canary - stable")
    max_ratio: float | None = Field(default=None, description="bound on canary / stable")
    requests: float | None = Field(default=None, description="canary requests in the window")
    window: str | None = None
    track: str | None = Field(default=None, description="the track `value` was measured on")
    reason: str = ""
    # judge mannWhitney: value and baseline are the samples' means
    classification: str | None = Field(
        default=None, description="mannWhitney: Pass, High, Low, Nodata, NodataFailMetric, Error"
    )
    p_value: float | None = Field(default=None, description="mannWhitney: two-sided U test")
    shift: list[float] | None = Field(
        default=None,
        description="mannWhitney: the confidence interval of canary - stable (Hodges-Lehmann)",
    )
    canary_samples: int | None = None
    stable_samples: int | None = None


class SequentialStatus(StatusModel):
    """The sequential test of the error rate that rolled the canary back."""

    at: datetime
    errors: int
    requests: int
    likelihood_ratio_log: float = Field(description="ln(P(counts | bad rate) / P(counts | max))")
    threshold_log: float = Field(description="ln(1 / (1 - confidence)): rolls back at or above")


class AnalysisStatus(StatusModel):
    last_check_at: datetime | None = None
    verdict: Verdict | None = None
    consecutive_failures: int = 0
    consecutive_inconclusive: int = 0
    consecutive_errors: int = 0
    metrics: list[MetricResult] = Field(default_factory=list)
    summary: str = Field(default="", description="the latest check in one line, for the message")
    sequential: SequentialStatus | None = None
    score: float | None = Field(default=None, description="mannWhitney: passed / judged x 100")
    source: str = Field(
        default="",
        description="where the built-in metrics and request counts were read, and why: "
        "'gateway: traefik metrics of ...' or 'app: ...'",
    )


class ReadinessStatus(StatusModel):
    count: int = 0
    p50_seconds: float | None = None
    max_seconds: float | None = None
    slowest_pod: str | None = None


class Condition(StatusModel):
    type: ConditionType
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: datetime


class HistoryEntry(StatusModel):
    revision: str
    outcome: Outcome
    started: datetime | None = None
    finished: datetime
    reason: str = ""


class LastAction(StatusModel):
    """The operator's answer to the latest manual action (`kanary ACTION --wait` reads it)."""

    id: str = Field(description="the request's kanary.dev/action-id (or the action itself)")
    action: str
    result: ActionResult
    reason: str = ""
    at: datetime


class AlertRecord(StatusModel):
    """An alert raised for one event of one revision: raised once, delivered once per provider
    (`sent`), resolved when its condition is over (Alertmanager providers are told too)."""

    key: str = Field(description="<event>/<revision>[/<step>]: one alert per key, ever")
    event: str
    severity: str
    revision: str
    reason: str = ""
    text: str = Field(default="", description="the alert's one line, as sent")
    variables: dict[str, str] = Field(default_factory=dict)
    at: datetime
    resolved_at: datetime | None = None
    sent: list[str] = Field(default_factory=list, description="providers that accepted it")
    resolved_sent: list[str] = Field(
        default_factory=list, description="Alertmanager providers told it is resolved"
    )


class GateStatus(StatusModel):
    """A gate the rollout waits for: asked every interval until it answers 2xx."""

    type: str
    revision: str
    since: datetime
    message: str = Field(default="", description="its last answer")


class RolloutStatus(StatusModel):
    phase: Phase | None = None
    message: str = ""
    observed_generation: int | None = None
    current_step_index: int | None = None
    canary_weight: int = 0
    header_route: HeaderRoute | None = Field(
        default=None,
        description="the header route in force: requests matching it go to the canary",
    )
    mirror_percent: int | None = Field(
        default=None,
        description="the mirror in force: this percent of requests copied to the canary",
    )
    verified_weight: int | None = Field(
        default=None,
        description="the canary weight the HTTPRoute holds, as read back from the API server",
    )
    stable_revision: str | None = None
    canary_revision: str | None = None
    step: str | None = Field(
        default=None, description='"3/7": current step, 1-based, of all steps (kubectl get)'
    )
    strategy: str | None = Field(default=None, description="canary or blueGreen (kubectl get)")
    routing: str | None = Field(
        default=None,
        description="the traffic routing kanary holds, one line: weights, header route "
        "(kubectl get -o wide)",
    )
    stable_image: str | None = Field(
        default=None, description="the stable track's container images, comma-separated"
    )
    canary_image: str | None = Field(
        default=None, description="the canary track's container images, comma-separated"
    )
    step_started_at: datetime | None = None
    rollout_started_at: datetime | None = None
    analysis: AnalysisStatus = Field(default_factory=AnalysisStatus)
    readiness: ReadinessStatus = Field(default_factory=ReadinessStatus)
    conditions: list[Condition] = Field(default_factory=list)
    history: list[HistoryEntry] = Field(default_factory=list, max_length=10)
    # The engine's resume point (see Stage); everything below is written only by the engine.
    stage: Stage | None = None
    pause_reason: PauseReason | None = None
    scale_down_at: datetime | None = Field(
        default=None, description="when the canary goes to 0 replicas after a rollback"
    )
    weight_set_at: datetime | None = Field(
        default=None, description="when canaryWeight took effect; checks count from then"
    )
    canary_unavailable_since: datetime | None = Field(
        default=None, description="since when the canary has traffic but no Ready pod"
    )
    last_action: LastAction | None = None
    last_manual_id: str | None = Field(
        default=None, description="id of the last manual action applied, so none applies twice"
    )
    route_problem: str | None = Field(
        default=None, description="the router's last complaint, so its Event is sent once"
    )
    alerts: list[AlertRecord] = Field(default_factory=list, max_length=20)
    gate: GateStatus | None = Field(default=None, description="the gate the rollout waits for")
    gates_passed: list[str] = Field(
        default_factory=list, description='"<gate type>/<revision>" of the gates that let it act'
    )
    alert_problem: str | None = Field(
        default=None, description="why alerts cannot be delivered, so its Event is sent once"
    )

    def to_patch(self) -> dict[str, object]:
        """Top-level None stays (a merge patch deletes the key); None inside list items is
        dropped, as the API server drops it, so what is read back equals what was sent."""
        return {
            k: _without_none_in_lists(v)
            for k, v in self.model_dump(mode="json", by_alias=True, exclude_none=False).items()
        }


def _without_none_in_lists(value: object, in_list: bool = False) -> object:
    if isinstance(value, list):
        return [_without_none_in_lists(v, True) for v in value]
    if isinstance(value, dict):
        return {
            k: _without_none_in_lists(v, in_list)
            for k, v in value.items()
            if not (in_list and v is None)
        }
    return value
