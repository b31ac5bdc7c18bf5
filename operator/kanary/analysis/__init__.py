"""Prometheus analysis: PromQL for a Rollout's tracks, typed answers, and the pure judgement.

The unit is split like Argo's AnalysisRun, apart from traffic routing and the canary maths:

- ``templating``: custom PromQL templates ({{namespace}} ...) and their run-time validation;
- ``builtin``: the built-in queries for the Gin service's metrics (error-rate, latency-p99,
  request count);
- ``source``: the ``MetricSource`` protocol and ``PrometheusSource`` (sync, with timeouts);
- ``judgement``: values against bounds, the overall verdict, the counters and limits the step
  engine applies (pure: no I/O, no clock);
- ``check``: one analysis check, gluing the above into an ``AnalysisOutcome``.
"""

from kanary.analysis.check import run_check
from kanary.analysis.judgement import (
    Limit,
    judge,
    limit_reached,
    limit_reason,
    may_advance,
    next_counters,
)
from kanary.analysis.source import (
    ManySeries,
    MetricSource,
    NoData,
    NotFinite,
    PrometheusSource,
    QueryError,
    QueryResult,
    Value,
)
from kanary.analysis.templating import Scope, TemplateError, render, template_errors

__all__ = [
    "Limit",
    "ManySeries",
    "MetricSource",
    "NoData",
    "NotFinite",
    "PrometheusSource",
    "QueryError",
    "QueryResult",
    "Scope",
    "TemplateError",
    "Value",
    "judge",
    "limit_reached",
    "limit_reason",
    "may_advance",
    "next_counters",
    "render",
    "run_check",
    "template_errors",
]
