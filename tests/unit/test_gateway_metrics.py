"""Gateway metrics: the generated PromQL selects one backend's series in recorded answers.

Each implementation has a small set of series shaped as Prometheus answers them (the "metric"
objects of /api/v1/query: the exporter's labels plus what the scrape adds). Their names and
labels come from:

- Traefik v3.6: integration/simple_test.go (``traefik_service_requests_total{code="200",
  method="GET",protocol="http",service="whoami1@docker"}``), integration/testdata/
  rawdata-gateway.json (``default-whoami-http-80@kubernetesgateway``), pkg/observability/
  metrics/prometheus.go (labels, default buckets 0.1, 0.3, 1.2, 5).
- Envoy Gateway v1.9.0: internal/gatewayapi/testdata/mergebackends-http-multi-backend-weighted
  .out.yaml (``service/default/service-1/8080/http``), test/helm/gateway-addons-helm/
  default.out.yaml (``envoy_cluster_upstream_rq_xx{envoy_response_code_class=...}``), the docs'
  ``envoy_cluster_upstream_rq_retry{envoy_cluster_name="httproute/default/backend/rule/0"}``;
  Envoy's default histogram buckets (ms).
- Istio: the series recorded from an Istio Gateway API gateway in MYanello/gateway-api-argo
  06-argo-rollouts-with-istio-metrics/assignment.md, renamed to this Rollout.

The rendered PromQL is parsed back (not the matchers as data), and its selectors are applied
with PromQL's rules to the recorded series; what they select is compared with the series of
the right backend, picked by hand from the recorded labels.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from kanary.analysis.gateway import (
    GATEWAY_CLASSES,
    IMPLEMENTATIONS,
    METRICS,
    backend_matchers,
    gateway_queries,
    gateway_query,
    selectors,
    traefik_service_name,
)
from kanary.analysis.templating import Scope, window_increase

CANARY = Scope("demo", "gin-demo", "canary", "5c4b1a", 30)
STABLE = Scope("demo", "gin-demo", "stable", "9f00d1", 30)
AT = 1_795_000_000.0

Series = dict[str, Any]  # one element of /api/v1/query's data.result


def sample(name: str, value: float, labels: Mapping[str, str]) -> Series:
    return {"metric": {"__name__": name, **labels}, "value": [AT, str(value)]}


def histogram(name: str, labels: Mapping[str, str], counts: Mapping[str, float]) -> list[Series]:
    return [sample(name, n, {**labels, "le": le}) for le, n in counts.items()]


# ----------------------------------------------------------------------------- traefik ---
T_SCRAPE = {"job": "traefik", "instance": "10.244.0.7:8080", "namespace": "traefik"}
T_CANARY = "demo-gin-demo-canary-http-80@kubernetesgateway"
T_STABLE = "demo-gin-demo-stable-http-80@kubernetesgateway"


def traefik(service: str, code: str, n: float) -> Series:
    labels = {"code": code, "method": "GET", "protocol": "http", "service": service}
    return sample("traefik_service_requests_total", n, {**labels, **T_SCRAPE})


def traefik_buckets(service: str, code: str, counts: list[float]) -> list[Series]:
    labels = {"code": code, "method": "GET", "protocol": "http", "service": service, **T_SCRAPE}
    les = ("0.1", "0.3", "1.2", "5", "+Inf")
    return histogram(
        "traefik_service_request_duration_seconds_bucket",
        labels,
        dict(zip(les, counts, strict=True)),
    )


TRAEFIK: list[Series] = [
    traefik(T_CANARY, "200", 41),
    traefik(T_CANARY, "404", 2),
    traefik(T_CANARY, "500", 3),
    traefik(T_STABLE, "200", 917),
    traefik(T_STABLE, "502", 1),
    traefik("demo-gin-demo-canary-http-8080@kubernetesgateway", "500", 7),  # another port
    traefik("staging-gin-demo-canary-http-80@kubernetesgateway", "500", 9),  # another namespace
    traefik("demo-gin-demo-canary-http-80@kubernetescrd", "500", 5),  # another provider
    traefik("demo-gin-demo-v2-canary-http-80@kubernetesgateway", "500", 4),  # another rollout
    *traefik_buckets(T_CANARY, "200", [30, 40, 41, 41, 41]),
    *traefik_buckets(T_CANARY, "500", [0, 1, 3, 3, 3]),
    *traefik_buckets(T_STABLE, "200", [900, 915, 917, 917, 917]),
    *traefik_buckets("staging-gin-demo-canary-http-80@kubernetesgateway", "500", [0, 0, 0, 9, 9]),
]

# ------------------------------------------------------------------------ envoy-gateway ---
E_SCRAPE = {
    "job": "envoy-gateway-proxies",
    "namespace": "envoy-gateway-system",
    "pod": "envoy-demo-eg-5f4d8c6b9-k2x7q",
}
E_CANARY = "service/demo/gin-demo-canary/80/http"
E_STABLE = "service/demo/gin-demo-stable/80/http"
E_PER_RULE = "httproute/demo/gin-demo/rule/0"  # the shared cluster, before mergeBackends
ENVOY_MS = ("0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "+Inf")


def envoy(cluster: str, total: float, by_class: Mapping[str, float]) -> list[Series]:
    labels = {"envoy_cluster_name": cluster, **E_SCRAPE}
    out = [sample("envoy_cluster_upstream_rq_total", total, labels)]
    out += [
        sample("envoy_cluster_upstream_rq_xx", n, {"envoy_response_code_class": c, **labels})
        for c, n in by_class.items()
    ]
    return out


def envoy_buckets(cluster: str, counts: list[float]) -> list[Series]:
    labels = {"envoy_cluster_name": cluster, **E_SCRAPE}
    return histogram(
        "envoy_cluster_upstream_rq_time_bucket", labels, dict(zip(ENVOY_MS, counts, strict=True))
    )


ENVOY: list[Series] = [
    *envoy(E_CANARY, 46, {"2": 41, "4": 2, "5": 3}),
    *envoy(E_STABLE, 918, {"2": 917, "5": 1}),
    *envoy(E_PER_RULE, 964, {"2": 958, "4": 2, "5": 4}),
    *envoy("service/demo/gin-demo-canary/8080/http", 7, {"5": 7}),
    *envoy("service/staging/gin-demo-canary/80/http", 9, {"5": 9}),
    *envoy("service/demo/gin-demo-canary-v2/80/http", 4, {"5": 4}),
    *envoy_buckets(E_CANARY, [0, 0, 3, 12, 30, 40, 44, 46, 46, 46, 46, 46]),
    *envoy_buckets(E_STABLE, [0, 2, 100, 600, 900, 915, 918, 918, 918, 918, 918, 918]),
    *envoy_buckets(E_PER_RULE, [0, 2, 103, 612, 930, 955, 962, 964, 964, 964, 964, 964]),
]

# -------------------------------------------------------------------------------- istio ---
# The recorded series, its service renamed from rollouts-demo-stable/default.
ISTIO_GATEWAY = {
    "connection_security_policy": "unknown",
    "destination_app": "unknown",
    "destination_canonical_revision": "latest",
    "destination_canonical_service": "gin-demo",
    "destination_cluster": "Kubernetes",
    "destination_principal": "unknown",
    "destination_version": "unknown",
    "destination_workload": "gin-demo",
    "destination_workload_namespace": "demo",
    "gateway_networking_k8s_io_gateway_name": "gw",
    "instance": "10.244.0.18:15020",
    "istio_io_dataplane_mode": "none",
    "istio_io_gateway_name": "gw",
    "job": "kubernetes-pods",
    "namespace": "demo",
    "pod": "gw-istio-6c647c4cf4-rxvhw",
    "reporter": "source",
    "request_protocol": "http",
    "response_flags": "-",
    "source_canonical_revision": "latest",
    "source_canonical_service": "gw-istio",
    "source_cluster": "Kubernetes",
    "source_principal": "unknown",
    "source_workload": "gw-istio",
    "source_workload_namespace": "demo",
}


def istio_labels(service: str, namespace: str, code: str, reporter: str) -> dict[str, str]:
    return {
        **ISTIO_GATEWAY,
        "destination_service": f"{service}.{namespace}.svc.cluster.local",
        "destination_service_name": service,
        "destination_service_namespace": namespace,
        "response_code": code,
        "reporter": reporter,
    }


def istio(service: str, code: str, n: float, ns: str = "demo", rep: str = "source") -> Series:
    return sample("istio_requests_total", n, istio_labels(service, ns, code, rep))


def istio_buckets(
    service: str, code: str, counts: list[float], rep: str = "source"
) -> list[Series]:
    labels = istio_labels(service, "demo", code, rep)
    les = dict(zip(ENVOY_MS, counts, strict=True))
    return histogram("istio_request_duration_milliseconds_bucket", labels, les)


ISTIO: list[Series] = [
    istio("gin-demo-canary", "200", 41),
    istio("gin-demo-canary", "404", 2),
    istio("gin-demo-canary", "503", 3),
    istio("gin-demo-stable", "200", 917),
    istio("gin-demo-stable", "500", 1),
    istio("gin-demo-canary", "503", 3, rep="destination"),  # a sidecar on the canary pods
    istio("gin-demo-canary", "500", 9, ns="staging"),  # another namespace
    istio("gin-demo-canary-v2", "500", 4),  # another service
    *istio_buckets("gin-demo-canary", "200", [0, 0, 3, 12, 30, 38, 40, 41, 41, 41, 41, 41]),
    *istio_buckets("gin-demo-canary", "503", [0, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3]),
    *istio_buckets(
        "gin-demo-stable", "200", [0, 2, 99, 600, 900, 915, 917, 917, 917, 917, 917, 917]
    ),
    *istio_buckets(
        "gin-demo-canary", "200", [0, 0, 0, 0, 0, 0, 0, 0, 41, 41, 41, 41], "destination"
    ),
]


# --------------------------------------------------------------- the recorded ground truth ---
@dataclass(frozen=True)
class Recorded:
    series: list[Series]
    requests: str  # metric names, typed here from the sources, not taken from gateway.py
    errors: str
    buckets: str
    backend: Callable[[Mapping[str, str], str], bool]  # (labels, track) -> that track's?
    is_5xx: Callable[[Mapping[str, str]], bool]
    error_rate: dict[str, float]  # by track, from the values above


RECORDED: dict[str, Recorded] = {
    "traefik": Recorded(
        TRAEFIK,
        "traefik_service_requests_total",
        "traefik_service_requests_total",
        "traefik_service_request_duration_seconds_bucket",
        lambda m, track: m["service"] == {"canary": T_CANARY, "stable": T_STABLE}[track],
        lambda m: m["code"].startswith("5"),
        {"canary": 3 / 46, "stable": 1 / 918},
    ),
    "envoy-gateway": Recorded(
        ENVOY,
        "envoy_cluster_upstream_rq_total",
        "envoy_cluster_upstream_rq_xx",
        "envoy_cluster_upstream_rq_time_bucket",
        lambda m, track: m["envoy_cluster_name"] == {"canary": E_CANARY, "stable": E_STABLE}[track],
        lambda m: m.get("envoy_response_code_class") == "5",
        {"canary": 3 / 46, "stable": 1 / 918},
    ),
    "istio": Recorded(
        ISTIO,
        "istio_requests_total",
        "istio_requests_total",
        "istio_request_duration_milliseconds_bucket",
        lambda m, track: (
            m["reporter"] == "source"
            and m["destination_service"] == f"gin-demo-{track}.demo.svc.cluster.local"
        ),
        lambda m: m["response_code"].startswith("5"),
        {"canary": 3 / 46, "stable": 1 / 918},
    ),
}


# ------------------------------------------------------ PromQL selectors, parsed and applied ---
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)(=~|!~|!=|=)"((?:[^"\\]|\\.)*)"(,|$)')


def parse_selectors(promql: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """Every distinct ``name{matchers}`` in the query, in the order of their first use, with
    PromQL's string escapes undone (window_increase reads each series more than once)."""
    out: list[tuple[str, list[tuple[str, str, str]]]] = []
    for sel in _SELECTOR.finditer(promql):
        inner, matchers, pos = sel.group(2), [], 0
        while pos < len(inner):
            m = _MATCHER.match(inner, pos)
            assert m is not None, f"unparsable matchers {inner!r} at {pos}"
            value = re.sub(r"\\(.)", lambda e: "\n" if e.group(1) == "n" else e.group(1), m[3])
            matchers.append((m[1], m[2], value))
            pos = m.end()
        if (sel.group(1), matchers) not in out:
            out.append((sel.group(1), matchers))
    return out


def holds(labels: Mapping[str, str], name: str, op: str, value: str) -> bool:
    """One matcher, as Prometheus applies it: a missing label is "", regexes are anchored."""
    have = labels.get(name, "")
    if op == "=":
        return have == value
    if op == "!=":
        return have != value
    found = re.fullmatch(value, have) is not None
    return found if op == "=~" else not found


def select(series: list[Series], selector: tuple[str, list[tuple[str, str, str]]]) -> list[Series]:
    metric, matchers = selector
    return [
        s
        for s in series
        if s["metric"]["__name__"] == metric
        and all(holds(s["metric"], *matcher) for matcher in matchers)
    ]


def total(series: list[Series]) -> float:
    return sum(float(s["value"][1]) for s in series)


def query(impl: str, metric: str, scope: Scope) -> str:
    return gateway_query(impl, metric, scope, 80, envoy_merge_backends=True)


TRACKS = {"canary": CANARY, "stable": STABLE}


# ----------------------------------------------------------------------------------- tests ---
@pytest.mark.parametrize("track", TRACKS)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_requests_select_exactly_the_backends_series(impl: str, track: str) -> None:
    rec = RECORDED[impl]
    [sel] = parse_selectors(query(impl, "requests", TRACKS[track]))
    want = [s for s in rec.series if s["metric"]["__name__"] == rec.requests]
    want = [s for s in want if rec.backend(s["metric"], track)]
    assert want, "the recorded answer has series of this backend"
    assert select(rec.series, sel) == want


@pytest.mark.parametrize("track", TRACKS)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_error_rate_selects_the_backends_5xx_over_all(impl: str, track: str) -> None:
    rec = RECORDED[impl]
    errors_sel, every_sel = parse_selectors(query(impl, "error-rate", TRACKS[track]))
    mine = [s for s in rec.series if rec.backend(s["metric"], track)]
    errors = [s for s in mine if s["metric"]["__name__"] == rec.errors and rec.is_5xx(s["metric"])]
    every = [s for s in mine if s["metric"]["__name__"] == rec.requests]
    assert select(rec.series, errors_sel) == errors
    assert select(rec.series, every_sel) == every
    rate = total(select(rec.series, errors_sel)) / total(select(rec.series, every_sel))
    assert rate == pytest.approx(rec.error_rate[track])


@pytest.mark.parametrize("track", TRACKS)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_latency_reads_the_backends_buckets(impl: str, track: str) -> None:
    rec = RECORDED[impl]
    [sel] = parse_selectors(query(impl, "latency-p99", TRACKS[track]))
    want = [s for s in rec.series if s["metric"]["__name__"] == rec.buckets]
    want = [s for s in want if rec.backend(s["metric"], track)]
    assert want
    assert select(rec.series, sel) == want
    assert all("le" not in name for name, _, _ in sel[1])  # every bucket, for sum by (le)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_rendered_selectors_are_the_matchers_returned_as_data(impl: str) -> None:
    for metric in METRICS:
        data = selectors(impl, metric, CANARY, 80, envoy_merge_backends=True)
        parsed = parse_selectors(query(impl, metric, CANARY))
        assert parsed == [
            (s.metric, [(name, op, value) for name, (op, value) in s.matchers.items()])
            for s in data
        ]


def test_the_5xx_matcher_of_each_implementation() -> None:
    def errors_matchers(impl: str) -> tuple[str, list[tuple[str, str, str]]]:
        errors, every = parse_selectors(query(impl, "error-rate", CANARY))
        return errors[0], [m for m in errors[1] if m not in every[1]]

    assert errors_matchers("traefik") == ("traefik_service_requests_total", [("code", "=~", "5..")])
    assert errors_matchers("envoy-gateway") == (
        "envoy_cluster_upstream_rq_xx",
        [("envoy_response_code_class", "=", "5")],
    )
    assert errors_matchers("istio") == ("istio_requests_total", [("response_code", "=~", "5..")])


def test_error_rate_has_the_builtin_shape() -> None:
    q = query("traefik", "error-rate", CANARY)
    s = '{service="demo-gin-demo-canary-http-80@kubernetesgateway"'
    errors = window_increase(f'traefik_service_requests_total{s},code=~"5.."}}', "30s")
    every = window_increase(f"traefik_service_requests_total{s}}}", "30s")
    assert q == f"({errors} or vector(0)) / {every}"


def test_requests_sum_the_increase_over_the_window() -> None:
    q = gateway_query("istio", "requests", Scope("demo", "gin-demo", "canary", None, 90), 80)
    assert q == window_increase(
        'istio_requests_total{reporter="source",destination_service_namespace="demo",'
        'destination_service_name="gin-demo-canary"}',
        "1m30s",
    )


def test_latency_is_in_seconds_whatever_the_histograms_unit() -> None:
    traefik_q = query("traefik", "latency-p99", CANARY)
    buckets = window_increase(
        "traefik_service_request_duration_seconds_"
        'bucket{service="demo-gin-demo-canary-http-80@kubernetesgateway"}',
        "30s",
        by="le",
    )
    assert traefik_q == f"histogram_quantile(0.99, {buckets})"
    for impl in ("istio", "envoy-gateway"):  # both histograms count milliseconds
        q = query(impl, "latency-p99", CANARY)
        assert q.startswith("histogram_quantile(0.99, ((sum by (le) (increase(")
        assert q.endswith(" offset 30s))) / 1000")


def test_envoy_gateway_without_merged_backends_refuses_rather_than_mixing() -> None:
    for metric in METRICS:
        with pytest.raises(ValueError, match=r"httproute/<namespace>/<route>/rule/<index>"):
            gateway_query("envoy-gateway", metric, CANARY, 80)
    with pytest.raises(ValueError, match="mergeBackends"):
        backend_matchers("envoy-gateway", CANARY, 80)
    with pytest.raises(ValueError, match="mix the stable and canary"):
        gateway_queries("envoy-gateway", CANARY, 80)


def test_envoy_backend_regex_takes_names_literally() -> None:
    dotted = Scope("demo", "gin.demo", "canary", None, 30)
    [sel] = parse_selectors(query("envoy-gateway", "requests", dotted))
    series = [
        sample("envoy_cluster_upstream_rq_total", 1, {"envoy_cluster_name": name})
        for name in ("service/demo/gin.demo-canary/80/http", "service/demo/ginxdemo-canary/80/http")
    ]
    assert select(series, sel) == series[:1]


def test_the_port_is_part_of_the_backend_where_the_metrics_carry_it() -> None:
    assert backend_matchers("traefik", CANARY, 8080) == {
        "service": ("=", "demo-gin-demo-canary-http-8080@kubernetesgateway")
    }
    envoy = backend_matchers("envoy-gateway", CANARY, 8080, envoy_merge_backends=True)
    assert envoy == {
        "envoy_cluster_name": ("=~", "service/demo/gin-demo-canary/8080(/[a-z0-9-]+)?")
    }
    # Istio's metrics have no port label: any port gives the same matchers.
    assert backend_matchers("istio", CANARY, 8080) == backend_matchers("istio", CANARY, 80)


def test_traefik_service_names_as_traefik_makes_them() -> None:
    # pkg/provider/kubernetes/gateway/kubernetes_test.go (v3.6.24)
    assert traefik_service_name("default", "whoami", 80) == "default-whoami-http-80"
    assert traefik_service_name("default", "whoami2", 8080) == "default-whoami2-http-8080"
    # provider.Normalize: each run of non-letters/digits becomes one "-"
    assert traefik_service_name("demo", "gin.demo--canary", 80) == "demo-gin-demo-canary-http-80"


def test_gateway_classes() -> None:
    assert GATEWAY_CLASSES == {
        "traefik.io/gateway-controller": "traefik",
        "gateway.envoyproxy.io/gatewayclass-controller": "envoy-gateway",
        "istio.io/gateway-controller": "istio",
    }
    assert set(GATEWAY_CLASSES.values()) == set(IMPLEMENTATIONS)


def test_every_metric_for_every_implementation() -> None:
    for impl in IMPLEMENTATIONS:
        queries = gateway_queries(impl, CANARY, 80, envoy_merge_backends=True)
        assert list(queries) == ["requests", "error-rate", "latency-p99", "latency-p50"]
        assert queries["requests"] == query(impl, "requests", CANARY)


@pytest.mark.parametrize(
    ("impl", "metric", "port", "message"),
    [
        ("nginx", "requests", 80, "unknown gateway implementation 'nginx'"),
        ("traefik", "p50", 80, "unknown gateway metric 'p50'"),
        ("traefik", "requests", 0, "port must be 1..65535"),
        ("istio", "requests", 65536, "port must be 1..65535"),
    ],
)
def test_bad_arguments(impl: str, metric: str, port: int, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        gateway_query(impl, metric, CANARY, port, envoy_merge_backends=True)
