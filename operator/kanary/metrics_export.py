"""The operator's own /metrics: where every Rollout is, and what it measured last."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import make_server

from prometheus_client import Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler

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

LEADER = Gauge(
    "kanary_leader", "1 while this replica holds the Lease and may write, else 0", ["identity"]
)

_phases: dict[tuple[str, str], str] = {}
# (namespace, rollout) -> the label values of its series with a third label (metric, reason)
_extra: dict[tuple[str, str], set[tuple[str, str]]] = {}

Readiness = Callable[[], tuple[bool, str]]  # (ready, the one line the body says)


def serve(port: int, readiness: Readiness | None = None) -> None:
    """/metrics, and /readyz: 200 once the operator serves, its body "leader <identity>" or
    "standby (leader: <holder>)"; 503 before that."""
    metrics = make_wsgi_app()

    def app(environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/readyz":
            ready, line = readiness() if readiness is not None else (True, "ready")
            start(
                "200 OK" if ready else "503 Service Unavailable", [("Content-Type", "text/plain")]
            )
            return [line.encode() + b"\n"]
        return metrics(environ, start)  # type: ignore[no-any-return]

    server = make_server("0.0.0.0", port, app, ThreadingWSGIServer, handler_class=_SilentHandler)
    threading.Thread(target=server.serve_forever, daemon=True, name="metrics").start()


def record_leader(identity: str, leading: bool) -> None:
    LEADER.labels(identity).set(1 if leading else 0)


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
        _extra.setdefault((namespace, rollout), set()).add(("reason", reason))
    if new.phase != old.phase and new.phase == "Healthy" and old.phase == "Progressing":
        PROMOTIONS.labels(namespace, rollout).inc()


def record_analysis(namespace: str, rollout: str, outcome: AnalysisOutcome) -> None:
    for m in outcome.metrics:
        if m.value is not None:
            ANALYSIS_VALUE.labels(namespace, rollout, m.name).set(m.value)
            _extra.setdefault((namespace, rollout), set()).add(("metric", m.name))


def record_sequential(namespace: str, rollout: str, outcome: SequentialOutcome) -> None:
    SEQUENTIAL.labels(namespace, rollout).set(min(outcome.llr, 1e9))


def record_pod_ready(seconds: float) -> None:
    POD_READY.observe(seconds)


def forget(namespace: str, rollout: str) -> None:
    """The Rollout is gone: drop every series it had, so /metrics (and memory) stay bounded by
    the Rollouts that exist."""
    _phases.pop((namespace, rollout), None)
    for phase in PHASES:
        ROLLOUTS.labels(phase).set(sum(1 for p in _phases.values() if p == phase))
    series: list[tuple[Any, tuple[str, ...]]] = [
        (WEIGHT, ()),
        (STEPS, ()),
        (PROMOTIONS, ()),
        (SEQUENTIAL, ()),
    ]
    for kind, value in _extra.pop((namespace, rollout), set()):
        series.append((ROLLBACKS if kind == "reason" else ANALYSIS_VALUE, (value,)))
    for metric, extra in series:
        with contextlib.suppress(KeyError):  # a series it never had
            metric.remove(namespace, rollout, *extra)
