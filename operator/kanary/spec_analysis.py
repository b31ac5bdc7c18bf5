"""The Rollout spec's analysis block (strategy.analysis): Prometheus, the metrics and their
bounds, the judges and the sequential test. Part of the models in kanary.spec (which re-exports
every name here), split out by concern."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic.alias_generators import to_camel

from kanary.apimodel import POSITIVE_DURATION, ApiModel, api_config, cel
from kanary.durations import DURATION_PATTERN, parse_duration

BUILTIN_METRICS = ("error-rate", "latency-p99", "latency-p50")


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
