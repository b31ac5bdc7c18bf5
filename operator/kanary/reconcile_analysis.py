"""The analysis part of one reconcile: where metrics are read, the interval check when it is
due, and the error rate's sequential test every tick (reconcile.py calls ``analyse``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from kanary import metrics_export
from kanary.analysis.check import run_check, run_sequential
from kanary.analysis.metrics_source import APP, GatewayClassSeen, Measurement, choose
from kanary.analysis.source import MetricSource
from kanary.engine import analysis_due, sequential_due
from kanary.observation import Observation
from kanary.spec import RolloutSpec
from kanary.status import RolloutStatus

SourceFor = Callable[[RolloutSpec], MetricSource]


def analyse(
    spec: RolloutSpec,
    current: RolloutStatus,
    obs: Observation,
    gateway_class: GatewayClassSeen | None,
    namespace: str,
    name: str,
    source_for: SourceFor,
) -> Observation:
    """The analysis check when one is due, and the error rate's sequential test every tick."""
    measurement = measurement_of(spec, gateway_class)
    now = obs.now
    source = source_for(spec)
    if analysis_due(spec, current, now):
        outcome = run_check(
            spec,
            source,
            namespace,
            name,
            current.canary_revision or "",
            current.stable_revision or "",
            now,
            measurement,
            current.rollout_started_at,
        )
        obs = dataclasses.replace(obs, analysis=outcome)
        metrics_export.record_analysis(namespace, name, outcome)
    since = current.rollout_started_at
    if sequential_due(spec, current) and isinstance(measurement, Measurement) and since:
        seq = run_sequential(
            spec,
            source,
            namespace,
            name,
            current.canary_revision,
            measurement,
            since,
            now,
        )
        obs = dataclasses.replace(obs, sequential=seq)
        if seq is not None:
            metrics_export.record_sequential(namespace, name, seq)
    return obs


def measurement_of(spec: RolloutSpec, gateway_class: GatewayClassSeen | None) -> Measurement | str:
    """Where this Rollout's built-in metrics are read, or why they cannot be."""
    analysis = spec.strategy.analysis
    if analysis is None:
        return APP
    routed = spec.traffic_routing is not None and spec.traffic_routing.gateway_api is not None
    if any(s.set_mirror is not None for s in spec.strategy.plan()):
        # the CRD refuses source gateway with setMirror; auto reads the app
        return Measurement(
            "app",
            why="app: setMirror: the gateway throws mirrored answers away, the canary counts them",
        )
    return choose(analysis, routed, gateway_class, spec.service.port)


def with_prometheus(spec: RolloutSpec, url: str) -> RolloutSpec:
    """The spec with the Prometheus URL the operator resolved for it."""
    analysis = spec.strategy.analysis
    assert analysis is not None
    prometheus = analysis.prometheus.model_copy(update={"url": url})
    strategy = spec.strategy.model_copy(
        update={"analysis": analysis.model_copy(update={"prometheus": prometheus})}
    )
    return spec.model_copy(update={"strategy": strategy})
