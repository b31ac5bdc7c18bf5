"""PromQL for one backend of kanary's HTTPRoute, read from the Gateway implementation's metrics.

kanary's HTTPRoute sends traffic to the Services <rollout>-stable and <rollout>-canary (port
spec.service.port, default 80) in the Rollout's namespace. Each query here selects the series
of one of those two backends and never both. The figures are per Service, so Scope.revision
is not used. The ``namespace`` label of these series is where the Gateway's pod runs, not the
backend's namespace, so the queries never match on it.

Metrics are the built-ins' names: ``requests``, ``error-rate`` (5xx / all, with ``or vector(0)``
so a track without 5xx has rate 0, and 0/0 = NaN when series exist but nothing was answered;
no series at all gives an empty answer), ``latency-p99`` and ``latency-p50`` (seconds).

GATEWAY_CLASSES maps a GatewayClass' spec.controllerName to an implementation:

====================================================  =============  ==========================
controllerName                                        implementation per-backend figures
====================================================  =============  ==========================
traefik.io/gateway-controller                         traefik        yes
gateway.envoyproxy.io/gatewayclass-controller         envoy-gateway  only with mergeBackends
istio.io/gateway-controller                           istio          yes
====================================================  =============  ==========================

traefik (checked at tags v3.6.0, v3.6.12 (the local cluster's), v3.6.24 = cc33658184):
  requests  traefik_service_requests_total{code,method,protocol,service}; 5xx: code=~"5.."
  latency   traefik_service_request_duration_seconds_bucket, seconds; default buckets
            0.1, 0.3, 1.2, 5 (coarse: set --metrics.prometheus.buckets for a useful p99)
  backend   service="<ns>-<svc>-http-<port>@kubernetesgateway" (Normalize: every run of
            non-alphanumerics becomes "-"). A rule's weighted service "<router>-wrr" has no
            metrics; each backendRef's load-balancer service does. The name is ambiguous
            across namespaces ("a-b" + "c" == "a" + "b-c"). A backendRef whose Service has no
            endpoints answers 500 from the weighted service and is not counted at all.
  sources   pkg/provider/kubernetes/gateway/httproute.go (loadService, loadWRRService; "-http"
            since v3.2.0, commit 0dc36379cf), pkg/provider/configuration.go (Normalize),
            pkg/server/service/service.go (ServiceMetricsHandler per load-balancer server),
            pkg/observability/metrics/prometheus.go, pkg/observability/types/metrics.go
            (addServicesLabels defaults to true; /metrics on entryPoint "traefik", :8080),
            integration/testdata/rawdata-gateway.json ("default-whoami-http-80@kubernetesgateway")
  enable    --metrics.prometheus=true (and --entryPoints.traefik.address=:8080, or
            --metrics.prometheus.entryPoint=<ep>)

envoy-gateway (checked at tag v1.9.0 = 39763b1c07):
  requests  envoy_cluster_upstream_rq_total{envoy_cluster_name};
            5xx: envoy_cluster_upstream_rq_xx{envoy_response_code_class="5"}
  latency   envoy_cluster_upstream_rq_time_bucket, milliseconds (divided by 1000 here)
  backend   by default all backendRefs of a rule share one cluster
            "httproute/<ns>/<route>/rule/<i>" (one locality per backendRef), so its stats mix
            stable and canary: the functions raise ValueError. With EnvoyProxy spec.mergeBackends
            (v1.9.0+), each backend gets its own cluster "service/<ns>/<svc>/<port>/<protocol>",
            e.g. ".../80/http"; pass envoy_merge_backends=True. Where Envoy Gateway declines to
            merge (per-backendRef filters, session persistence, consistent hash, ...) that
            cluster does not exist and the queries find nothing rather than mixed figures.
  sources   internal/gatewayapi/helpers.go (irRouteDestinationName, irBackendClusterName),
            internal/gatewayapi/route.go (shouldMergeBackend), internal/ir/xds.go
            (NeedsClusterPerSetting), internal/xds/translator/route.go
            (buildXdsWeightedRouteAction), api/v1alpha1/envoyproxy_types.go (MergeBackends),
            internal/gatewayapi/testdata/mergebackends-http-multi-backend-weighted.out.yaml,
            internal/xds/translator/testdata/out/xds-ir/http-route-weighted-backend.*.yaml,
            test/helm/gateway-addons-helm/default.out.yaml (dashboard queries); issues
            envoyproxy/gateway#6742 (per-backendRef stats, open) and #7008; Envoy
            source/common/config/well_known_names.cc (envoy_response_code_class tag)

istio (docs: istio.io content/en/docs/reference/config/metrics/index.md, commit 0d3a9e890c):
  requests  istio_requests_total{reporter,destination_service_name,
            destination_service_namespace,response_code,...}; 5xx: response_code=~"5.."
  latency   istio_request_duration_milliseconds_bucket, milliseconds (divided by 1000 here)
  backend   reporter="source" (a gateway reports as source; a sidecar on the backend would
            report the same request again as "destination"), destination_service_namespace,
            destination_service_name. There is no port label: the port is not matched.
  sources   the docs above; a recorded series from an Istio Gateway API gateway in
            MYanello/gateway-api-argo 06-argo-rollouts-with-istio-metrics/assignment.md
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from kanary.analysis.templating import Scope, label_value, window_increase
from kanary.objects import track_name

Implementation = Literal["traefik", "envoy-gateway", "istio"]
IMPLEMENTATIONS: tuple[Implementation, ...] = get_args(Implementation)
MatchOp = Literal["=", "!=", "=~", "!~"]
Matchers = Mapping[str, tuple[MatchOp, str]]

GATEWAY_CLASSES: dict[str, Implementation] = {
    "traefik.io/gateway-controller": "traefik",
    "gateway.envoyproxy.io/gatewayclass-controller": "envoy-gateway",
    "istio.io/gateway-controller": "istio",
}

METRICS = ("requests", "error-rate", "latency-p99", "latency-p50")
_QUANTILES = {"latency-p99": 0.99, "latency-p50": 0.5}

ENVOY_PER_RULE = (
    "envoy-gateway: Envoy Gateway puts every backendRef of an HTTPRoute rule in one Envoy "
    "cluster (httproute/<namespace>/<route>/rule/<index>), so its stats mix the stable and "
    "canary backends; per-backend clusters (service/<namespace>/<service>/<port>/<protocol>) "
    "exist only with EnvoyProxy spec.mergeBackends (Envoy Gateway v1.9.0+)"
)


@dataclass(frozen=True)
class Selector:
    """A metric name and its label matchers; values are raw, ``promql`` quotes them."""

    metric: str
    matchers: Matchers

    def promql(self) -> str:
        inner = ",".join(
            f'{name}{op}"{label_value(value)}"' for name, (op, value) in self.matchers.items()
        )
        return f"{self.metric}{{{inner}}}"


@dataclass(frozen=True)
class _Source:
    requests: str  # counter of every request
    errors: str  # counter holding the 5xx ...
    errors_matchers: Matchers  # ... selected by these
    buckets: str  # request duration histogram, _bucket series
    per_second: int  # the histogram's unit per second: 1 (seconds) or 1000 (ms)


_SOURCES: dict[str, _Source] = {
    "traefik": _Source(
        "traefik_service_requests_total",
        "traefik_service_requests_total",
        {"code": ("=~", "5..")},
        "traefik_service_request_duration_seconds_bucket",
        1,
    ),
    "envoy-gateway": _Source(
        "envoy_cluster_upstream_rq_total",
        "envoy_cluster_upstream_rq_xx",
        {"envoy_response_code_class": ("=", "5")},
        "envoy_cluster_upstream_rq_time_bucket",
        1000,
    ),
    "istio": _Source(
        "istio_requests_total",
        "istio_requests_total",
        {"response_code": ("=~", "5..")},
        "istio_request_duration_milliseconds_bucket",
        1000,
    ),
}


def traefik_service_name(namespace: str, service: str, port: int) -> str:
    """Traefik's service for a backendRef to a Service, without the @kubernetesgateway."""
    return "-".join(re.findall(r"[^\W_]+", f"{namespace}-{service}-http-{port}"))


def _regex_literal(text: str) -> str:
    """``text`` matched literally by a RE2 regex (Kubernetes names only need the dot)."""
    return re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", text)


def _source(implementation: str) -> _Source:
    if implementation not in _SOURCES:
        raise ValueError(
            f"unknown gateway implementation {implementation!r}; "
            f"known: {', '.join(IMPLEMENTATIONS)}"
        )
    return _SOURCES[implementation]


def backend_matchers(
    implementation: str, scope: Scope, port: int, *, envoy_merge_backends: bool = False
) -> Matchers:
    """The label matchers selecting the series of scope's track's backend, and only those.

    ValueError: an unknown implementation, a bad port, or a Gateway that has no per-backend
    series (Envoy Gateway without mergeBackends).
    """
    _source(implementation)
    if not 1 <= port <= 65535:
        raise ValueError(f"backend port must be 1..65535, got {port}")
    ns, svc = scope.namespace, track_name(scope.rollout, scope.track)
    if implementation == "traefik":
        return {"service": ("=", f"{traefik_service_name(ns, svc, port)}@kubernetesgateway")}
    if implementation == "envoy-gateway":
        if not envoy_merge_backends:
            raise ValueError(ENVOY_PER_RULE)
        name = f"service/{_regex_literal(ns)}/{_regex_literal(svc)}/{port}"
        return {"envoy_cluster_name": ("=~", name + "(/[a-z0-9-]+)?")}
    return {
        "reporter": ("=", "source"),
        "destination_service_namespace": ("=", ns),
        "destination_service_name": ("=", svc),
    }


def selectors(
    implementation: str,
    metric: str,
    scope: Scope,
    port: int,
    *,
    envoy_merge_backends: bool = False,
) -> list[Selector]:
    """The series a metric's query reads, in the order they appear in it."""
    src = _source(implementation)
    backend = backend_matchers(
        implementation, scope, port, envoy_merge_backends=envoy_merge_backends
    )
    if metric == "requests":
        return [Selector(src.requests, backend)]
    if metric == "error-rate":
        errors = Selector(src.errors, {**backend, **src.errors_matchers})
        return [errors, Selector(src.requests, backend)]
    if metric in _QUANTILES:
        return [Selector(src.buckets, backend)]
    raise ValueError(f"unknown gateway metric {metric!r}; known: {', '.join(METRICS)}")


def gateway_query(
    implementation: str,
    metric: str,
    scope: Scope,
    port: int,
    *,
    envoy_merge_backends: bool = False,
) -> str:
    """The PromQL of one metric for scope's track's backend over scope's window.

    ValueError as for ``backend_matchers``, or an unknown metric.
    """
    read = selectors(implementation, metric, scope, port, envoy_merge_backends=envoy_merge_backends)
    w = scope.window
    if metric == "requests":
        return window_increase(read[0].promql(), w)
    if metric == "error-rate":
        errors, every = read
        return (
            f"({window_increase(errors.promql(), w)} or vector(0))"
            f" / {window_increase(every.promql(), w)}"
        )
    q = _QUANTILES[metric]
    quantile = f"histogram_quantile({q:g}, {window_increase(read[0].promql(), w, by='le')})"
    per_second = _source(implementation).per_second
    return quantile if per_second == 1 else f"{quantile} / {per_second}"


def gateway_queries(
    implementation: str, scope: Scope, port: int, *, envoy_merge_backends: bool = False
) -> dict[str, str]:
    """Every metric's PromQL, by metric name."""
    return {
        m: gateway_query(implementation, m, scope, port, envoy_merge_backends=envoy_merge_backends)
        for m in METRICS
    }
