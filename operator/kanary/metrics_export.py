"""The operator's own /metrics: where every Rollout is, and what it measured last."""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from kanary.observation import AnalysisOutcome, SequentialOutcome
from kanary.status import RolloutStatus

PHASES = ("Healthy", "Progressing", "Paused", "RolledBack", "Invalid")

ROLLOUTS = Gauge("kanary_rollouts", "Rollouts by phase", ["phase"])
WEIGHT = Gauge("kanary_canary_weight", "Canary traffic weight (%)", ["namespace", "rollout"])
STEPS = Counter("kanary_steps_total", "Steps completed", ["namespace", "rollout"])
ROLLBACKS = Counter("kanary_rollbacks_total", "Rollbacks", ["namespace", "rollout", "reason"])
PROMOTIONS = Counter("kanary_promotions_total", "Promotions", ["namespace", "rollout"])
POD_READY = Histogram(
    "kanary_pod_ready_seconds",
    "Canary pod creation to Ready",
    buckets=(0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60, 120, 300),
)
ANALYSIS_VALUE = Gauge(
    "kanary_analysis_value", "Last measured value per metric", ["namespace", "rollout", "metric"]
)
SEQUENTIAL = Gauge(
    "kanary_analysis_sequential_log_likelihood_ratio",
    "The error rate's sequential test this tick: ln(P(counts | badRate) / P(counts | max)); "
    "the canary is rolled back at ln(1 / (1 - confidence))",
    ["namespace", "rollout"],
)

_phases: dict[tuple[str, str], str] = {}


def serve(port: int) -> None:
    start_http_server(port)


def record_status(namespace: str, rollout: str, old: RolloutStatus, new: RolloutStatus) -> None:
    WEIGHT.labels(namespace, rollout).set(new.canary_weight)
    if new.phase:
        _phases[(namespace, rollout)] = new.phase
    for phase in PHASES:
        ROLLOUTS.labels(phase).set(sum(1 for p in _phases.values() if p == phase))
    old_step, new_step = old.current_step_index, new.current_step_index
    if old_step is not None and new_step is not None and new_step > old_step:
        STEPS.labels(namespace, rollout).inc(new_step - old_step)
    if new.phase != old.phase and new.phase == "RolledBack":
        reason = next((c.reason for c in new.conditions if c.type == "RolledBack"), "Unknown")
        ROLLBACKS.labels(namespace, rollout, reason).inc()
    if new.phase != old.phase and new.phase == "Healthy" and old.phase == "Progressing":
        PROMOTIONS.labels(namespace, rollout).inc()


def record_analysis(namespace: str, rollout: str, outcome: AnalysisOutcome) -> None:
    for m in outcome.metrics:
        if m.value is not None:
            ANALYSIS_VALUE.labels(namespace, rollout, m.name).set(m.value)


def record_sequential(namespace: str, rollout: str, outcome: SequentialOutcome) -> None:
    SEQUENTIAL.labels(namespace, rollout).set(min(outcome.llr, 1e9))


def record_pod_ready(seconds: float) -> None:
    POD_READY.observe(seconds)


def forget(namespace: str, rollout: str) -> None:
    _phases.pop((namespace, rollout), None)
    with contextlib.suppress(KeyError):  # never tested
        SEQUENTIAL.remove(namespace, rollout)
