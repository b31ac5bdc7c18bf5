"""What the operator saw this tick: the pure engine's only window on the world."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from kanary.status import MetricResult, Verdict

ManualAction = Literal["promote", "promote-full", "abort", "retry", "pause", "resume"]
MANUAL_ACTIONS: tuple[ManualAction, ...] = (
    "promote",
    "promote-full",
    "abort",
    "retry",
    "pause",
    "resume",
)


@dataclass(frozen=True)
class TrackState:
    """One Deployment (<name>-stable or <name>-canary) as last read; exists=False if absent."""

    exists: bool = False
    revision: str | None = None  # kanary.dev/revision of its pod template
    replicas: int = 0  # spec.replicas
    # status.readyReplicas of the current revision, or its pods as the watch saw them when
    # they are ahead of the Deployment's status (reconcile_state.with_pods)
    ready: int = 0
    settled: bool = False  # observedGeneration caught up and all replicas updated + ready
    images: str = ""  # the pod template's container images, comma-separated (for kubectl get)
    # A field kanary sets in the template differs from what kanary would apply for `revision`
    # (an edit by hand or by another tool); only known when `revision` is the spec's template.
    drifted: bool = False


@dataclass(frozen=True)
class PodTiming:
    name: str
    created: datetime
    ready_at: datetime | None  # first time seen Ready (watch), None while not Ready


@dataclass(frozen=True)
class ReadinessFigures:
    count: int = 0  # pods that became Ready
    p50_seconds: float | None = None
    max_seconds: float | None = None
    slowest_pod: str | None = None
    oldest_unready_seconds: float | None = None  # age now of the oldest pod not yet Ready
    oldest_unready_pod: str | None = None


@dataclass(frozen=True)
class AnalysisOutcome:
    """One completed analysis check (the analysis unit's verdict over all metrics)."""

    at: datetime
    verdict: Verdict
    metrics: tuple[MetricResult, ...] = ()
    summary: str = ""  # one line on-call reads: "error-rate 12.4% > 1.0% over 30s, 640 requests"
    source: str = ""  # where the built-ins were read (metrics_source.Measurement.why)
    score: float | None = None  # judge mannWhitney's score, 0..100


@dataclass(frozen=True)
class SequentialOutcome:
    """This tick's sequential test of the canary's error rate (analysis/sequential.py)."""

    at: datetime
    errors: int
    requests: int
    llr: float  # ln of the likelihood ratio, bad rate : max
    threshold: float  # ln(1 / (1 - confidence))
    rejects: bool  # conclusive: roll back
    reason: str  # one line for on-call


@dataclass(frozen=True)
class GateOutcome:
    """A gate's answer this tick (asked because status.gate said the engine waits for it)."""

    type: str
    revision: str
    passed: bool  # a 2xx answer
    message: str  # "HTTP 200", "HTTP 500: not yet", "timed out after 5s"


@dataclass(frozen=True)
class Observation:
    now: datetime
    generation: int
    template_hash: str
    stable: TrackState = field(default_factory=TrackState)
    canary: TrackState = field(default_factory=TrackState)
    readiness: ReadinessFigures = field(default_factory=ReadinessFigures)
    analysis: AnalysisOutcome | None = None  # a check that finished this tick, if any
    manual: ManualAction | None = None
    # Identifies one request for `manual` (e.g. the annotation's value); the engine applies a
    # given id once, so a request seen again after a restart is not applied twice. None: no id.
    manual_id: str | None = None
    route_problem: str | None = None  # the router could not write weights, and why
    # The (stable, canary) weights the owned HTTPRoute rule holds now (watch cache); None: not
    # known (no route, a route problem, or replica-ratio mode, where pods are the weight).
    route_split: tuple[int, int] | None = None
    # The route's kanary header rule differs from the one the incoming status's header route
    # needs (missing, edited, or stale against the user's rule it copies), or exists when none
    # is in force.
    header_rule_drifted: bool = False
    # The owned rule's mirror filter differs from the incoming status' mirror (or exists when
    # none is in force).
    mirror_drifted: bool = False
    # kanary's Services that are missing or whose selector/ports drifted (names).
    services_drifted: tuple[str, ...] = ()
    invalid: str | None = None  # a run-time validation failure (e.g. unknown template variable)
    # A canary pod whose container does not run, and why ("pod x: container app exited with
    # code 2 - CrashLoopBackOff after 3 restarts"); named in the rollback message.
    canary_trouble: str | None = None
    gate: GateOutcome | None = None  # the answer of the gate the engine waits for, if asked
    sequential: SequentialOutcome | None = None  # the error-rate's sequential test this tick
