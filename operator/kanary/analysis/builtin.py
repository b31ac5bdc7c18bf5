"""Built-in PromQL for the Gin service's metrics, scoped to one track of one Rollout.

The service exports ``http_requests_total{code,method,route}`` and the histogram
``http_request_duration_seconds``. Prometheus relabels each pod's kanary.dev/rollout,
kanary.dev/track and kanary.dev/revision labels to ``rollout``, ``track`` and ``revision``
(manifests/prometheus), next to ``namespace``; these queries select on those.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from kanary.analysis.templating import Scope, label_value, render, window_increase
from kanary.spec import MetricSpec

# The Gin service does not count these already; kept out here too, so a service that does
# count probes and scrapes is not judged on them (/readyz answers 503 while a pod starts).
EXCLUDED_ROUTES = ("/metrics", "/healthz", "/readyz")

Unit = Literal["ratio", "seconds"]
UNITS: dict[str, Unit] = {
    "error-rate": "ratio",
    "latency-p99": "seconds",
    "latency-p50": "seconds",
}


def selector(scope: Scope, *extra: str) -> str:
    """The label matchers (without braces) for the requests of one track."""
    parts = [
        f'namespace="{label_value(scope.namespace)}"',
        f'rollout="{label_value(scope.rollout)}"',
        f'track="{label_value(scope.track)}"',
    ]
    if scope.revision is not None:
        parts.append(f'revision="{label_value(scope.revision)}"')
    parts.append(f'route!~"{"|".join(EXCLUDED_ROUTES)}"')
    parts.extend(extra)
    return ",".join(parts)


def requests_query(scope: Scope) -> str:
    """Requests the track answered in the window (no series at all: nothing answered)."""
    return window_increase(f"http_requests_total{{{selector(scope)}}}", scope.window)


def error_rate_query(scope: Scope) -> str:
    """5xx / all requests in the window, 0..1.

    The 5xx series only exists once a 5xx was answered, hence ``or vector(0)``: without it a
    canary without errors would have no error rate at all. No requests: 0/0, NaN.
    """
    errors = selector(scope, 'code=~"5.."')
    w = scope.window
    return (
        f"({window_increase(f'http_requests_total{{{errors}}}', w)} or vector(0))"
        f" / {window_increase(f'http_requests_total{{{selector(scope)}}}', w)}"
    )


def latency_p99_query(scope: Scope) -> str:
    """The 99th percentile of request duration in the window, in seconds (NaN: no requests)."""
    return _quantile(0.99, scope)


def latency_p50_query(scope: Scope) -> str:
    """The median request duration in the window, in seconds (NaN: no requests)."""
    return _quantile(0.5, scope)


def _quantile(q: float, scope: Scope) -> str:
    buckets = f"http_request_duration_seconds_bucket{{{selector(scope)}}}"
    return f"histogram_quantile({q:g}, {window_increase(buckets, scope.window, by='le')})"


BUILTIN_QUERIES: dict[str, Callable[[Scope], str]] = {
    "error-rate": error_rate_query,
    "latency-p99": latency_p99_query,
    "latency-p50": latency_p50_query,
}


def metric_query(metric: MetricSpec, scope: Scope) -> str:
    """The PromQL for a metric: its template rendered, or the built-in of that name.

    Raises TemplateError for a template that cannot be rendered; ``template_errors`` finds
    those before a Rollout ever gets here.
    """
    if metric.query is not None:
        return render(metric.name, metric.query, scope)
    builtin = BUILTIN_QUERIES.get(metric.name)
    if builtin is None:
        raise ValueError(f"metric {metric.name}: no query and no built-in of that name")
    return builtin(scope)
