"""A small pure simulated world for the engine: Deployments that obey ApplyCanary/ApplyStable,
a route that records every weight written, a clock, and optional analysis verdicts.

The driver does what the I/O layer does each tick: observe, maybe run an analysis check,
decide, execute the actions in order, then persist the status (as JSON, as the API server would).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from kanary.actions import (
    Action,
    ApplyCanary,
    ApplyStable,
    EmitEvent,
    EnsureServices,
    ScaleStable,
    SetWeight,
)
from kanary.engine import Decision, analysis_due, decide, template_hash
from kanary.observation import (
    AnalysisOutcome,
    ManualAction,
    Observation,
    ReadinessFigures,
    TrackState,
)
from kanary.spec import RolloutSpec
from kanary.status import RolloutStatus, Verdict

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)

Analyst = Callable[["World"], Verdict | None]


def make_spec(**overrides: Any) -> RolloutSpec:
    """A gateway-mode Rollout; overrides replace top-level or strategy keys (camelCase)."""
    strategy: dict[str, Any] = {
        "steps": [
            {"setWeight": 5},
            {"pause": {"duration": "30s"}},
            {"setWeight": 25},
            {"pause": {"duration": "30s"}},
            {"setWeight": 50},
            {"pause": {"duration": "30s"}},
            {"setWeight": 100},
        ],
        "progressDeadlineSeconds": 120,
        "abortScaleDownDelaySeconds": 30,
    }
    body: dict[str, Any] = {
        "replicas": 4,
        "template": image_template("v1"),
        "trafficRouting": {"gatewayAPI": {"httpRoute": "demo"}},
    }
    for key, value in overrides.items():
        if key in (
            "steps",
            "analysis",
            "readiness",
            "progressDeadlineSeconds",
            "abortScaleDownDelaySeconds",
        ):
            strategy[key] = value
        else:
            body[key] = value
    body["strategy"] = strategy
    return RolloutSpec.model_validate({k: v for k, v in body.items() if v is not None})


def image_template(tag: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": "demo"}},
        "spec": {"containers": [{"name": "app", "image": f"demo:{tag}"}]},
    }


def analysis_spec(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "interval": "10s",
        "prometheus": {"url": "http://prom:9090"},
        "failureLimit": 2,
        "inconclusiveLimit": 3,
        "errorLimit": 3,
        "metrics": [{"name": "error-rate", "max": 0.01}],
    }
    body.update(overrides)
    return body


@dataclasses.dataclass
class World:
    """Deployments become Ready one tick after a write (unless canary_healthy is False)."""

    spec: RolloutSpec
    now: datetime = T0
    stable: TrackState = dataclasses.field(default_factory=TrackState)
    canary: TrackState = dataclasses.field(default_factory=TrackState)
    canary_healthy: bool = True
    stable_healthy: bool = True
    weights: list[int] = dataclasses.field(default_factory=list)
    writes: list[Action] = dataclasses.field(default_factory=list)
    events: list[EmitEvent] = dataclasses.field(default_factory=list)
    readiness: ReadinessFigures = dataclasses.field(default_factory=ReadinessFigures)
    route_problem: str | None = None
    invalid: str | None = None
    canary_trouble: str | None = None
    generation: int = 1
    # kanary's Services that exist (the engine sees the missing ones as services_drifted)
    services: set[str] = dataclasses.field(default_factory=set)

    def wanted_services(self) -> tuple[str, ...]:
        routing = self.spec.traffic_routing
        ratio = routing is None or routing.gateway_api is None
        return ("demo-stable", "demo-canary", *(("demo",) if ratio else ()))

    @property
    def template_hash(self) -> str:
        return template_hash(self.spec.template)

    def observe(
        self,
        manual: ManualAction | None = None,
        analysis: AnalysisOutcome | None = None,
        manual_id: str | None = None,
    ) -> Observation:
        return Observation(
            now=self.now,
            generation=self.generation,
            template_hash=self.template_hash,
            stable=self.stable,
            canary=self.canary,
            readiness=self.readiness,
            analysis=analysis,
            manual=manual,
            manual_id=manual_id,
            route_problem=self.route_problem,
            invalid=self.invalid,
            canary_trouble=self.canary_trouble,
            services_drifted=tuple(s for s in self.wanted_services() if s not in self.services),
        )

    def apply(self, actions: Sequence[Action]) -> None:
        for action in actions:
            match action:
                case EmitEvent():
                    self.events.append(action)
                case SetWeight(weight=w):
                    self.weights.append(w)
                    self.writes.append(action)
                case ApplyCanary(revision=rev, replicas=n):
                    self.canary = TrackState(True, rev, n, ready=0, settled=n == 0)
                    self.writes.append(action)
                case ApplyStable(revision=rev, replicas=n):
                    self.stable = TrackState(True, rev, n, ready=0, settled=n == 0)
                    self.writes.append(action)
                case ScaleStable(replicas=n):
                    self.stable = dataclasses.replace(
                        self.stable, replicas=n, ready=min(self.stable.ready, n), settled=False
                    )
                    self.writes.append(action)
                case EnsureServices(names=names):
                    self.services.update(names or self.wanted_services())
                    self.writes.append(action)

    def pass_time(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        if self.canary_healthy and self.canary.exists:
            self.canary = dataclasses.replace(self.canary, ready=self.canary.replicas, settled=True)
        if self.stable_healthy and self.stable.exists:
            self.stable = dataclasses.replace(self.stable, ready=self.stable.replicas, settled=True)

    def event_reasons(self) -> list[str]:
        return [e.reason for e in self.events]


def persist(status: RolloutStatus) -> RolloutStatus:
    """What the next tick reads back: the status as JSON through the API server."""
    return RolloutStatus.model_validate(status.to_patch())


@dataclasses.dataclass
class Driver:
    """Runs ticks like the I/O layer: observe, analysis when due, decide, act, persist."""

    world: World
    status: RolloutStatus = dataclasses.field(default_factory=RolloutStatus)
    analyst: Analyst | None = None
    tick_seconds: float = 1.0
    decisions: list[Decision] = dataclasses.field(default_factory=list)

    def tick(self, manual: ManualAction | None = None, manual_id: str | None = None) -> Decision:
        obs = self.world.observe(manual=manual, manual_id=manual_id)
        if self.analyst is not None and analysis_due(self.world.spec, self.status, obs.now):
            verdict = self.analyst(self.world)
            if verdict is not None:
                outcome = AnalysisOutcome(at=obs.now, verdict=verdict, summary=f"check {verdict}")
                obs = dataclasses.replace(obs, analysis=outcome)
        decision = decide(self.world.spec, self.status, obs)
        self.decisions.append(decision)
        self.world.apply(decision.actions)
        self.status = persist(decision.status)
        self.world.pass_time(self.tick_seconds)
        return decision

    def run_until(self, done: Callable[[RolloutStatus], bool], limit: int = 2000) -> RolloutStatus:
        """Tick at least once, then until `done` holds."""
        for _ in range(limit):
            self.tick()
            if done(self.status):
                return self.status
        raise AssertionError(f"not done after {limit} ticks: {self.status.message}")

    def run(self, ticks: int) -> RolloutStatus:
        for _ in range(ticks):
            self.tick()
        return self.status


def healthy_driver(spec: RolloutSpec, analyst: Analyst | None = None) -> Driver:
    """A Rollout already created and Healthy on `spec`'s template."""
    driver = Driver(World(spec), analyst=analyst)
    driver.run_until(lambda s: s.phase == "Healthy")
    return driver


def new_template(driver: Driver, tag: str) -> None:
    driver.world.spec = driver.world.spec.model_copy(
        update={"template": make_spec(template=image_template(tag)).template}
    )
    driver.world.generation += 1
