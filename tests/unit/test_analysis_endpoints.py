"""PrometheusPolicy: which Prometheus URLs a Rollout may make the operator query."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kanary.analysis.endpoints import (
    ALLOWED_URLS_ENV,
    DEFAULT_PROMETHEUS_URL,
    DEFAULT_URL_ENV,
    PrometheusNotAllowed,
    PrometheusPolicy,
    normalise,
)
from kanary.cli import parser, prometheus_env

DEFAULT = "http://prometheus.monitoring.svc:9090"


def test_nothing_set_means_the_in_cluster_prometheus_only() -> None:
    policy = PrometheusPolicy.from_env({})
    assert DEFAULT_PROMETHEUS_URL == DEFAULT
    assert policy == PrometheusPolicy(DEFAULT, ())
    assert policy.allowed == (DEFAULT,)
    assert policy.resolve(None) == DEFAULT
    assert policy.resolve(DEFAULT) == DEFAULT
    with pytest.raises(PrometheusNotAllowed):
        policy.resolve("http://prometheus.other.svc:9090")


def test_env_sets_the_default_and_the_allowed_urls() -> None:
    policy = PrometheusPolicy.from_env(
        {
            DEFAULT_URL_ENV: "http://thanos.monitoring.svc:9090",
            ALLOWED_URLS_ENV: " https://prom-a.example:443/ , ,http://prom-b:9090/tenant-a",
        }
    )
    assert policy.default_url == "http://thanos.monitoring.svc:9090"
    assert policy.allowed == (
        "http://thanos.monitoring.svc:9090",
        "https://prom-a.example:443",
        "http://prom-b:9090/tenant-a",
    )
    assert policy.resolve(None) == "http://thanos.monitoring.svc:9090"
    assert policy.resolve("https://prom-a.example:443") == "https://prom-a.example:443"
    assert policy.resolve("http://prom-b:9090/tenant-a/") == "http://prom-b:9090/tenant-a"
    for refused in (DEFAULT, "http://prom-b:9090", "http://prom-b:9090/tenant-b"):
        with pytest.raises(PrometheusNotAllowed):
            policy.resolve(refused)


def test_the_refusal_is_one_line_naming_the_field_the_allowed_list_and_the_flag() -> None:
    policy = PrometheusPolicy(DEFAULT, ("http://prom-b:9090",))
    with pytest.raises(PrometheusNotAllowed) as refused:
        policy.resolve("http://evil:80")
    assert str(refused.value) == (
        "spec.strategy.analysis.prometheus.url http://evil:80 is not allowed by the operator "
        "(allowed: http://prometheus.monitoring.svc:9090, http://prom-b:9090); "
        "ask the cluster admin to add it with --allow-prometheus-url"
    )
    assert isinstance(refused.value, ValueError)


def test_the_refusal_shows_no_credentials_and_no_second_line() -> None:
    policy = PrometheusPolicy("http://scraper:pw-allowed@prom:9090", ())
    with pytest.raises(PrometheusNotAllowed) as refused:
        policy.resolve("http://me:pw-asked@evil:80/x\nFAKE: line" + "y" * 500)
    message = str(refused.value)
    assert "\n" not in message and "pw-allowed" not in message and "pw-asked" not in message
    assert "http://evil:80/x?FAKE: line" in message and "(allowed: http://prom:9090)" in message
    assert len(message) < 400


@pytest.mark.parametrize(
    ("asked", "allowed"),
    [
        ("HTTP://Prometheus.Monitoring.SVC:9090", True),
        ("http://prometheus.monitoring.svc:9090/", True),
        ("http://prometheus.monitoring.svc:9090///", True),
        ("http://prometheus.monitoring.svc:9090/api", False),  # the path counts
        ("https://prometheus.monitoring.svc:9090", False),  # so does the scheme
        ("http://prometheus.monitoring.svc:9091", False),
        ("http://prometheus.monitoring.svc", False),
        ("http://prometheus.monitoring.svc:9090?x=1", False),
        ("http://evil@prometheus.monitoring.svc:9090", False),
        ("http://prometheus.monitoring.svc:9090@evil", False),
        ("prometheus.monitoring.svc:9090", False),
        ("http://prometheus.monitoring.svc:notaport", False),
        ("", False),
    ],
)
def test_urls_are_compared_normalised(asked: str, allowed: bool) -> None:
    policy = PrometheusPolicy.from_env({})
    if allowed:
        assert policy.resolve(asked) == DEFAULT
    else:
        with pytest.raises(PrometheusNotAllowed):
            policy.resolve(asked)


def test_normalise_keeps_the_path_and_lowercases_only_scheme_and_host() -> None:
    assert normalise(" HTTPS://User:PW@Prom.Example:9090/Tenant/A/ ") == (
        "https://User:PW@prom.example:9090/Tenant/A"
    )


def test_no_default_means_a_rollout_must_name_an_allowed_url() -> None:
    policy = PrometheusPolicy.from_env({DEFAULT_URL_ENV: "", ALLOWED_URLS_ENV: "http://p:9090"})
    assert policy.default_url is None and policy.allowed == ("http://p:9090",)
    assert policy.resolve("http://p:9090") == "http://p:9090"
    with pytest.raises(PrometheusNotAllowed, match=r"no default Prometheus URL.*--prometheus-url"):
        policy.resolve(None)
    nothing = PrometheusPolicy(None, ())
    with pytest.raises(PrometheusNotAllowed, match=r"\(allowed: none\)"):
        nothing.resolve("http://p:9090")


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({DEFAULT_URL_ENV: "prometheus:9090"}, DEFAULT_URL_ENV),
        ({DEFAULT_URL_ENV: "ftp://prometheus:21"}, DEFAULT_URL_ENV),
        ({DEFAULT_URL_ENV: "http://"}, DEFAULT_URL_ENV),
        ({DEFAULT_URL_ENV: "http://p:99999"}, DEFAULT_URL_ENV),
        ({ALLOWED_URLS_ENV: "http://ok:9090,file:///etc/passwd"}, ALLOWED_URLS_ENV),
        ({ALLOWED_URLS_ENV: "http://ok:9090 http://two:9090"}, ALLOWED_URLS_ENV),
        ({ALLOWED_URLS_ENV: "http://ok/a http://two/b"}, ALLOWED_URLS_ENV),
    ],
)
def test_a_bad_env_value_is_an_error_naming_the_variable(
    env: dict[str, str], variable: str
) -> None:
    with pytest.raises(ValueError, match=rf"^{variable}: ") as bad:
        PrometheusPolicy.from_env(env)
    assert not isinstance(bad.value, PrometheusNotAllowed)


def test_the_constructor_refuses_a_non_http_url() -> None:
    with pytest.raises(ValueError, match="not an http:// or https:// URL"):
        PrometheusPolicy("gopher://p:70", ())


def test_the_operator_manifest_sets_the_in_cluster_default_and_allows_only_it() -> None:
    manifest = Path(__file__).resolve().parents[2] / "manifests" / "operator.yaml"
    [deployment] = [
        d for d in yaml.safe_load_all(manifest.read_text()) if d and d["kind"] == "Deployment"
    ]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    args = parser().parse_args(container["args"])
    policy = PrometheusPolicy.from_env(
        prometheus_env(args.prometheus_url, args.allow_prometheus_url)
    )
    assert policy.allowed == (DEFAULT_PROMETHEUS_URL,)
    extra = parser().parse_args([*container["args"], "--allow-prometheus-url=http://t:9090/"])
    wider = PrometheusPolicy.from_env(
        prometheus_env(extra.prometheus_url, extra.allow_prometheus_url)
    )
    assert wider.resolve("http://t:9090") == "http://t:9090"
