"""The API of notifications: a Rollout's `spec.notifications` and `spec.strategy.gates`, and the
AlertProvider resource (where alerts go; its URL and token come from a Secret only)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic.alias_generators import to_camel

from kanary.apimodel import POSITIVE_DURATION, ApiModel, api_config, cel
from kanary.durations import DURATION_PATTERN, parse_duration
from kanary.notify.model import ALERT_EVENTS, AlertEvent, ProviderType, Severity

DNS_NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"

DEFAULT_SEVERITY: dict[AlertEvent, Severity] = {
    "RolledBack": "critical",
    "Paused": "warning",
    "AnalysisError": "warning",
    "CanaryUnavailable": "warning",
    "Promoted": "info",
    "StepCompleted": "info",
}
DEFAULT_EVENTS: tuple[AlertEvent, ...] = (
    "RolledBack",
    "Paused",
    "AnalysisError",
    "CanaryUnavailable",
)

GateType = Literal["pre-rollout", "confirm-promotion"]


class AlertRule(ApiModel):
    event: AlertEvent = Field(description=f"one of {', '.join(ALERT_EVENTS)}")
    severity: Severity | None = Field(
        default=None,
        description="critical, warning or info; default: critical for RolledBack, info for "
        "Promoted and StepCompleted, warning for the others",
    )

    def level(self) -> Severity:
        return self.severity or DEFAULT_SEVERITY[self.event]


class NotificationsSpec(ApiModel):
    """Who is told what. Alerts are raised once per event per revision and recorded in
    status.alerts, so an operator restart sends none twice."""

    model_config = api_config(
        cel(
            "!has(self.events)"
            " || self.events.all(e, self.events.exists_one(f, f.event == e.event))",
            "each event may be listed once",
            ".events",
        )
    )
    providers: list[str] = Field(
        default_factory=list,
        max_length=10,
        json_schema_extra={"items": {"type": "string", "pattern": DNS_NAME, "maxLength": 253}},
        description="AlertProvider names in the Rollout's namespace (the operator's "
        "--alert-provider ones are added)",
    )
    events: list[AlertRule] = Field(
        default_factory=lambda: [AlertRule(event=e) for e in DEFAULT_EVENTS],
        max_length=len(ALERT_EVENTS),
        description="which events alert, and how severely; default: RolledBack, Paused, "
        "AnalysisError, CanaryUnavailable",
    )
    template: str | None = Field(
        default=None,
        max_length=2000,
        description="the alert's text; variables {{metric}} {{value}} {{threshold}} {{window}} "
        "{{requests}} {{step}} {{weight}} {{revision}} {{reason}} {{rollout}} {{namespace}} "
        "{{event}}; default: the one line on-call needs, with the commands to act",
    )

    @field_validator("providers")
    @classmethod
    def _each_once(cls, providers: list[str]) -> list[str]:
        if len(set(providers)) != len(providers):
            raise ValueError("each provider may be listed once")
        return providers

    @field_validator("events")
    @classmethod
    def _each_event_once(cls, events: list[AlertRule]) -> list[AlertRule]:
        names = [e.event for e in events]
        if len(set(names)) != len(names):
            raise ValueError("each event may be listed once")
        return events

    def rule(self, event: AlertEvent) -> AlertRule | None:
        return next((r for r in self.events if r.event == event), None)


class GateSpec(ApiModel):
    """A webhook asked before kanary acts: a 2xx answer lets it act, anything else holds (a
    timeout counts as a failed check), and it is asked again every `interval`."""

    model_config = api_config(
        cel(POSITIVE_DURATION % "self.timeout", "timeout must be positive", ".timeout"),
        cel(POSITIVE_DURATION % "self.interval", "interval must be positive", ".interval"),
    )
    type: GateType = Field(
        description="pre-rollout: before the canary gets its first traffic; confirm-promotion: "
        "before the automatic promotion after the last step (`kanary promote --full` is a "
        "person's decision and is not gated)"
    )
    provider: str = Field(
        pattern=DNS_NAME,
        max_length=253,
        description="an AlertProvider of type webhook in the Rollout's namespace: the URL",
    )
    timeout: str = Field(default="5s", pattern=DURATION_PATTERN, max_length=64)
    interval: str = Field(default="5s", pattern=DURATION_PATTERN, max_length=64)

    @field_validator("timeout", "interval")
    @classmethod
    def _positive(cls, v: str, info: ValidationInfo) -> str:
        return _positive_duration(v, info)

    def timeout_seconds(self) -> float:
        return parse_duration(self.timeout)

    def interval_seconds(self) -> float:
        return parse_duration(self.interval)


def _positive_duration(v: str, info: ValidationInfo) -> str:
    if parse_duration(v) <= 0:
        raise ValueError(f"{to_camel(info.field_name or '')} must be positive")
    return v


# ---- the AlertProvider resource ------------------------------------------------------------------

PROVIDER_KIND = "AlertProvider"
PROVIDER_PLURAL = "alertproviders"


class SecretRef(ApiModel):
    name: str = Field(pattern=DNS_NAME, max_length=253, description="a Secret, same namespace")


class AlertProviderSpec(ApiModel):
    """Where alerts go. The URL (key `address`) and an optional bearer token (key `token`) are
    read from the Secret only, so they never appear in the resource."""

    model_config = api_config(
        cel(POSITIVE_DURATION % "self.timeout", "timeout must be positive", ".timeout"),
        cel(
            "!has(self.channel) || self.type == 'slack'",
            "channel is for type slack only",
            ".channel",
        ),
    )
    type: ProviderType = Field(
        description="alertmanager (API v2), slack (incoming webhook, Block Kit), msteams "
        "(workflow webhook, Adaptive Card) or webhook (Flagger's event webhook JSON)"
    )
    secret_ref: SecretRef = Field(
        description="Secret with key `address` (the URL) and optionally `token`"
    )
    channel: str | None = Field(default=None, max_length=80, description="slack: the channel")
    timeout: str = Field(default="5s", pattern=DURATION_PATTERN, max_length=64)

    @field_validator("timeout")
    @classmethod
    def _positive(cls, v: str, info: ValidationInfo) -> str:
        return _positive_duration(v, info)

    def timeout_seconds(self) -> float:
        return parse_duration(self.timeout)
