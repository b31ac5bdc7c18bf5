"""The operator against the real API server: steps, weights, rollback, restart, kubectl views.

The operator runs as a process with its ServiceAccount's RBAC (operator_fixtures). kwok drives the
pods' readiness; these tests check what kanary writes (Deployments, the HTTPRoute's weights,
status, Events). Real traffic through a gateway is the data-plane and e2e tests' job.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.integration.conftest import Cluster, wait_until
from tests.integration.operator_fixtures import OperatorProcess, kubectl, operator
from tests.integration.rollout_objects import httproute, rollout_body

__all__ = ["operator"]  # the fixture, imported for pytest

GROUP, VERSION, PLURAL = "kanary.dev", "v1alpha1", "rollouts"
GW = ("gateway.networking.k8s.io", "v1", "httproutes")
READY_DELAY = "pod-ready.stage.kwok.x-k8s.io/delay"
READY_JITTER = "pod-ready.stage.kwok.x-k8s.io/jitter-delay"


class Kit:
    """Reads and writes for one test namespace."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster = cluster
        self.ns = namespace
        self.custom = client.CustomObjectsApi(cluster.api)
        self.apps = client.AppsV1Api(cluster.api)
        self.core = client.CoreV1Api(cluster.api)

    def create(self, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, body)

    def create_route(self, name: str) -> None:
        self.custom.create_namespaced_custom_object(GW[0], GW[1], self.ns, GW[2], httproute(name))

    def rollout(self, name: str) -> dict[str, Any]:
        return dict(self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name))

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.rollout(name).get("status") or {})

    def set_image(
        self, name: str, image: str, pod_annotations: dict[str, str] | None = None
    ) -> None:
        body = self.rollout(name)
        body["spec"]["template"]["spec"]["containers"][0]["image"] = image
        if pod_annotations is not None:
            body["spec"]["template"]["metadata"]["annotations"] = pod_annotations
        self.custom.replace_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name, body)

    def annotate(self, name: str, action: str) -> None:
        kubectl(
            self.cluster,
            "annotate",
            "-n",
            self.ns,
            f"rollout/{name}",
            f"kanary.dev/action={action}",
            "--overwrite",
        )

    def weights(self, name: str) -> tuple[int, int]:
        route = self.custom.get_namespaced_custom_object(GW[0], GW[1], self.ns, GW[2], name)
        refs = {
            r["name"]: int(r.get("weight", 1)) for r in route["spec"]["rules"][0]["backendRefs"]
        }
        return refs[f"{name}-stable"], refs[f"{name}-canary"]

    def deployment(self, name: str) -> client.V1Deployment | None:
        try:
            return self.apps.read_namespaced_deployment(name, self.ns)
        except client.ApiException as e:
            if e.status == 404:
                return None
            raise

    def wait_phase(self, name: str, phase: str, timeout: float = 90) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            st = self.status(name)
            return st if st.get("phase") == phase else None

        try:
            return wait_until(f"rollout {name} phase {phase}", probe, timeout=timeout)
        except AssertionError as e:
            raise AssertionError(f"{e}; last status: {self.status(name)}") from None

    def wait_promoted(self, name: str, image: str, timeout: float = 120) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            st = self.status(name)
            dep = self.deployment(f"{name}-stable")
            done = (
                st.get("phase") == "Healthy"
                and dep is not None
                and dep.spec.template.spec.containers[0].image == image
            )
            return st if done else None

        try:
            return wait_until(f"rollout {name} promoted to {image}", probe, timeout=timeout)
        except AssertionError as e:
            raise AssertionError(f"{e}; last status: {self.status(name)}") from None

    def events(self, name: str) -> list[client.CoreV1Event]:
        items = self.core.list_namespaced_event(
            self.ns, field_selector=f"involvedObject.name={name},involvedObject.kind=Rollout"
        ).items
        return list(items)


class WeightRecorder:
    """Polls the HTTPRoute and keeps every distinct (stable, canary) pair in order."""

    def __init__(self, kit: Kit, name: str) -> None:
        self.kit, self.name = kit, name
        self.seen: list[tuple[int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        pair = self.kit.weights(self.name)
        if not self.seen or self.seen[-1] != pair:
            self.seen.append(pair)

    def _run(self) -> None:
        deadline = time.monotonic() + 600
        while not self._stop.is_set() and time.monotonic() < deadline:
            self._sample()
            time.sleep(0.05)

    def __enter__(self) -> WeightRecorder:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        """Ends with what the route holds now: the last write before the status the caller
        waited for can fall between two polls (CI: the final (100, 0) was missed)."""
        self._stop.set()
        self._thread.join(timeout=5)
        self._sample()

    def canary(self) -> list[int]:
        return [c for _, c in self.seen]


@pytest.fixture
def kit(cluster: Cluster, namespace: str, operator: OperatorProcess) -> Iterator[Kit]:
    k = Kit(cluster, namespace)
    yield k


STEPS = [
    {"setWeight": 5},
    {"pause": {"duration": "1s"}},
    {"setWeight": 25},
    {"pause": {"duration": "1s"}},
    {"setWeight": 50},
    {"pause": {"duration": "1s"}},
    {"setWeight": 100},
]


def test_healthy_rollout_walks_every_step_and_promotes(kit: Kit) -> None:
    kit.create_route("web")
    kit.create(rollout_body("web", "kanary/gin-demo:v1", STEPS))
    first = kit.wait_phase("web", "Healthy")
    assert first["stableRevision"]
    assert kit.weights("web") == (100, 0)

    with WeightRecorder(kit, "web") as rec:
        kit.set_image("web", "kanary/gin-demo:v2")
        final = kit.wait_promoted("web", "kanary/gin-demo:v2")
    assert rec.canary() == [0, 5, 25, 50, 100, 0], rec.seen
    assert rec.seen[-1] == (100, 0)
    assert final["stableRevision"] != first["stableRevision"]
    assert final["canaryWeight"] == 0
    canary = kit.deployment("web-canary")
    assert canary is not None and canary.spec.replicas > 0, "scaled down before the delay"
    wait_until(
        "old canary scaled to 0 after scaleDownDelaySeconds",
        lambda: (d := kit.deployment("web-canary")) is not None and d.spec.replicas == 0,
        timeout=20,
    )
    completed = [c for c in final["conditions"] if c["type"] == "Completed"]
    assert completed and completed[0]["status"] == "True"
    assert final["history"][-1]["outcome"] == "Promoted"
    reasons = [e.reason for e in kit.events("web")]
    assert reasons.count("Promoted") >= 1, reasons


def test_replica_ratio_mode_scales_the_tracks(kit: Kit) -> None:
    kit.create(
        rollout_body(
            "ratio",
            "kanary/gin-demo:v1",
            [{"setWeight": 25}, {"pause": {}}],
            gateway=False,
            replicas=4,
        )
    )
    kit.wait_phase("ratio", "Healthy")
    svc = kit.core.read_namespaced_service("ratio", kit.ns)
    assert "kanary.dev/track" not in svc.spec.selector
    kit.set_image("ratio", "kanary/gin-demo:v2")
    paused = kit.wait_phase("ratio", "Paused")
    canary, stable = kit.deployment("ratio-canary"), kit.deployment("ratio-stable")
    assert canary is not None and stable is not None
    assert (canary.spec.replicas, stable.spec.replicas) == (1, 3)
    assert paused["canaryWeight"] == 25
    kit.annotate("ratio", "promote")
    kit.wait_promoted("ratio", "kanary/gin-demo:v2")
    stable = kit.deployment("ratio-stable")
    assert stable is not None and stable.spec.replicas == 4


def test_abort_sends_weight_to_zero_first_and_never_touches_stable(kit: Kit) -> None:
    kit.create_route("ab")
    kit.create(
        rollout_body(
            "ab", "kanary/gin-demo:v1", [{"setWeight": 25}, {"pause": {}}, {"setWeight": 100}]
        )
    )
    kit.wait_phase("ab", "Healthy")
    stable_before = kit.deployment("ab-stable")
    assert stable_before is not None
    kit.set_image("ab", "kanary/gin-demo:v2")
    kit.wait_phase("ab", "Paused")
    assert kit.weights("ab") == (75, 25)
    kit.annotate("ab", "abort")
    wait_until("weight 0 after abort", lambda: kit.weights("ab") == (100, 0), timeout=10)
    canary = kit.deployment("ab-canary")
    assert canary is not None and canary.spec.replicas == 1, "scaled down before the delay"
    wait_until(
        "canary scaled to 0 after abortScaleDownDelaySeconds",
        lambda: (d := kit.deployment("ab-canary")) is not None and d.spec.replicas == 0,
        timeout=20,
    )
    status = kit.wait_phase("ab", "RolledBack")
    stable_after = kit.deployment("ab-stable")
    assert stable_after is not None
    assert stable_after.metadata.generation == stable_before.metadata.generation
    assert status["history"][-1]["outcome"] == "RolledBack"
    warnings = [e for e in kit.events("ab") if e.type == "Warning"]
    assert warnings, "a rollback must leave a Warning Event"


def test_slow_canary_readiness_rolls_back_with_the_measured_time(kit: Kit) -> None:
    kit.create_route("slow")
    kit.create(
        rollout_body(
            "slow", "kanary/gin-demo:v1", STEPS, strategy={"readiness": {"maxPodReadySeconds": 5}}
        )
    )
    kit.wait_phase("slow", "Healthy")
    kit.set_image("slow", "kanary/gin-demo:v2", {READY_DELAY: "8s", READY_JITTER: "8s"})
    status = kit.wait_phase("slow", "RolledBack", timeout=60)
    assert "slow-canary" in status["message"], status["message"]
    assert kit.weights("slow") == (100, 0)


def test_never_ready_canary_rolls_back_at_the_progress_deadline(kit: Kit) -> None:
    kit.create_route("stuck")
    kit.create(
        rollout_body("stuck", "kanary/gin-demo:v1", STEPS, strategy={"progressDeadlineSeconds": 6})
    )
    kit.wait_phase("stuck", "Healthy")
    started = time.monotonic()
    kit.set_image("stuck", "kanary/gin-demo:v2", {READY_DELAY: "10000s", READY_JITTER: "10000s"})
    status = kit.wait_phase("stuck", "RolledBack", timeout=60)
    assert time.monotonic() - started >= 6
    assert "deadline" in status["message"].lower(), status["message"]
    assert kit.weights("stuck") == (100, 0)


def test_operator_killed_mid_step_resumes_without_repeating_or_skipping(
    kit: Kit, operator: OperatorProcess
) -> None:
    steps = [
        {"setWeight": 5},
        {"pause": {"duration": "3s"}},
        {"setWeight": 25},
        {"pause": {"duration": "3s"}},
        {"setWeight": 50},
        {"pause": {"duration": "3s"}},
        {"setWeight": 100},
    ]
    kit.create_route("crash")
    kit.create(rollout_body("crash", "kanary/gin-demo:v1", steps))
    kit.wait_phase("crash", "Healthy")
    with WeightRecorder(kit, "crash") as rec:
        kit.set_image("crash", "kanary/gin-demo:v2")
        wait_until("weight 25", lambda: kit.weights("crash")[1] == 25, timeout=60)
        operator.kill(signal.SIGKILL)
        time.sleep(2)
        operator.start()
        kit.wait_promoted("crash", "kanary/gin-demo:v2")
    assert rec.canary() == [0, 5, 25, 50, 100, 0], rec.seen
    # "step 3/7: ..." -> (reason, "step 3/7"): a repeated step would show twice
    step_events = [
        (e.reason, e.message.split(":")[0])
        for e in kit.events("crash")
        if e.reason in ("Step", "WeightSet")
    ]
    assert step_events, "the engine announces each step"
    assert len(step_events) == len(set(step_events)), step_events


def test_kubectl_shows_columns_and_waits_for_completed(kit: Kit) -> None:
    kit.create_route("cols")
    kit.create(rollout_body("cols", "kanary/gin-demo:v1", [{"setWeight": 50}, {"setWeight": 100}]))
    kit.wait_phase("cols", "Healthy")
    kit.set_image("cols", "kanary/gin-demo:v2")
    kit.wait_phase("cols", "Progressing")  # so Completed refers to this rollout, not v1's
    waited = subprocess.run(
        [
            str(kit.cluster.kubectl),
            "--kubeconfig",
            str(kit.cluster.kubeconfig),
            "wait",
            "-n",
            kit.ns,
            "--for=condition=Completed",
            "rollout/cols",
            "--timeout=90s",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert waited.returncode == 0, waited.stderr
    table = kubectl(kit.cluster, "get", "rollouts", "-n", kit.ns)
    header = table.splitlines()[0].split()
    assert header[:6] == ["NAME", "PHASE", "STEP", "WEIGHT", "STABLE", "CANARY"], header
    assert "AGE" in header
    wide = kubectl(kit.cluster, "get", "rollouts", "-n", kit.ns, "-o", "wide")
    assert "MESSAGE" in wide.splitlines()[0]
    assert "kanary/gin-demo:v2" in table.splitlines()[1]
