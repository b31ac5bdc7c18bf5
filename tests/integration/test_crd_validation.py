"""The API server refuses invalid Rollouts with a message naming the field, and takes valid ones.

The CRD comes from crds/ as a user installs it; no operator runs here. The cases (INVALID, VALID)
live in tests/unit/test_crd.py, which also runs them through the pydantic models and the CRD's
schema offline, so the CRD and the operator agree on what a valid spec is.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from typing import Any, cast

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
from tests.integration.operator_fixtures import wait_crd_established
from tests.unit.test_crd import INVALID, VALID, Case, example

CRD_FILE = REPO_ROOT / "crds" / "rollouts.kanary.dev.yaml"
GROUP, VERSION, PLURAL = "kanary.dev", "v1alpha1", "rollouts"


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
    applied = _kubectl(cluster, "apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    assert applied.returncode == 0, applied.stderr
    wait_crd_established(cluster)
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
        return str(json.loads(e.body or "{}").get("message", e.body))
    raise AssertionError(f"the API server accepted {body['metadata']['name']}")


def _ids(cases: list[Case]) -> list[str]:
    return [c.id for c in cases]


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
    written = cast(
        dict[str, Any],
        rollouts.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, "gin-demo", {"status": status.to_patch()}
        ),
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
