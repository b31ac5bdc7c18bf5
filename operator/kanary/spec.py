"""The Rollout spec: pydantic models that are both the operator's parsed view and the CRD source.

Field names are the API's camelCase (aliases); Python code uses snake_case. Every rule that the
API server can check lives here too (bounds, patterns, CEL via ``x-kubernetes-validations``), so
``crds/`` is generated from this file and nothing else.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

from kanary.apimodel import POSITIVE_DURATION, ApiModel, api_config, cel
from kanary.durations import DURATION_PATTERN, parse_duration
from kanary.notify.spec import GateSpec, NotificationsSpec

API_GROUP = "kanary.dev"
API_VERSION = "v1alpha1"
KIND = "Rollout"
PLURAL = "rollouts"

BUILTIN_METRICS = ("error-rate", "latency-p99", "latency-p50")
HEADERS_NEED_ROUTE = (
    "strategy.steps: setHeaderRoute and setMirror need spec.trafficRouting.gatewayAPI: they "
    "are HTTPRoute rules and filters"
)
MIRROR_NEEDS_APP = (
    "strategy.analysis.source gateway cannot judge setMirror: the gateway throws mirrored "
    "answers away; use app (the canary's own metrics) or auto"
)
BLUE_GREEN_NEEDS_ROUTE = (
    "strategy.blueGreen needs spec.trafficRouting.gatewayAPI: the switch is a route write"
)
GATEWAY_NEEDS_ROUTE = (
    "strategy.analysis.source gateway needs spec.trafficRouting.gatewayAPI: the gateway's "
    "metrics are per HTTPRoute backend"
)


Duration = Field(pattern=DURATION_PATTERN, description="Go-style duration: 500ms, 10s, 5m, 1h")


class LabelSelector(ApiModel):
    match_labels: dict[str, str] = Field(
        min_length=1,
        max_length=64,
        json_schema_extra={"additionalProperties": {"type": "string", "maxLength": 63}},
    )


# CEL sees only fields a schema declares, so the parts of the PodTemplateSpec that kanary and the
# rules read are declared; the rest passes through (the API server validates it in the Deployment).
_TEMPLATE_METADATA_SCHEMA: JsonDict = {
    "x-kubernetes-preserve-unknown-fields": True,
    "properties": {
        "labels": {
            "type": "object",
            "maxProperties": 64,
            "additionalProperties": {"type": "string", "maxLength": 63},
        }
    },
}
_POD_SPEC_SCHEMA: JsonDict = {
    "x-kubernetes-preserve-unknown-fields": True,
    "required": ["containers"],
    "properties": {
        "containers": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "image"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "image": {"type": "string", "minLength": 1},
                },
                "x-kubernetes-preserve-unknown-fields": True,
            },
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        }
    },
}


class PodTemplate(ApiModel):
    """A PodTemplateSpec. kanary reads labels and container images; the rest is passed through."""

    model_config = api_config(**{"x-kubernetes-embedded-resource": False})
    metadata: dict[str, Any] = Field(
        default_factory=dict, json_schema_extra=_TEMPLATE_METADATA_SCHEMA
    )
    spec: dict[str, Any] = Field(json_schema_extra=_POD_SPEC_SCHEMA)

    @field_validator("spec")
    @classmethod
    def _has_containers(cls, v: dict[str, Any]) -> dict[str, Any]:
        if not v.get("containers"):
            raise ValueError("spec.template.spec.containers must list at least one container")
        return v

    def labels(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in (self.metadata.get("labels") or {}).items()}

    def images(self) -> list[str]:
        return [str(c.get("image", "")) for c in self.spec.get("containers", [])]


class ServiceSpec(ApiModel):
    port: int = Field(default=80, ge=1, le=65535)
    target_port: int | str = Field(
        default="http", json_schema_extra={"x-kubernetes-int-or-string": True}
    )


class GatewayAPIRouting(ApiModel):
    http_route: str = Field(min_length=1, max_length=253, description="HTTPRoute name, same ns")
    rule: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        description="name of the HTTPRoute rule whose two weights kanary owns; omitted: the one "
        "rule that references both <name>-stable and <name>-canary",
    )


class TrafficRouting(ApiModel):
    gateway_api: GatewayAPIRouting | None = Field(default=None, alias="gatewayAPI")


class Pause(ApiModel):
    duration: str | None = Field(
        default=None,
        pattern=DURATION_PATTERN,
        description="How long to wait; omitted: wait for `kanary promote`",
    )

    def seconds(self) -> float | None:
        return None if self.duration is None else parse_duration(self.duration)


# Gateway API's HTTPHeaderName (RFC 7230 token) and a cookie name (RFC 6265 token).
_TOKEN = r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$"
# RE2 (Go's regexp, which Traefik and most implementations use) has no look-around and no
# backreferences; Python's re would accept them, so they are refused by name.
_NOT_RE2 = ("(?=", "(?!", "(?<=", "(?<!", "(?P=", "(?#")


class HeaderValue(ApiModel):
    model_config = api_config(
        cel(
            "[has(self.exact), has(self.prefix), has(self.regex)].filter(x, x).size() == 1",
            "headerValue needs exactly one of exact, prefix, regex",
        )
    )
    exact: str | None = Field(default=None, min_length=1, max_length=4096)
    prefix: str | None = Field(default=None, min_length=1, max_length=4000)
    regex: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="RE2; Traefik searches it anywhere in the value: anchor it with ^ and $",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> HeaderValue:
        if sum(v is not None for v in (self.exact, self.prefix, self.regex)) != 1:
            raise ValueError("headerValue needs exactly one of exact, prefix, regex")
        if self.regex is not None:
            _check_re2(self.regex)
        return self


def _check_re2(pattern: str) -> None:
    bad = next((b for b in _NOT_RE2 if b in pattern), None)
    if bad is None and re.search(r"\\[1-9]", pattern):
        bad = "a backreference"
    if bad is not None:
        raise ValueError(f"regex {pattern!r}: {bad} is not RE2 (the gateway's regex syntax)")
    try:
        re.compile(pattern)
    except re.error as e:
        raise ValueError(f"regex {pattern!r}: {e}") from e


class CookieMatch(ApiModel):
    name: str = Field(min_length=1, max_length=256, pattern=_TOKEN)
    value: str = Field(min_length=1, max_length=1024, pattern=r"^[^;,\s]+$")


class HeaderMatch(ApiModel):
    """One request header (or a cookie, matched in the Cookie header) the canary's requests
    carry. All the matches of a setHeaderRoute must hold."""

    model_config = api_config(
        cel(
            "has(self.cookie) != (has(self.headerName) && has(self.headerValue))"
            " && (has(self.headerName) == has(self.headerValue))",
            "a match is either headerName with headerValue, or cookie",
        )
    )
    header_name: str | None = Field(default=None, min_length=1, max_length=256, pattern=_TOKEN)
    header_value: HeaderValue | None = None
    cookie: CookieMatch | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> HeaderMatch:
        named = self.header_name is not None and self.header_value is not None
        if named == (self.cookie is not None) or (self.header_name is None) != (
            self.header_value is None
        ):
            raise ValueError("a match is either headerName with headerValue, or cookie")
        return self

    def header(self) -> str:
        """The request header this match reads, lower case."""
        return "cookie" if self.cookie is not None else (self.header_name or "").lower()

    def describe(self) -> str:
        """'X-Canary: always', 'X-Canary: ^beta', 'cookie canary=yes' (status and Events)."""
        if self.cookie is not None:
            return f"cookie {self.cookie.name}={self.cookie.value}"
        value = self.header_value or HeaderValue(exact="")
        if value.exact is not None:
            return f"{self.header_name}: {value.exact}"
        if value.prefix is not None:
            return f"{self.header_name}: {value.prefix}*"
        return f"{self.header_name} ~ /{value.regex}/"


class HeaderRoute(ApiModel):
    match: list[HeaderMatch] = Field(
        default_factory=list,
        max_length=8,
        description="requests carrying all of these go to the canary; empty: the header "
        "route is removed",
    )

    @field_validator("match")
    @classmethod
    def _one_per_header(cls, match: list[HeaderMatch]) -> list[HeaderMatch]:
        seen: set[str] = set()
        for i, m in enumerate(match):
            if m.header() in seen:
                raise ValueError(
                    f"match[{i}]: a second match on header {m.header()!r} (a cookie is the "
                    "Cookie header): the gateway would require both"
                )
            seen.add(m.header())
        return match

    def describe(self) -> str:
        return " and ".join(m.describe() for m in self.match)


class Mirror(ApiModel):
    percent: int = Field(
        ge=0,
        le=100,
        description="of the owned rule's requests, copied to the canary (answers thrown away); "
        "0: the mirror is removed",
    )


class Step(ApiModel):
    model_config = api_config(
        cel(
            "[has(self.setWeight), has(self.pause), has(self.setHeaderRoute),"
            " has(self.setMirror)].filter(x, x).size() == 1",
            "a step is one of setWeight, pause, setHeaderRoute, setMirror",
        )
    )
    set_weight: int | None = Field(default=None, ge=0, le=100)
    pause: Pause | None = None
    set_header_route: HeaderRoute | None = Field(
        default=None,
        description="requests matching these headers go to the canary, whatever the weight "
        "(a rule kanary adds to the HTTPRoute; removed at promotion and rollback)",
    )

    set_mirror: Mirror | None = Field(
        default=None,
        description="a RequestMirror filter on the owned rule copies this percent of its "
        "requests to the canary (the GatewayClass must list HTTPRouteRequestMirror)",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Step:
        kinds = (self.set_weight, self.pause, self.set_header_route, self.set_mirror)
        if sum(k is not None for k in kinds) != 1:
            raise ValueError("a step is one of setWeight, pause, setHeaderRoute, setMirror")
        return self


class OnInconclusive(StrEnum):
    PAUSE = "pause"
    ROLLBACK = "rollback"


class MetricsSource(StrEnum):
    AUTO = "auto"
    APP = "app"
    GATEWAY = "gateway"


class Judge(StrEnum):
    THRESHOLD = "threshold"
    MANN_WHITNEY = "mannWhitney"


class Direction(StrEnum):
    INCREASE = "increase"
    DECREASE = "decrease"
    EITHER = "either"


class MannWhitneySpec(ApiModel):
    model_config = api_config(
        cel(POSITIVE_DURATION % "self.step", "step must be positive", ".step"),
        cel("self.marginal <= self.pass", "marginal must not exceed pass", ".marginal"),
    )
    confidence: float = Field(
        default=0.98, ge=0.5, le=0.9999, description="of the two-sided Mann-Whitney U test"
    )
    pass_score: float = Field(
        default=90, ge=0, le=100, alias="pass", description="score (0-100) that passes"
    )
    marginal: float = Field(
        default=75,
        ge=0,
        le=100,
        description="score at or above: Inconclusive (held); below: Fail",
    )
    step: str = Field(
        default="2s",
        pattern=DURATION_PATTERN,
        max_length=64,
        description="one sample per step over the window; each over twice this range",
    )

    def step_seconds(self) -> float:
        return parse_duration(self.step)

    @model_validator(mode="after")
    def _ordered(self) -> MannWhitneySpec:
        if self.marginal > self.pass_score:
            raise ValueError("marginal must not exceed pass")
        if self.step_seconds() <= 0:
            raise ValueError("step must be positive")
        return self


class PrometheusSpec(ApiModel):
    model_config = api_config(
        cel(POSITIVE_DURATION % "self.timeout", "timeout must be positive", ".timeout")
    )
    url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="Prometheus base URL; omitted: the operator's default. Only URLs the "
        "operator allows (--allow-prometheus-url) are used",
    )
    timeout: str = Field(default="5s", pattern=DURATION_PATTERN, max_length=64)

    @field_validator("timeout")
    @classmethod
    def _positive(cls, v: str) -> str:
        if parse_duration(v) <= 0:
            raise ValueError("timeout must be positive")
        return v


class MetricSpec(ApiModel):
    model_config = api_config(
        cel(
            "has(self.query) || self.name in ['error-rate', 'latency-p99', 'latency-p50']",
            "a metric other than error-rate, latency-p99 or latency-p50 needs a query",
        ),
        cel(
            "!has(self.min) || !has(self.max) || self.min <= self.max",
            "min must not exceed max",
        ),
    )
    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    query: str | None = Field(
        default=None,
        min_length=1,
        description="PromQL; {{namespace}} {{rollout}} {{track}} {{revision}} {{window}}",
    )
    min: float | None = None
    max: float | None = None
    max_increase: float | None = Field(
        default=None, ge=0, description="canary may exceed the stable track by at most this"
    )
    max_ratio: float | None = Field(
        default=None, gt=0, description="canary / stable may be at most this"
    )
    # judge: mannWhitney (Kayenta's NetflixACAJudge fields)
    direction: Direction = Field(
        default=Direction.INCREASE,
        description="mannWhitney: the change that fails (increase: higher than stable)",
    )
    allowed_increase: float | None = Field(
        default=None,
        gt=0,
        description="mannWhitney: a significant increase fails only when canary mean / stable "
        "mean reaches this (default 1.0: any)",
    )
    critical_increase: float | None = Field(
        default=None, gt=0, description="mannWhitney: with critical, this ratio fails the run"
    )
    critical: bool = Field(
        default=False, description="mannWhitney: High (or no data) fails the whole check"
    )
    must_have_data: bool = Field(
        default=False, description="mannWhitney: no samples counts as a failed metric"
    )

    def bounded(self) -> bool:
        return any(b is not None for b in (self.min, self.max, self.max_increase, self.max_ratio))

    @model_validator(mode="after")
    def _bounded(self) -> MetricSpec:
        if self.query is None and self.name not in BUILTIN_METRICS:
            raise ValueError(
                f"metric {self.name}: needs a query (built-ins: {', '.join(BUILTIN_METRICS)})"
            )
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"metric {self.name}: min must not exceed max")
        return self


class SequentialSpec(ApiModel):
    enabled: bool = Field(
        default=True,
        description="test the built-in error-rate every tick and roll back as soon as the "
        "evidence is conclusive, without waiting for minRequests or the next interval",
    )
    confidence: float = Field(
        default=0.98,
        ge=0.5,
        le=0.9999,
        description="a canary at or below the error-rate max is rolled back by the test with "
        "probability at most 1 - confidence",
    )
    bad_rate: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="the error rate the test is built to catch fast; default 10 x max (at "
        "least max + 0.01, at most 0.5)",
    )


class AnalysisSpec(ApiModel):
    model_config = api_config(
        cel(POSITIVE_DURATION % "self.interval", "interval must be positive", ".interval"),
        cel(POSITIVE_DURATION % "self.window", "window must be positive", ".window"),
        cel(
            "(has(self.judge) && self.judge == 'mannWhitney') || self.metrics.all(m, has(m.min)"
            " || has(m.max) || has(m.maxIncrease) || has(m.maxRatio))",
            "each metric needs a bound (min, max, maxIncrease or maxRatio) unless judge is "
            "mannWhitney",
            ".metrics",
        ),
    )
    interval: str = Field(default="10s", pattern=DURATION_PATTERN, max_length=64)
    window: str = Field(default="30s", pattern=DURATION_PATTERN, max_length=64)
    prometheus: PrometheusSpec = Field(
        default_factory=PrometheusSpec, description="omitted: the operator's default Prometheus"
    )
    source: MetricsSource = Field(
        default=MetricsSource.AUTO,
        description="where the built-in metrics (error-rate, latency-p99) and minRequests are "
        "read: app (the service's own http_requests_total and "
        "http_request_duration_seconds), gateway (the Gateway implementation's metrics per "
        "backend: Traefik, Istio), auto (gateway when the HTTPRoute's GatewayClass is one "
        "kanary knows, else app)",
    )
    min_requests: int = Field(
        default=50,
        ge=0,
        description="canary requests in the window before a metric is judged, counted at the "
        "source",
    )
    judge: Judge = Field(
        default=Judge.THRESHOLD,
        description="threshold: each metric against its bounds; mannWhitney: canary against "
        "stable samples over the window (Kayenta's NetflixACAJudge)",
    )
    mann_whitney: MannWhitneySpec = Field(default_factory=MannWhitneySpec)
    sequential: SequentialSpec = Field(
        default_factory=SequentialSpec,
        description="the error-rate's sequential test (analysis/sequential.py)",
    )
    failure_limit: int = Field(default=2, ge=1)
    inconclusive_limit: int = Field(default=6, ge=1)
    on_inconclusive: OnInconclusive = OnInconclusive.PAUSE
    error_limit: int = Field(
        default=3, ge=1, description="consecutive Prometheus errors that roll back"
    )
    metrics: list[MetricSpec] = Field(
        min_length=1,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
    )

    def interval_seconds(self) -> float:
        return parse_duration(self.interval)

    def window_seconds(self) -> float:
        return parse_duration(self.window)

    @model_validator(mode="after")
    def _bounded(self) -> AnalysisSpec:
        if self.judge != Judge.MANN_WHITNEY:
            for i, m in enumerate(self.metrics):
                if not m.bounded():
                    raise ValueError(
                        f"metrics[{i}] {m.name}: needs a bound (min, max, maxIncrease or "
                        "maxRatio) unless judge is mannWhitney"
                    )
        return self

    @field_validator("metrics")
    @classmethod
    def _unique_names(cls, metrics: list[MetricSpec]) -> list[MetricSpec]:
        # The CRD's list-map on name makes the API server refuse duplicates the same way.
        seen: set[str] = set()
        for i, m in enumerate(metrics):
            if m.name in seen:
                raise ValueError(f"metrics[{i}]: duplicate name {m.name!r}")
            seen.add(m.name)
        return metrics

    @field_validator("interval", "window")
    @classmethod
    def _positive(cls, v: str, info: ValidationInfo) -> str:
        if parse_duration(v) <= 0:
            raise ValueError(f"{to_camel(info.field_name or '')} must be positive")
        return v


class ReadinessSpec(ApiModel):
    max_pod_ready_seconds: float | None = Field(
        default=None, gt=0, description="a canary pod slower to become Ready rolls back"
    )


class BlueGreen(ApiModel):
    """The new version comes up at full size behind <name>-canary (the preview) with no live
    traffic; all traffic switches to it in one write; the old version is kept, at full size, for
    scaleDownDelaySeconds after the switch, while post-promotion analysis can switch back."""

    preview_header: list[HeaderMatch] = Field(
        default_factory=list,
        max_length=8,
        description="requests with these headers reach the preview before the switch (and "
        "pre-promotion analysis judges them); omitted: only through Service <name>-canary",
    )
    auto_promotion_seconds: int | None = Field(
        default=None,
        ge=0,
        description="switch this long after the preview is Ready (and its analysis passes); "
        "omitted: wait for `kanary promote`",
    )

    @field_validator("preview_header")
    @classmethod
    def _one_per_header(cls, match: list[HeaderMatch]) -> list[HeaderMatch]:
        return HeaderRoute(match=match).match


class Strategy(ApiModel):
    model_config = api_config(
        cel(
            "has(self.blueGreen) != (has(self.steps) && size(self.steps) > 0)",
            "give either steps (a canary) or blueGreen",
            ".steps",
        ),
        cel(
            "!has(self.steps) || self.steps.filter(s, has(s.setWeight))"
            ".map(s, s.setWeight).isSorted()",
            "setWeight values never decrease from one step to the next",
            ".steps",
        ),
        cel(
            "!has(self.steps) || size(self.steps) == 0 || self.steps.exists(s, has(s.setWeight))",
            "steps need at least one setWeight",
            ".steps",
        ),
        cel(
            "!has(self.gates) || self.gates.all(g, self.gates.exists_one(h, h.type == g.type))",
            "each gate type may be listed once",
            ".gates",
        ),
    )
    steps: list[Step] = Field(default_factory=list, max_length=50)
    blue_green: BlueGreen | None = Field(
        default=None, description="blue-green instead of canary steps (needs gatewayAPI)"
    )
    analysis: AnalysisSpec | None = None
    readiness: ReadinessSpec = Field(default_factory=ReadinessSpec)
    progress_deadline_seconds: int = Field(default=600, ge=1)
    abort_scale_down_delay_seconds: int = Field(default=30, ge=0)
    unavailable_grace_seconds: int = Field(
        default=30,
        ge=0,
        description="a canary with traffic but no Ready pod gets weight 0 at once, and is rolled "
        "back (CanaryUnavailable) when it has no Ready pod for this long",
    )
    scale_down_delay_seconds: int = Field(
        default=30,
        ge=0,
        description="after promotion, seconds before the old canary goes to 0 pods, so the "
        "router has stopped sending it traffic first; blueGreen: also how long after the "
        "switch the old version is kept, at full size, while analysis can switch back",
    )
    gates: list[GateSpec] = Field(
        default_factory=list,
        max_length=2,
        description="webhooks asked before acting: pre-rollout, confirm-promotion",
    )

    @field_validator("gates")
    @classmethod
    def _one_gate_per_type(cls, gates: list[GateSpec]) -> list[GateSpec]:
        types = [g.type for g in gates]
        if len(set(types)) != len(types):
            raise ValueError("each gate type may be listed once")
        return gates

    def gate(self, kind: str) -> GateSpec | None:
        return next((g for g in self.gates if g.type == kind), None)

    def plan(self) -> list[Step]:
        """The steps the engine runs: `steps`, or blueGreen's: the preview (header route),
        the wait for promotion, the switch, the post-promotion window."""
        if self.blue_green is None:
            return self.steps
        bg = self.blue_green
        seconds = bg.auto_promotion_seconds
        return [
            Step(set_header_route=HeaderRoute(match=bg.preview_header)),
            Step(pause=Pause(duration=None if seconds is None else f"{seconds}s")),
            Step(set_weight=100),
            Step(pause=Pause(duration=f"{self.scale_down_delay_seconds}s")),
        ]

    def is_blue_green(self) -> bool:
        return self.blue_green is not None

    @model_validator(mode="after")
    def _steps_or_blue_green(self) -> Strategy:
        if (self.blue_green is None) == (not self.steps):
            raise ValueError("give either steps (a canary) or blueGreen")
        return self

    @field_validator("steps")
    @classmethod
    def _weights_never_decrease(cls, steps: list[Step]) -> list[Step]:
        if steps and not any(s.set_weight is not None for s in steps):
            raise ValueError("steps need at least one setWeight")
        last = 0
        for i, step in enumerate(steps):
            if step.set_weight is None:
                continue
            if step.set_weight < last:
                raise ValueError(
                    f"steps[{i}].setWeight {step.set_weight} is below an earlier weight {last}: "
                    "weights never decrease"
                )
            last = step.set_weight
        return steps


class RolloutSpec(ApiModel):
    model_config = api_config(
        cel(
            "has(self.selector) || !has(self.template) || (has(self.template.metadata)"
            " && has(self.template.metadata.labels)"
            " && size(self.template.metadata.labels) > 0)",
            "spec.template.metadata.labels: needed when spec.selector is omitted",
            ".template.metadata.labels",
        ),
        cel(
            "!has(self.selector) || !has(self.template) || self.selector.matchLabels.all(k,"
            " has(self.template.metadata) && has(self.template.metadata.labels)"
            " && k in self.template.metadata.labels"
            " && self.template.metadata.labels[k] == self.selector.matchLabels[k])",
            "spec.selector.matchLabels must match spec.template.metadata.labels",
            ".selector.matchLabels",
        ),
        cel(
            "has(self.selector) == has(oldSelf.selector)"
            " && (!has(self.selector) || self.selector == oldSelf.selector)",
            "spec.selector is immutable: its Deployments' selectors cannot change; "
            "create a new Rollout instead",
            ".selector",
        ),
        cel(
            "!has(self.strategy.analysis) || !has(self.strategy.analysis.source)"
            " || self.strategy.analysis.source != 'gateway'"
            " || (has(self.trafficRouting) && has(self.trafficRouting.gatewayAPI))",
            GATEWAY_NEEDS_ROUTE,
            ".strategy.analysis.source",
        ),
        cel(
            "!has(self.strategy.steps) || !self.strategy.steps.exists(s, has(s.setHeaderRoute)"
            " || has(s.setMirror))"
            " || (has(self.trafficRouting) && has(self.trafficRouting.gatewayAPI))",
            HEADERS_NEED_ROUTE,
            ".strategy.steps",
        ),
        cel(
            "!has(self.strategy.steps) || !self.strategy.steps.exists(s, has(s.setMirror))"
            " || !has(self.strategy.analysis) || !has(self.strategy.analysis.source)"
            " || self.strategy.analysis.source != 'gateway'",
            MIRROR_NEEDS_APP,
            ".strategy.analysis.source",
        ),
        cel(
            "!has(self.strategy.blueGreen)"
            " || (has(self.trafficRouting) && has(self.trafficRouting.gatewayAPI))",
            BLUE_GREEN_NEEDS_ROUTE,
            ".strategy.blueGreen",
        ),
    )
    replicas: int = Field(default=1, ge=1, le=1000)
    selector: LabelSelector | None = None
    template: PodTemplate
    service: ServiceSpec = Field(default_factory=ServiceSpec)
    traffic_routing: TrafficRouting | None = None
    strategy: Strategy
    notifications: NotificationsSpec | None = Field(
        default=None, description="alerts to Alertmanager, Slack, Teams or webhooks"
    )

    def selector_labels(self) -> dict[str, str]:
        """The user's part of the track selectors: spec.selector only. Without it kanary selects
        by its own labels alone, so a template label edit cannot re-point a Service."""
        return dict(self.selector.match_labels) if self.selector else {}

    @model_validator(mode="after")
    def _selector_matches_template(self) -> RolloutSpec:
        labels = self.template.labels()
        if not self.selector and not labels:
            raise ValueError("spec.template.metadata.labels: needed when spec.selector is omitted")
        missing = {k: v for k, v in self.selector_labels().items() if labels.get(k) != v}
        if missing:
            raise ValueError(
                f"spec.selector.matchLabels {missing} do not match spec.template.metadata.labels"
            )
        analysis = self.strategy.analysis
        routed = self.traffic_routing is not None and self.traffic_routing.gateway_api is not None
        if analysis and analysis.source == MetricsSource.GATEWAY and not routed:
            raise ValueError(GATEWAY_NEEDS_ROUTE)
        if not routed and any(
            s.set_header_route is not None or s.set_mirror is not None for s in self.strategy.steps
        ):
            raise ValueError(HEADERS_NEED_ROUTE)
        mirrored = any(s.set_mirror is not None for s in self.strategy.steps)
        if mirrored and analysis and analysis.source == MetricsSource.GATEWAY:
            raise ValueError(MIRROR_NEEDS_APP)
        if not routed and self.strategy.blue_green is not None:
            raise ValueError(BLUE_GREEN_NEEDS_ROUTE)
        return self


Phase = Literal["Healthy", "Progressing", "Paused", "RolledBack", "Invalid"]
