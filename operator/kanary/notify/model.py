"""The types the notification parts share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

ProviderType = Literal["alertmanager", "slack", "msteams", "webhook"]
PROVIDER_TYPES: tuple[ProviderType, ...] = ("alertmanager", "slack", "msteams", "webhook")

AlertEvent = Literal[
    "RolledBack", "Paused", "Promoted", "StepCompleted", "AnalysisError", "CanaryUnavailable"
]
ALERT_EVENTS: tuple[AlertEvent, ...] = (
    "RolledBack",
    "Paused",
    "Promoted",
    "StepCompleted",
    "AnalysisError",
    "CanaryUnavailable",
)
Severity = Literal["critical", "warning", "info"]

# Alertmanager alertname per event: routes match on these.
ALERT_NAMES: Mapping[AlertEvent, str] = {
    "RolledBack": "KanaryRollback",
    "Paused": "KanaryPaused",
    "Promoted": "KanaryPromoted",
    "StepCompleted": "KanaryStepCompleted",
    "AnalysisError": "KanaryAnalysisError",
    "CanaryUnavailable": "KanaryCanaryUnavailable",
}


@dataclass(frozen=True)
class Alert:
    """One alert as the providers render it: everything a payload needs, nothing to look up."""

    key: str  # unique per Rollout: "<event>/<revision>[/<step>]"; one alert per key, ever
    event: AlertEvent
    severity: Severity
    namespace: str
    rollout: str
    uid: str  # the Rollout's uid (delivery dedupe: a recreated Rollout is another one)
    revision: str  # the canary revision the alert is about
    phase: str  # the Rollout's phase when it was raised
    reason: str  # machine-readable cause: AnalysisFailed, PodReadyTooSlow, AbortedByUser, ...
    text: str  # the rendered one-line text (the Rollout's template, or the default)
    # The template variables and their values as text: metric, value, threshold, window,
    # requests, step, weight, revision, reason (empty string when not known).
    variables: Mapping[str, str] = field(default_factory=dict)
    commands: tuple[str, ...] = ()  # "kanary retry gin-demo -n demo", ...
    starts_at: datetime | None = None
    resolved_at: datetime | None = None  # set once the condition is over (Alertmanager resolve)


@dataclass(frozen=True)
class Target:
    """A provider resolved from its AlertProvider and Secret: where to send and how."""

    name: str  # "<namespace>/<AlertProvider name>"
    type: ProviderType
    url: str
    token: str | None = None  # sent as "Authorization: Bearer <token>"
    channel: str | None = None  # slack: overrides the webhook's default channel
    timeout_seconds: float = 5.0
