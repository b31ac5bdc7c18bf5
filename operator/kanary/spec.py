"""The Rollout spec: pydantic models that are both the operator's parsed view and the CRD source.

Field names are the API's camelCase (aliases); Python code uses snake_case. Every rule that the
API server can check lives here too (bounds, patterns, CEL via ``x-kubernetes-validations``), so
``crds/`` is generated from these models and nothing else (the analysis and traffic-routing
parts live in spec_analysis.py and spec_traffic.py; this module re-exports them).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict

from kanary.apimodel import ApiModel, api_config, cel
from kanary.durations import DURATION_PATTERN, parse_duration
from kanary.notify.spec import GateSpec, NotificationsSpec
from kanary.spec_analysis import (
    BUILTIN_METRICS,
    AnalysisSpec,
    Direction,
    Judge,
    MannWhitneySpec,
    MetricSpec,
    MetricsSource,
    OnInconclusive,
    PrometheusSpec,
    SequentialSpec,
)
from kanary.spec_traffic import (
    BlueGreen,
    CookieMatch,
    GatewayAPIRouting,
    HeaderMatch,
    HeaderRoute,
    HeaderValue,
    Mirror,
    TrafficRouting,
)

__all__ = [
    "BUILTIN_METRICS",
    "AnalysisSpec",
    "BlueGreen",
    "CookieMatch",
    "Direction",
    "GatewayAPIRouting",
    "HeaderMatch",
    "HeaderRoute",
    "HeaderValue",
    "Judge",
    "MannWhitneySpec",
    "MetricSpec",
    "MetricsSource",
    "Mirror",
    "OnInconclusive",
    "Pause",
    "Phase",
    "PodTemplate",
    "PrometheusSpec",
    "ReadinessSpec",
    "RolloutSpec",
    "SequentialSpec",
    "Step",
    "Strategy",
    "TrafficRouting",
]

API_GROUP = "kanary.dev"
API_VERSION = "v1alpha1"
KIND = "Rollout"
PLURAL = "rollouts"

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


class Pause(ApiModel):
    duration: str | None = Field(
        default=None,
        pattern=DURATION_PATTERN,
        description="How long to wait; omitted: wait for `kanary promote`",
    )

    def seconds(self) -> float | None:
        return None if self.duration is None else parse_duration(self.duration)


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


class ReadinessSpec(ApiModel):
    max_pod_ready_seconds: float | None = Field(
        default=None, gt=0, description="a canary pod slower to become Ready rolls back"
    )


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
