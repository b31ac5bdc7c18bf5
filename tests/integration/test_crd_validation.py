"""The API server refuses invalid Rollouts with a message naming the field, and takes valid ones.

The CRD comes from crds/ as a user installs it; no operator runs here. Every case also goes
through the pydantic models (tests/unit/test_crd.py imports INVALID and VALID), so the CRD and the
operator agree on what a valid spec is.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiException

from kanary.spec import RolloutSpec
from kanary.status import (
    AnalysisStatus,
    Condition,
    HistoryEntry,
    MetricResult,
    ReadinessStatus,
    RolloutStatus,
)
from tests.integration.conftest import REPO_ROOT, Cluster

EXAMPLES = REPO_ROOT / "manifests" / "examples"
CRD_FILE = REPO_ROOT / "crds" / "rollouts.kanary.dev.yaml"
GROUP, VERSION, PLURAL = "kanary.dev", "v1alpha1", "rollouts"

Spec = dict[str, Any]
DELETE = object()


def example(name: str = "rollout-gin-demo.yaml") -> dict[str, Any]:
    """A Rollout from manifests/examples, as a fresh dict."""
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    return doc


def edit(path: str, value: Any) -> Callable[[Spec], None]:
    """An edit of the spec: set (or, with DELETE, remove) the field at a dotted path, e.g.
    "strategy.steps[0].setWeight"."""
    keys: list[str | int] = []
    for part in path.split("."):
        name, *indexes = re.split(r"\[(\d+)\]", part)
        keys.append(name)
        keys.extend(int(i) for i in indexes if i)

    def apply(spec: Spec) -> None:
        node: Any = spec
        for key in keys[:-1]:
            node = node[key]
        if value is DELETE:
            del node[keys[-1]]
        else:
            node[keys[-1]] = copy.deepcopy(value)

    return apply


def edits(*fns: Callable[[Spec], None]) -> Callable[[Spec], None]:
    def apply(spec: Spec) -> None:
        for fn in fns:
            fn(spec)

    return apply


@dataclass(frozen=True)
class Case:
    id: str
    change: Callable[[Spec], None]
    field: str  # the API server's message must name this field
    words: str = ""  # ... and say this (the CEL rule's message, mostly)
    base: str = "rollout-gin-demo.yaml"
    # False where only the API server checks: pydantic passes the PodSpec through unchecked.
    pydantic_refuses: bool = True

    def body(self, name: str | None = None) -> dict[str, Any]:
        body = example(self.base)
        self.change(body["spec"])
        body["metadata"]["name"] = name or self.id
        return body


def _steps(*steps: Spec) -> Callable[[Spec], None]:
    return edit("strategy.steps", list(steps))


INVALID: list[Case] = [
    Case(
        "weight-over-100",
        edit("strategy.steps[0].setWeight", 101),
        "spec.strategy.steps[0].setWeight",
    ),
    Case(
        "negative-weight",
        edit("strategy.steps[0].setWeight", -5),
        "spec.strategy.steps[0].setWeight",
    ),
    Case(
        "decreasing-weights",
        _steps({"setWeight": 50}, {"pause": {"duration": "10s"}}, {"setWeight": 25}),
        "spec.strategy.steps",
        "never decrease",
    ),
    Case("empty-steps", _steps(), "spec.strategy.steps"),
    Case(
        "only-pauses",
        _steps({"pause": {"duration": "10s"}}, {"pause": {}}),
        "spec.strategy.steps",
        "at least one setWeight",
    ),
    Case(
        "step-with-both",
        edit("strategy.steps[0]", {"setWeight": 5, "pause": {"duration": "1m"}}),
        "spec.strategy.steps[0]",
        "either setWeight or pause",
    ),
    Case(
        "empty-step",
        edit("strategy.steps[0]", {}),
        "spec.strategy.steps[0]",
        "either setWeight or pause",
    ),
    Case(
        "bad-pause-duration",
        edit("strategy.steps[1].pause.duration", "30 seconds"),
        "spec.strategy.steps[1].pause.duration",
    ),
    Case("bad-window", edit("strategy.analysis.window", "30"), "spec.strategy.analysis.window"),
    Case(
        "zero-interval",
        edit("strategy.analysis.interval", "0s"),
        "spec.strategy.analysis.interval",
        "must be positive",
    ),
    Case(
        "zero-prometheus-timeout",
        edit("strategy.analysis.prometheus.timeout", "0ms"),
        "spec.strategy.analysis.prometheus.timeout",
        "must be positive",
    ),
    Case("missing-template", edit("template", DELETE), "spec.template"),
    Case("missing-strategy", edit("strategy", DELETE), "spec.strategy"),
    Case("no-containers", edit("template.spec.containers", []), "spec.template.spec.containers"),
    Case(
        "container-without-image",
        edit("template.spec.containers[0].image", DELETE),
        "spec.template.spec.containers[0].image",
        pydantic_refuses=False,
    ),
    Case(
        "unknown-router-field",
        edit("trafficRouting.gatewayAPI.weightOnly", True),
        "spec.trafficRouting.gatewayAPI.weightOnly",
    ),
    Case(
        "unknown-router",
        edit("trafficRouting", {"istio": {"virtualService": "gin-demo"}}),
        "spec.trafficRouting.istio",
    ),
    Case("unknown-spec-field", edit("replica", 3), "spec.replica"),
    Case(
        "empty-httproute-name",
        edit("trafficRouting.gatewayAPI.httpRoute", ""),
        "spec.trafficRouting.gatewayAPI.httpRoute",
    ),
    Case(
        "metric-without-bound",
        edit("strategy.analysis.metrics[0]", {"name": "error-rate"}),
        "spec.strategy.analysis.metrics[0]",
        "needs a bound",
    ),
    Case(
        "custom-metric-without-query",
        edit("strategy.analysis.metrics[2].query", DELETE),
        "spec.strategy.analysis.metrics[2]",
        "needs a query",
    ),
    Case(
        "metric-min-over-max",
        edit("strategy.analysis.metrics[0].min", 0.5),
        "spec.strategy.analysis.metrics[0]",
        "min must not exceed max",
    ),
    Case(
        "duplicate-metric",
        edit("strategy.analysis.metrics[1].name", "error-rate"),
        "spec.strategy.analysis.metrics[1]",
    ),
    Case(
        "bad-metric-name",
        edit("strategy.analysis.metrics[2].name", "Checkout_Errors"),
        "spec.strategy.analysis.metrics[2].name",
    ),
    Case(
        "zero-max-ratio",
        edit("strategy.analysis.metrics[0].maxRatio", 0),
        "spec.strategy.analysis.metrics[0].maxRatio",
    ),
    Case(
        "bad-prometheus-url",
        edit("strategy.analysis.prometheus.url", "prometheus.monitoring.svc:9090"),
        "spec.strategy.analysis.prometheus.url",
    ),
    Case(
        "analysis-without-metrics",
        edit("strategy.analysis.metrics", DELETE),
        "spec.strategy.analysis.metrics",
    ),
    Case(
        "bad-on-inconclusive",
        edit("strategy.analysis.onInconclusive", "ignore"),
        "spec.strategy.analysis.onInconclusive",
    ),
    Case(
        "zero-failure-limit",
        edit("strategy.analysis.failureLimit", 0),
        "spec.strategy.analysis.failureLimit",
    ),
    Case("replicas-0", edit("replicas", 0), "spec.replicas"),
    Case("port-out-of-range", edit("service.port", 70000), "spec.service.port"),
    Case(
        "zero-max-pod-ready-seconds",
        edit("strategy.readiness.maxPodReadySeconds", 0),
        "spec.strategy.readiness.maxPodReadySeconds",
    ),
    Case(
        "zero-progress-deadline",
        edit("strategy.progressDeadlineSeconds", 0),
        "spec.strategy.progressDeadlineSeconds",
    ),
    Case(
        "negative-scale-down-delay",
        edit("strategy.abortScaleDownDelaySeconds", -1),
        "spec.strategy.abortScaleDownDelaySeconds",
    ),
    Case(
        "selector-not-matching-labels",
        edit("selector.matchLabels", {"app": "other"}),
        "spec.selector.matchLabels",
        "must match spec.template.metadata.labels",
    ),
    Case(
        "no-selector-no-labels",
        edits(edit("selector", DELETE), edit("template.metadata.labels", DELETE)),
        "spec.template.metadata.labels",
        "needed when spec.selector is omitted",
    ),
]

VALID: list[Case] = [
    Case("gin-demo", edits(), ""),
    Case("replica-ratio", edits(), "", base="rollout-replica-ratio.yaml"),
    # An explicit null is the field omitted, for the API server (it prunes non-nullable nulls
    # before validation) as for pydantic.
    Case(
        "explicit-nulls", edits(edit("strategy.steps[0].pause", None), edit("selector", None)), ""
    ),
    Case("int-target-port", edit("service.targetPort", 8080), ""),
    Case("no-analysis", edit("strategy.analysis", DELETE), ""),
]


def _ids(cases: list[Case]) -> list[str]:
    return [c.id for c in cases]


# ------------------------------------------------------------------ against the API server ---


def _kubectl(
    cluster: Cluster, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(cluster.kubectl), "--kubeconfig", str(cluster.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def rollouts(cluster: Cluster) -> client.CustomObjectsApi:
    """The CRD from crds/, installed as a user does; the API for Rollouts."""
    applied = _kubectl(cluster, "apply", "--server-side", "-f", str(CRD_FILE))
    assert applied.returncode == 0, applied.stderr
    established = _kubectl(
        cluster, "wait", "--for=condition=Established", "crd/rollouts.kanary.dev", "--timeout=30s"
    )
    assert established.returncode == 0, established.stderr
    return client.CustomObjectsApi(cluster.api)


def _create(rollouts: client.CustomObjectsApi, namespace: str, body: dict[str, Any]) -> Any:
    return rollouts.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body, field_validation="Strict"
    )


def _refusal(rollouts: client.CustomObjectsApi, namespace: str, body: dict[str, Any]) -> str:
    try:
        _create(rollouts, namespace, body)
    except ApiException as e:
        assert e.status in (400, 422), f"{e.status}: {e.body}"
        return str(json.loads(e.body)["message"])
    raise AssertionError(f"the API server accepted {body['metadata']['name']}")


@pytest.mark.integration
@pytest.mark.parametrize("case", INVALID, ids=_ids(INVALID))
def test_api_server_refuses(rollouts: client.CustomObjectsApi, namespace: str, case: Case) -> None:
    message = _refusal(rollouts, namespace, case.body())
    assert case.field in message, message
    assert case.words in message, message


@pytest.mark.integration
@pytest.mark.parametrize("case", VALID, ids=_ids(VALID))
def test_api_server_accepts(rollouts: client.CustomObjectsApi, namespace: str, case: Case) -> None:
    body = case.body()
    created = _create(rollouts, namespace, body)
    # What the API server stores (its defaults applied, nulls pruned) is what the operator
    # would have made of the spec as written.
    assert RolloutSpec.model_validate(created["spec"]) == RolloutSpec.model_validate(body["spec"])


@pytest.mark.integration
def test_kubectl_apply_is_strict(
    cluster: Cluster, rollouts: client.CustomObjectsApi, namespace: str
) -> None:
    """Plain `kubectl apply` (strict field validation by default) names an unknown field."""
    body = next(c for c in INVALID if c.id == "unknown-router-field").body()
    out = _kubectl(cluster, "apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(body))
    assert out.returncode != 0
    assert "spec.trafficRouting.gatewayAPI.weightOnly" in out.stderr, out.stderr


@pytest.mark.integration
def test_status_round_trips(rollouts: client.CustomObjectsApi, namespace: str) -> None:
    """Everything the operator writes into status (RolloutStatus.to_patch) is stored as is."""
    _create(rollouts, namespace, example())
    now = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    status = RolloutStatus(
        phase="Progressing",
        message="step 3/7: weight 25%",
        observed_generation=1,
        current_step_index=2,
        canary_weight=25,
        stable_revision="7d9f5c",
        canary_revision="5c4b1a",
        step="3/7",
        stable_image="kanary/gin-demo:v1",
        canary_image="kanary/gin-demo:v2",
        step_started_at=now,
        analysis=AnalysisStatus(
            last_check_at=now,
            verdict="Pass",
            metrics=[MetricResult(name="error-rate", verdict="Pass", value=0.002, max=0.01)],
        ),
        readiness=ReadinessStatus(count=1, p50_seconds=2.1, max_seconds=2.1, slowest_pod="p"),
        conditions=[
            Condition(type="Progressing", status="True", reason="Step", last_transition_time=now)
        ],
        history=[HistoryEntry(revision="1", outcome="Promoted", finished=now)],
    )
    written = rollouts.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "gin-demo", {"status": status.to_patch()}
    )
    assert RolloutStatus.model_validate(written["status"]) == status


@pytest.mark.integration
def test_printer_columns_and_wait(
    cluster: Cluster, rollouts: client.CustomObjectsApi, namespace: str
) -> None:
    _create(rollouts, namespace, example())
    now = datetime.now(UTC).isoformat()
    status = {
        "phase": "Healthy",
        "step": "7/7",
        "canaryWeight": 0,
        "stableImage": "kanary/gin-demo:v2",
        "canaryImage": "kanary/gin-demo:v2",
        "message": "promoted kanary/gin-demo:v2",
        "conditions": [
            {"type": "Completed", "status": "True", "reason": "Promoted", "lastTransitionTime": now}
        ],
    }
    rollouts.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "gin-demo", {"status": status}
    )
    out = _kubectl(cluster, "get", "kro", "-n", namespace)  # the short name
    assert out.returncode == 0, out.stderr
    header, row = out.stdout.splitlines()[:2]
    assert header.split() == ["NAME", "PHASE", "STEP", "WEIGHT", "STABLE", "CANARY", "AGE"]
    images = ["kanary/gin-demo:v2", "kanary/gin-demo:v2"]
    assert row.split()[:6] == ["gin-demo", "Healthy", "7/7", "0", *images]
    wide = _kubectl(cluster, "get", "rollouts", "-n", namespace, "-o", "wide")
    assert wide.stdout.splitlines()[0].split()[-1] == "MESSAGE"
    assert "promoted kanary/gin-demo:v2" in wide.stdout
    waited = _kubectl(
        cluster,
        "wait",
        "-n",
        namespace,
        "--for=condition=Completed",
        "rollout/gin-demo",
        "--timeout=10s",
    )
    assert waited.returncode == 0, waited.stderr
