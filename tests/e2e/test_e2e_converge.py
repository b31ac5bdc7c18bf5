"""End to end, with real traffic: issue 10's converge scenarios.

- A canary that goes un-Ready after it was Ready (the Gin service's UNREADY_AFTER knob; the
  local cluster turns a pod NotReady when its real readinessProbe fails) loses its traffic
  within two ticks and rolls back with CanaryUnavailable.
- Every Rollout in manifests/examples/, applied unchanged (only the namespace is the test's),
  promotes; the user's part is what a user does: a new image, and `promote` at `pause: {}`.

    hack/cluster/exec.sh .venv/bin/python -m pytest -q tests/e2e/test_e2e_converge.py
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.integration.conftest import REPO_ROOT, apps, cluster, core, namespace
from tests.integration.dataplane_fixtures import dataplane, kwok_timing, record
from tests.integration.test_operator import Kit

from .e2e_fixtures import (
    TRAFFIC_LAG_S,
    Scenario,
    TimedWeightRecorder,
    Traffic,
    analysis_spec,
    e2e_operator,
    failures,
    kwok_scenario,
    scenario,
)

__all__ = [
    "apps",
    "cluster",
    "core",
    "dataplane",
    "e2e_operator",
    "kwok_scenario",
    "namespace",
    "scenario",
]

EXAMPLES = REPO_ROOT / "manifests" / "examples"
PROBE = {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 1}


def _ready_condition(pod: client.V1Pod) -> bool:
    conditions = (pod.status.conditions if pod.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def test_canary_unready_after_ready_loses_traffic_and_rolls_back(
    kwok_scenario: Scenario,
) -> None:
    """On kwok's pods: the pod runner's probes take Ready away (test_e2e.py has the same story
    on the real node, where the kubelet does)."""
    sc = kwok_scenario
    steps: list[dict[str, Any]] = [{"setWeight": 25}, {"pause": {}}]
    sc.start_v1(
        steps=steps, analysis=analysis_spec(), readiness_probe=PROBE, unavailableGraceSeconds=8
    )
    with Traffic(sc.host) as traffic:
        t_serving = traffic.wait_only({"v1"})
        with TimedWeightRecorder(sc.kit, sc.name) as rec:
            # Ready after kwok's 1s, /readyz 503 for good 12s after the process started
            sc.set_version("v2", env={"UNREADY_AFTER": "12s"}, pod_annotations=kwok_timing())
            t_weight = rec.first_time(25) if _wait(lambda: 25 in rec.canary(), 60) else None
            assert t_weight is not None, (rec.seen, sc.describe())
            t_unready = _wait_canary_not_ready(sc.kit, sc.name, timeout=60)
            assert _wait(lambda: rec.seen[-1] == (100, 0), 15), (rec.seen, sc.describe())
            t_zero = rec.first_time(0, after=t_weight)
            status = sc.kit.wait_phase(sc.name, "RolledBack", timeout=60)
            t_rolled = time.monotonic()
    everything = traffic.samples(t_serving)

    rolled = sc.condition(status, "RolledBack")
    assert rolled["reason"] == "CanaryUnavailable", status
    assert "CanaryUnavailable" in sc.reasons()
    # weight 0 within two ticks (plus the recorder's 0.5 s poll) of the pod's NotReady
    assert t_zero - t_unready <= 2.5, (t_zero - t_unready, rec.seen)
    # unavailableGraceSeconds (8) runs from the start of the tick that saw the canary unready;
    # that tick writes weight 0 later (t_zero), so the rollback may come up to a tick's length
    # less than 8 s after t_zero (now exactly on time: the tick wakes at the grace's end).
    assert 8 - 1 <= t_rolled - t_zero <= 8 + 5, t_rolled - t_zero
    # Between the pod's NotReady (its endpoint leaves the canary Service) and weight 0 taking
    # effect in Traefik (a tick, then its 2 s reload throttle), requests routed to the canary
    # find no endpoint: 503. None before, none after.
    failed = [s for s in everything if s.status != "200"]
    window = (t_unready - 0.5, t_zero + TRAFFIC_LAG_S)
    late = [round(s.at - t_zero, 2) for s in failed if not window[0] <= s.at <= window[1]]
    assert not late, (late, failures(everything))
    record(sc.dp, "e2e_unready_requests_failed_between_notready_and_weight_0", len(failed))
    record(sc.dp, "e2e_unready_requests", len(everything))
    record(sc.dp, "e2e_unready_seconds_to_weight_0", round(t_zero - t_unready, 2))
    record(sc.dp, "e2e_unready_seconds_to_rollback", round(t_rolled - t_unready, 1))


def _wait(probe: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return True
        time.sleep(0.1)
    return False


def _wait_canary_not_ready(kit: Kit, name: str, timeout: float) -> float:
    """When the API first showed a canary pod that had been Ready as NotReady."""
    seen_ready: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = kit.core.list_namespaced_pod(
            kit.ns, label_selector=f"kanary.dev/rollout={name},kanary.dev/track=canary"
        ).items
        for pod in pods:
            pod_name = str(pod.metadata.name if pod.metadata else "")
            if _ready_condition(pod):
                seen_ready.add(pod_name)
            elif pod_name in seen_ready:
                return time.monotonic()
        time.sleep(0.1)
    raise AssertionError(f"no canary pod went from Ready to NotReady in {timeout}s")


# ------------------------------------------------------------------- the examples, as shipped ---


def _example(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((EXAMPLES / name).read_text()))


def _new_version(body: dict[str, Any], tag: str) -> None:
    container = body["spec"]["template"]["spec"]["containers"][0]
    container["image"] = f"kanary/gin-demo:{tag}"
    container["env"] = [
        {"name": "APP_VERSION", "value": tag} if e["name"] == "APP_VERSION" else e
        for e in container.get("env", [])
    ]


@pytest.mark.parametrize(
    ("rollout_file", "route_file"),
    # rollout-blue-green.yaml: test_e2e_strategies.py applies it unchanged, with preview traffic
    [("rollout-gin-demo.yaml", "httproute-gin-demo.yaml"), ("rollout-replica-ratio.yaml", None)],
)
def test_every_example_promotes_as_shipped(
    scenario: Scenario, rollout_file: str, route_file: str | None
) -> None:
    sc = scenario
    kit = sc.kit
    rollout = _example(rollout_file)
    name = rollout["metadata"]["name"]
    if route_file is not None:
        route = _example(route_file)
        kit.custom.create_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", sc.ns, "httproutes", route
        )
    kit.custom.create_namespaced_custom_object("kanary.dev", "v1alpha1", sc.ns, "rollouts", rollout)
    kit.wait_phase(name, "Healthy", timeout=120)
    # The example route has no hostname: requests with any Host reach it (other tests' routes
    # name theirs). Traffic keeps the analysis above minRequests at 5%.
    with Traffic(f"examples.{sc.ns}.test", rate=60, max_seconds=600) as traffic:
        t_serving = traffic.wait_only({"v1"}, timeout=90) if route_file else 0.0
        t0 = time.monotonic()
        for _ in range(5):
            body = kit.rollout(name)
            _new_version(body, "v2")
            try:
                kit.custom.replace_namespaced_custom_object(
                    "kanary.dev", "v1alpha1", sc.ns, "rollouts", name, body
                )
                break
            except client.ApiException as e:
                if e.status != 409:
                    raise
        promoted_at_pause = False
        deadline = time.monotonic() + 540
        while time.monotonic() < deadline:
            status = kit.status(name)
            if status.get("pauseReason") == "Step":
                result = sc.kanary("promote", name, "--wait")
                assert result.returncode == 0, result.stderr
                promoted_at_pause = True
            if status.get("phase") == "Healthy" and status.get("stableImage") == (
                "kanary/gin-demo:v2"
            ):
                break
            assert status.get("phase") not in ("RolledBack", "Invalid"), sc.describe()
            time.sleep(1)
        else:
            raise AssertionError(f"{rollout_file} did not promote in 540s:\n{sc.describe()}")
        seconds = time.monotonic() - t0
    assert promoted_at_pause
    assert not [r for t, r, _ in sc.events() if t == "Warning"], sc.events()
    record(sc.dp, f"e2e_example_{Path(rollout_file).stem}_seconds", round(seconds, 1))
    if route_file is not None:
        assert not failures(traffic.samples(t_serving)), failures(traffic.samples(t_serving))
