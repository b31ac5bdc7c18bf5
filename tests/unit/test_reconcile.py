"""The I/O glue (reconcile.py: observe, execute, status and action writes) against a fake Kube
that models Deployments, Services, ControllerRevisions, route rules and weights, and the
Rollout's resourceVersion. Each test is one finding of issue 10 (or a contract it asked for)."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any

import pytest
from tests.unit.fake_kube import FakeKube, Harness

from kanary.analysis.endpoints import PrometheusPolicy
from kanary.analysis.source import QueryResult, Value
from kanary.observation import PodTiming
from kanary.reconcile import Conflict, NewerSpec, reconcile, status_patch
from kanary.status import RolloutStatus
from kanary.status_write import observation_only

NS, NAME = "ns", "demo"


def template(tag: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"labels": labels or {"app": "demo"}},
        "spec": {"containers": [{"name": "app", "image": f"demo:{tag}"}]},
    }


def rollout(steps: list[dict[str, Any]] | None = None, **strategy: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kanary.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": NAME, "namespace": NS, "uid": "uid-1", "generation": 1},
        "spec": {
            "replicas": 4,
            "template": template("v1"),
            "trafficRouting": {"gatewayAPI": {"httpRoute": "demo"}},
            "strategy": {
                "steps": steps
                or [
                    {"setWeight": 5},
                    {"pause": {"duration": "30s"}},
                    {"setWeight": 50},
                    {"pause": {}},
                    {"setWeight": 100},
                ],
                "scaleDownDelaySeconds": 5,
                "abortScaleDownDelaySeconds": 5,
                **strategy,
            },
        },
    }


def backends(stable: int | None, canary: int | None) -> list[dict[str, Any]]:
    refs: list[dict[str, Any]] = [
        {"name": "demo-stable", "port": 80},
        {"name": "demo-canary", "port": 80},
    ]
    for ref, weight in zip(refs, (stable, canary), strict=True):
        if weight is not None:
            ref["weight"] = weight
    return refs


def httproute(pinned_rule: bool = False) -> dict[str, Any]:
    rules: list[dict[str, Any]] = [{"backendRefs": backends(100, 0)}]
    if pinned_rule:
        rules.insert(
            0,
            {
                "matches": [{"headers": [{"name": "x-pin", "value": "stable"}]}],
                "backendRefs": [{"name": "demo-stable", "port": 80}],
            },
        )
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "demo", "namespace": NS},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": rules},
    }


def healthy(body: dict[str, Any] | None = None, pinned_rule: bool = False) -> Harness:
    kube = FakeKube()
    kube.put(body or rollout())
    kube.put(httproute(pinned_rule))
    h = Harness(kube)
    h.run_until(lambda s: s.phase == "Healthy")
    return h


def new_version(h: Harness, tag: str = "v2") -> None:
    body = h.body
    body["spec"]["template"] = template(tag)
    body["metadata"]["generation"] += 1
    h.kube.put(body)


def split(h: Harness) -> tuple[int, int]:
    route = h.kube.get("HTTPRoute", NS, "demo")
    assert route is not None
    refs = route["spec"]["rules"][-1]["backendRefs"]
    return int(refs[0].get("weight", 1)), int(refs[1].get("weight", 1))


def deployment_image(h: Harness, track: str) -> str:
    dep = h.kube.get("Deployment", NS, f"demo-{track}")
    assert dep is not None
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


class RecordingPrometheus:
    """Answers every query with 0 and remembers it."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def query(self, promql: str, at: datetime) -> QueryResult:
        self.asked.append(promql)
        return Value(0.0)

    def query_by(self, promql: str, at: datetime, label: str) -> dict[str, float]:
        self.asked.append(promql)
        return {}


def analysed_harness(body: dict[str, Any]) -> tuple[Harness, list[str]]:
    """A Rollout with analysis, the operator allowing only http://prometheus:9090."""
    kube = FakeKube()
    kube.put(body)
    kube.put(httproute())
    h = Harness(kube)
    h.resolve = PrometheusPolicy("http://prometheus:9090", ()).resolve
    h.prometheus = RecordingPrometheus()
    return h, h.prometheus.asked


def at_pause(h: Harness) -> None:
    new_version(h)
    h.run_until(lambda s: s.current_step_index == 1)


# ---- converged means zero writes ---------------------------------------------------------------


def test_a_converged_rollout_makes_no_writes() -> None:
    h = healthy()
    before = h.kube.writes
    for _ in range(30):
        h.tick()
    assert h.kube.writes == before


def test_a_paused_rollout_makes_no_writes() -> None:
    h = healthy()
    new_version(h)
    h.run_until(lambda s: s.phase == "Paused")
    before = h.kube.writes
    for _ in range(30):
        h.tick()
    assert h.kube.writes == before


# ---- route weights: set and verify every tick --------------------------------------------------


def reapply_route(h: Harness, stable: int, canary: int) -> None:
    route = httproute()
    route["spec"]["rules"][0]["backendRefs"] = backends(stable, canary)
    h.kube.put(route)


def test_a_route_reapplied_after_a_rollback_is_corrected_in_one_tick() -> None:
    """Found: weights were written once and never read back (GitOps re-apply left 50/50)."""
    h = healthy()
    at_pause(h)
    h.kube.annotate(NS, NAME, **{"kanary.dev/action": "abort"})
    h.tick()
    assert h.status.phase == "RolledBack" and split(h) == (100, 0)
    reapply_route(h, 50, 50)
    h.tick()
    assert split(h) == (100, 0)
    assert "WeightRestored" in h.reasons()


def test_a_route_reapplied_mid_rollout_gets_the_weight_in_force_back() -> None:
    h = healthy()
    at_pause(h)
    assert split(h) == (95, 5)
    reapply_route(h, 100, 0)
    h.tick()
    assert split(h) == (95, 5)
    assert h.status.verified_weight == 5


def test_a_second_rule_pinned_to_stable_is_never_rewritten() -> None:
    """Found: every backendRef naming <name>-stable in every rule got the weight."""
    h = healthy(pinned_rule=True)
    route = h.kube.get("HTTPRoute", NS, "demo")
    assert route is not None
    pinned = copy.deepcopy(route["spec"]["rules"][0])
    new_version(h)
    h.run_until(lambda s: s.phase == "Paused")
    h.kube.annotate(NS, NAME, **{"kanary.dev/action": "promote"})
    h.run_until(lambda s: s.phase == "Healthy")
    assert h.kube.get("HTTPRoute", NS, "demo")["spec"]["rules"][0] == pinned  # type: ignore[index]
    new_version(h, "v3")
    h.run_until(lambda s: s.current_step_index == 1)
    h.kube.annotate(NS, NAME, **{"kanary.dev/action": "abort"})
    h.tick()
    assert h.kube.get("HTTPRoute", NS, "demo")["spec"]["rules"][0] == pinned  # type: ignore[index]


def test_a_missing_route_is_named_as_the_blocker_after_the_deadline() -> None:
    """Found: "stable track not Ready" although all pods were Ready and the route was missing."""
    kube = FakeKube()
    kube.put(rollout(progressDeadlineSeconds=5))
    h = Harness(kube)
    for _ in range(10):
        h.tick()
    progressing = next(c for c in h.status.conditions if c.type == "Progressing")
    assert progressing.reason == "ProgressDeadlineExceeded"
    assert "HTTPRoute demo not found" in progressing.message
    assert "not Ready" not in progressing.message


def test_a_route_that_reaches_the_watch_after_the_rollout_raises_no_warning() -> None:
    """Found in CI: the Rollout's first tick now comes on its watch event, before the route
    created just before it reached the route watch: a RouteProblem Warning for nothing."""
    kube = FakeKube()
    kube.put(rollout())
    h = Harness(kube)
    h.tick()
    assert h.status.route_problem is not None  # kept in status
    kube.put(httproute(False))
    h.run_until(lambda s: s.phase == "Healthy")
    reasons = [e[1] for e in h.events]
    assert "RouteProblem" not in reasons and "RouteFixed" not in reasons, reasons


def test_an_unlabelled_route_is_read_directly_labelled_once_then_comes_from_the_watch() -> None:
    """Issue 15: the route watch selects on kanary.dev/steered (scope.watch_selectors), which a
    user's route lacks until kanary adds it: the first tick reads the route directly and labels
    it; a label removed later comes back."""
    kube = FakeKube()
    kube.put(rollout())
    kube.put(httproute(False))
    h = Harness(kube)
    assert kube.view(NS, NAME).route is None  # the watch does not send it yet
    h.tick()
    assert h.status.route_problem is None
    route = kube.get("HTTPRoute", NS, "demo")
    assert route is not None and route["metadata"]["labels"] == {"kanary.dev/steered": "true"}
    assert kube.view(NS, NAME).route is not None
    h.run_until(lambda s: s.phase == "Healthy")
    new_version(h)
    h.run_until(lambda s: s.phase == "Paused")
    assert kube.log.count("label HTTPRoute demo") == 1
    paused_at = split(h)
    route = kube.get("HTTPRoute", NS, "demo")
    assert route is not None
    del route["metadata"]["labels"]["kanary.dev/steered"]  # someone re-applies their route
    h.tick()
    assert kube.log.count("label HTTPRoute demo") == 2
    assert h.status.route_problem is None and split(h) == paused_at


def test_a_missing_route_is_read_again_ever_less_often_not_every_tick() -> None:
    """Issue 15 review: while the named route does not exist, every tick read it (a GET per
    second in flight). Now the gap between reads doubles from 1 s to ROUTE_ABSENT_SECONDS, and
    a route created meanwhile is picked up by the next read."""
    kube = FakeKube()
    kube.put(rollout())
    h = Harness(kube)
    for _ in range(40):  # 40 ticks, a second apart
        h.tick()
    # at 0, 1, 2, 4, 8, 16, 26 and 36 s
    assert kube.log.count("get HTTPRoute demo") == 8, kube.log
    assert h.status.route_problem == "HTTPRoute demo not found"
    kube.put(httproute(False))  # the user creates it at 40 s: seen by the read at 46 s
    for _ in range(6):
        h.tick()
    assert kube.log.count("get HTTPRoute demo") == 8
    h.tick()
    assert kube.log.count("label HTTPRoute demo") == 1
    assert h.status.route_problem is None
    route = kube.get("HTTPRoute", NS, "demo")
    assert route is not None and route["metadata"]["labels"] == {"kanary.dev/steered": "true"}


def test_an_invalid_rollout_reads_its_route_but_does_not_label_it() -> None:
    """Issue 15 review: an Invalid Rollout steers nothing, so its route is not marked as
    steered (the label would stay on the user's route)."""
    kube = FakeKube()
    bad_query = {"name": "p99", "query": "sum({{ nonsense }})", "max": 1}
    kube.put(rollout(analysis={"metrics": [bad_query]}))
    kube.put(httproute(False))
    h = Harness(kube)
    h.tick()
    assert h.status.phase == "Invalid", h.status.message
    route = kube.get("HTTPRoute", NS, "demo")
    assert route is not None and "kanary.dev/steered" not in (route["metadata"].get("labels") or {})
    assert "label HTTPRoute demo" not in kube.log


# ---- canary availability -----------------------------------------------------------------------


def test_a_canary_that_stops_being_ready_loses_its_traffic_and_rolls_back() -> None:
    """Found: a canary whose pods went un-Ready kept its 5% and sat Paused for 600 s."""
    h = healthy(rollout(unavailableGraceSeconds=10))
    at_pause(h)
    assert split(h) == (95, 5)
    h.kube.unready.add("demo-canary")
    h.kube.settle()
    h.tick()
    assert split(h) == (100, 0)
    assert h.status.phase == "Progressing" and "no Ready canary pod" in h.status.message
    h.run_until(lambda s: s.phase == "RolledBack", limit=15)
    rolled = next(c for c in h.status.conditions if c.type == "RolledBack")
    assert rolled.reason == "CanaryUnavailable"


def test_a_canary_back_to_ready_within_the_grace_gets_its_weight_back() -> None:
    h = healthy(rollout(unavailableGraceSeconds=30))
    at_pause(h)
    h.kube.unready.add("demo-canary")
    h.kube.settle()
    h.tick()
    assert split(h) == (100, 0)
    h.kube.unready.clear()
    h.kube.settle()
    h.tick()
    assert split(h) == (95, 5)
    assert h.status.phase == "Progressing"


# ---- owned objects: recreate, repair ---------------------------------------------------------


def test_a_stable_deleted_mid_rollout_comes_back_with_the_stable_template() -> None:
    """Found: not recreated at all; recreating it from spec would run the canary as stable."""
    h = healthy()
    at_pause(h)
    h.kube.delete("Deployment", NS, "demo-stable")
    h.tick()
    assert deployment_image(h, "stable") == "demo:v1"
    assert deployment_image(h, "canary") == "demo:v2"
    assert "StableMissing" in h.reasons()
    assert h.status.current_step_index == 1


@pytest.mark.parametrize("phase", ["Healthy", "RolledBack", "Paused"])
def test_a_stable_deleted_in_any_phase_comes_back(phase: str) -> None:
    h = healthy()
    if phase != "Healthy":
        new_version(h)
        h.run_until(lambda s: s.phase == "Paused")
    if phase == "RolledBack":
        h.kube.annotate(NS, NAME, **{"kanary.dev/action": "abort"})
        h.tick()
    assert h.status.phase == phase
    h.kube.delete("Deployment", NS, "demo-stable")
    h.tick()
    assert deployment_image(h, "stable") == "demo:v1"
    assert h.status.phase == phase


def test_a_stable_template_edited_by_hand_is_restored() -> None:
    h = healthy()
    dep = h.kube.get("Deployment", NS, "demo-stable")
    assert dep is not None
    dep["spec"]["template"]["spec"]["containers"][0]["image"] = "demo:handmade"
    dep["metadata"]["generation"] += 1
    h.tick()
    assert deployment_image(h, "stable") == "demo:v1"
    assert "StableDrifted" in h.reasons()


def test_server_defaults_in_the_template_are_not_drift() -> None:
    h = healthy()
    dep = h.kube.get("Deployment", NS, "demo-stable")
    assert dep is not None
    dep["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"
    dep["spec"]["template"]["spec"]["dnsPolicy"] = "ClusterFirst"
    before = h.kube.writes
    for _ in range(5):
        h.tick()
    assert h.kube.writes == before


def test_a_deleted_or_edited_service_comes_back() -> None:
    """Found: a deleted Service came back only at the next rollout."""
    h = healthy()
    h.kube.delete("Service", NS, "demo-canary")
    svc = h.kube.get("Service", NS, "demo-stable")
    assert svc is not None
    svc["spec"]["selector"] = {"app": "nothing"}
    h.tick()
    assert h.kube.get("Service", NS, "demo-canary") is not None
    restored = h.kube.get("Service", NS, "demo-stable")
    assert restored is not None and restored["spec"]["selector"]["kanary.dev/track"] == "stable"
    assert "ServiceRestored" in h.reasons()


def test_a_rollout_being_deleted_is_left_alone() -> None:
    """Found: a terminating namespace got recreate attempts (403) and a traceback every 2 s."""
    h = healthy()
    h.kube.delete("Deployment", NS, "demo-stable")
    h.body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    before = h.kube.writes
    events = len(h.events)
    h.tick()
    assert h.kube.writes == before and len(h.events) == events


def test_spec_fields_newer_than_the_operator_change_nothing_mid_rollout() -> None:
    """Found (issue 14's note): a CRD applied before the operator made the old operator mark
    Rollouts Invalid ("Extra inputs are not permitted"), which rolls back a canary in flight."""
    h = healthy()
    at_pause(h)
    paused = h.status
    assert paused.canary_weight > 0
    body = h.body
    body["spec"]["strategy"]["someFutureField"] = {"enabled": True}
    h.kube.put(body)
    before = h.kube.writes
    with pytest.raises(NewerSpec, match=r"spec.strategy.someFutureField: not known"):
        h.tick()
    assert h.kube.writes == before
    assert h.status.phase == paused.phase and h.status.canary_weight == paused.canary_weight


def test_a_spec_with_a_wrong_value_is_still_invalid() -> None:
    h = healthy()
    body = h.body
    body["spec"]["replicas"] = -1
    h.kube.put(body)
    h.tick()
    assert h.status.phase == "Invalid"


# ---- manual actions ---------------------------------------------------------------------------


def test_an_action_written_during_a_tick_is_not_lost() -> None:
    """Found: an action annotated while a tick ran was deleted unseen."""
    h = healthy()
    new_version(h)
    h.run_until(lambda s: s.phase == "Paused")
    h.kube.annotate(NS, NAME, **{"kanary.dev/action": "promote", "kanary.dev/action-id": "a1"})
    snapshot = copy.deepcopy(h.body)
    # while the tick runs, on-call writes an abort (the Rollout's resourceVersion moves on)
    h.kube.annotate(NS, NAME, **{"kanary.dev/action": "abort", "kanary.dev/action-id": "a2"})
    with pytest.raises(Conflict):
        reconcile(h.rt, snapshot, h.kube.view(NS, NAME), h.now, lambda *a: None, lambda s: None)
    assert h.body["metadata"]["annotations"]["kanary.dev/action"] == "abort"
    h.tick()
    assert h.status.phase == "RolledBack"
    assert h.status.last_action is not None and h.status.last_action.id == "a2"
    assert "kanary.dev/action" not in (h.body["metadata"].get("annotations") or {})


def test_a_newer_request_survives_the_consumption_of_the_older_one() -> None:
    h = healthy()
    new_version(h)
    h.run_until(lambda s: s.phase == "Paused")
    h.kube.annotate(NS, NAME, **{"kanary.dev/action": "promote", "kanary.dev/action-id": "a1"})
    snapshot = copy.deepcopy(h.body)
    from kanary.reconcile import consume_action

    h.kube.annotate(NS, NAME, **{"kanary.dev/action": "abort", "kanary.dev/action-id": "a2"})
    consume_action(h.kube, NS, NAME, snapshot["metadata"]["annotations"])  # type: ignore[arg-type]
    assert h.body["metadata"]["annotations"]["kanary.dev/action-id"] == "a2"


def test_every_request_is_acknowledged_in_status() -> None:
    h = healthy()
    h.kube.annotate(NS, NAME, **{"kanary.dev/action": "abort", "kanary.dev/action-id": "r1"})
    h.tick()
    answer = h.status.last_action
    assert answer is not None and (answer.id, answer.result) == ("r1", "Refused")
    assert "nothing to abort" in answer.reason
    new_version(h)
    h.run_until(lambda s: s.phase == "Paused")
    h.kube.annotate(NS, NAME, **{"kanary.dev/action": "abort", "kanary.dev/action-id": "r2"})
    h.tick()
    answer = h.status.last_action
    assert answer is not None and (answer.id, answer.result) == ("r2", "Accepted")


def test_promote_full_at_5_percent_never_retemplates_stable_while_it_carries_traffic() -> None:
    """Found: promote --full at 5% re-templated stable while it carried 95%."""
    h = healthy()
    at_pause(h)
    h.kube.annotate(NS, NAME, **{"kanary.dev/action": "promote-full"})
    seen: list[tuple[str, tuple[int, int]]] = []
    for _ in range(20):
        h.tick()
        seen.append((deployment_image(h, "stable"), split(h)))
        if h.status.phase == "Healthy":
            break
    for image, (stable_weight, _) in seen:
        if image == "demo:v2":
            assert stable_weight == 0 or seen[-1] == (image, (stable_weight, 0))
    assert [s for _, s in seen].count((0, 100)) >= 1
    assert seen[-1] == ("demo:v2", (100, 0))


def test_abort_during_promotion_puts_the_stable_template_back() -> None:
    h = healthy()
    at_pause(h)
    h.kube.annotate(NS, NAME, **{"kanary.dev/action": "promote-full"})
    h.kube.unready.add("demo-stable")  # the re-templated stable track is slow
    h.run_until(lambda s: deployment_image(h, "stable") == "demo:v2", limit=10)
    h.kube.annotate(NS, NAME, **{"kanary.dev/action": "abort"})
    h.tick()
    h.tick()
    assert h.status.phase == "RolledBack"
    assert deployment_image(h, "stable") == "demo:v1"


# ---- spec, status ------------------------------------------------------------------------------


def test_a_prometheus_url_not_allowed_is_invalid_and_never_fetched() -> None:
    body = rollout(
        analysis={
            "prometheus": {"url": "http://169.254.169.254/latest"},
            "metrics": [{"name": "error-rate", "max": 0.01}],
        }
    )
    h, asked = analysed_harness(body)
    h.run_until(lambda s: s.phase == "Invalid", limit=5)
    assert "spec.strategy.analysis.prometheus.url" in h.status.message
    assert asked == []


def test_a_status_write_carries_the_resource_version_read() -> None:
    h = healthy()
    new_version(h)
    snapshot = copy.deepcopy(h.body)  # this tick decides to start the rollout ...
    h.kube.annotate(NS, NAME, note="someone else wrote meanwhile")
    with pytest.raises(Conflict):
        reconcile(h.rt, snapshot, h.kube.view(NS, NAME), h.now, lambda *a: None, lambda s: None)


def test_status_fields_the_model_does_not_know_are_kept() -> None:
    """Found: merge patches nulled status fields the model did not know."""
    old = {**RolloutStatus(phase="Healthy").to_patch(), "newerOperatorField": {"x": 1}}
    patch = status_patch(old, RolloutStatus(phase="Progressing"))
    assert "newerOperatorField" not in patch
    assert patch["phase"] == "Progressing"


def test_retry_measures_only_pods_created_after_it() -> None:
    """Found: retry after PodReadyTooSlow rolled back again at once (old pods' times)."""
    h = healthy(rollout(readiness={"maxPodReadySeconds": 5}))
    new_version(h)
    h.tick()
    revision = h.status.canary_revision or ""
    started = h.status.rollout_started_at
    assert started is not None
    slow = PodTiming("demo-canary-old", started, started + timedelta(seconds=10))
    h.rt.clock.timings = lambda ns, name, rev: [slow] if rev == revision else []  # type: ignore[method-assign]
    h.tick()
    assert h.status.phase == "RolledBack"
    h.kube.annotate(NS, NAME, **{"kanary.dev/action": "retry"})
    h.tick()
    h.tick()
    assert h.status.phase != "RolledBack", h.status.message


def test_spec_without_selector_keeps_services_on_kanary_labels() -> None:
    h = healthy()
    body = h.body
    body["spec"]["template"] = template("v1", labels={"app": "renamed"})
    h.kube.put(body)
    h.tick()
    svc = h.kube.get("Service", NS, "demo-stable")
    assert svc is not None and "app" not in svc["spec"]["selector"]


def test_a_failed_tick_is_a_condition_once_and_cleared_by_the_next_good_tick() -> None:
    """An error is state: condition ReconcileError with the one line, not rewritten while the
    same error repeats, removed by the next tick that gets through."""
    h = healthy()
    from kanary.reconcile import with_reconcile_error

    patch = with_reconcile_error(h.body["status"], "API 403 Forbidden: cannot patch", h.now)
    assert patch["conditions"][-1]["type"] == "ReconcileError"
    h.kube.patch_rollout_status(NS, NAME, h.body["metadata"]["resourceVersion"], patch)
    assert with_reconcile_error(h.body["status"], "API 403 Forbidden: cannot patch", h.now) == {}
    h.tick()
    assert all(c.type != "ReconcileError" for c in h.status.conditions)


def test_a_terminating_namespace_gets_no_event_for_a_refused_recreate() -> None:
    """Found in the integration test: 50 StableMissing Events ("recreating it") were queued
    before the recreate was refused (403, namespace terminating); Kopf retried each 9 times."""
    from kubernetes.client.exceptions import ApiException

    from kanary.reconcile import is_terminating

    h = healthy()
    h.kube.delete("Deployment", NS, "demo-stable")
    h.kube.delete(
        "ControllerRevision", NS, next(k[2] for k in h.kube.objects if k[0] == "ControllerRevision")
    )
    h.kube.terminating.add(NS)
    with pytest.raises(ApiException) as refused:
        h.tick()
    assert is_terminating(refused.value)
    assert "StableMissing" not in h.reasons()


def test_an_abort_is_applied_before_a_slow_analysis_check() -> None:
    """Found in the integration test: an abort written during a slow check waited for a whole
    new check (8 s with a Prometheus answering in 4 s) while the canary kept its traffic."""
    body = rollout(
        analysis={
            "interval": "5s",
            "minRequests": 0,
            "metrics": [{"name": "error-rate", "max": 0.01}],
        }
    )
    h, asked = analysed_harness(body)
    h.run_until(lambda s: s.phase == "Healthy")
    new_version(h)
    h.run_until(lambda s: s.canary_weight == 5)
    h.now += timedelta(seconds=10)  # a check is due
    before = len(asked)
    h.kube.annotate(NS, NAME, **{"kanary.dev/action": "abort"})
    h.tick()
    assert h.status.phase == "RolledBack" and split(h) == (100, 0)
    assert len(asked) == before  # no query in the tick that applied the abort


# ---- where the analysis reads its metrics (issue 14) -------------------------------------------


def gateway_objects(controller: str, listed: list[str] | None = None) -> list[dict[str, Any]]:
    """Gateway gw of class edge; `listed`: the class' status.supportedFeatures."""
    status = {} if listed is None else {"supportedFeatures": [{"name": n} for n in listed]}
    return [
        {
            "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": NS},
            "spec": {"gatewayClassName": "edge"},
        },
        {
            "kind": "GatewayClass",
            "metadata": {"name": "edge"},
            "spec": {"controllerName": controller},
            "status": status,
        },
    ]


@pytest.mark.parametrize(
    ("controller", "reads"),
    [
        ("traefik.io/gateway-controller", "traefik_service_requests_total"),
        ("example.com/unknown", "http_requests_total"),
    ],
)
def test_auto_source_reads_the_routes_gateway_when_its_class_is_known(
    controller: str, reads: str
) -> None:
    body = rollout(analysis={"interval": "1s", "metrics": [{"name": "error-rate", "max": 0.01}]})
    h, asked = analysed_harness(body)
    for obj in gateway_objects(controller):
        h.kube.put(obj)
    h.run_until(lambda s: s.phase == "Healthy")
    new_version(h)
    h.run_until(lambda s: len(asked) >= 4)  # two checks
    assert all(reads in q for q in asked), asked
    if reads.startswith("traefik"):
        assert all('service="ns-demo-canary-http-80@kubernetesgateway"' in q for q in asked)


# ---- observation-only status changes wait for the next write (writes per step, issue 15) -------


def stale_message(h: Harness) -> None:
    body = h.body
    body["status"]["message"] = "healthy: 3/4 pods Ready (an older observation)"
    h.kube.put(body)


def test_an_observation_only_change_waits_for_a_write_up_to_coalesce_seconds() -> None:
    h = healthy()
    stale_message(h)
    before = h.kube.writes
    for _ in range(5):  # at 0, 1, 2, 3 and 4 s: waiting
        h.tick()
    assert h.kube.writes == before
    assert h.rt.unwritten, "the tick that waits says so (handlers ticks it meanwhile)"
    h.tick()  # 5 s after the first tick that saw it
    assert h.kube.writes == before + 1
    assert h.status.message is not None and h.status.message.endswith(", 4/4 pods Ready")
    assert not h.rt.unwritten


def test_a_decision_carries_the_waiting_observation_in_the_same_patch() -> None:
    h = healthy()
    stale_message(h)
    h.tick()
    before = h.kube.writes
    new_version(h)
    h.tick()
    assert h.status.stage == "Stepping" and "older observation" not in (h.status.message or "")
    assert not h.rt.unwritten
    assert h.kube.writes > before


def test_only_observations_wait_state_is_written_at_once() -> None:
    old = {
        "message": "a",
        "readiness": {"canary": {"count": 1}},
        "conditions": [{"type": "Available", "status": "True", "reason": "Ready", "message": "x"}],
    }
    same_state = [{"type": "Available", "status": "True", "reason": "Ready", "message": "y"}]
    flipped = [{"type": "Available", "status": "False", "reason": "NoReadyPods", "message": "y"}]
    assert observation_only(old, {"message": "b", "readiness": {"canary": {"count": 2}}})
    assert observation_only(old, {"conditions": same_state})
    assert not observation_only(old, {"conditions": flipped})
    assert not observation_only(old, {"message": "b", "canaryWeight": 5})
    assert not observation_only(old, {"phase": "Healthy"})


def test_a_repeated_event_is_one_kubernetes_event_series_with_its_count() -> None:
    """Issue 15: Kubernetes Event series for repeats, not a new Event object each time."""
    h = healthy()
    new_version(h)
    h.run_until(lambda s: s.phase == "Paused")  # at pause until promote, 50%
    h.rt.monotonic = lambda: h.now.timestamp()

    def restored() -> list[dict[str, Any]]:
        return [e for e in h.kube.event_objects(NS) if e["reason"] == "WeightRestored"]

    for _ in range(3):  # a GitOps loop re-applies the route every 10 s
        reapply_route(h, 100, 0)
        h.tick(10)
    (event,) = restored()
    assert event["count"] == 1  # the repeats within EVENT_FOLD_SECONDS are counted, not written
    h.tick(60)
    reapply_route(h, 100, 0)
    h.tick()
    (event,) = restored()
    assert event["count"] == 4
    assert event["lastTimestamp"] > event["firstTimestamp"]
    assert [log for log in h.kube.log if "WeightRestored" in log] == [
        "event WeightRestored",
        "repeat event WeightRestored x4",
    ]


def test_a_repeat_of_an_expired_event_starts_a_new_series() -> None:
    h = healthy()
    new_version(h)
    h.run_until(lambda s: s.phase == "Paused")  # at pause until promote, 50%
    h.rt.monotonic = lambda: h.now.timestamp()
    reapply_route(h, 100, 0)
    h.tick()
    (first,) = [e for e in h.kube.event_objects(NS) if e["reason"] == "WeightRestored"]
    del h.kube.objects[("Event", NS, first["metadata"]["name"])]  # the API server's TTL
    h.tick(61)
    reapply_route(h, 100, 0)
    h.tick()
    (again,) = [e for e in h.kube.event_objects(NS) if e["reason"] == "WeightRestored"]
    assert again["count"] == 1 and again["metadata"]["name"] != first["metadata"]["name"]


@pytest.mark.parametrize("ratio", [False, True])
def test_at_most_one_status_patch_per_tick_and_three_writes_per_step(ratio: bool) -> None:
    """Issue 15: at most one status patch per tick; a step's own writes are at most 3 (status,
    its Event, its route patch or stable scale). The canary's pods for the next step may be
    applied in the same tick: they are the next step's."""
    steps = [
        {"setWeight": 5},
        {"pause": {"duration": "30s"}},
        {"setWeight": 50},
        {"setWeight": 100},
    ]
    body = rollout(steps)
    if ratio:
        del body["spec"]["trafficRouting"]
    h = healthy(body)
    new_version(h)
    own_writes: dict[int, list[str]] = {}
    for _ in range(400):
        before, step = len(h.kube.log), h.status.current_step_index
        h.tick()
        new = h.kube.log[before:]
        assert sum(line.startswith("status") for line in new) <= 1, new
        if step is not None and h.status.stage == "Stepping":
            own = [w for w in new if w != "apply Deployment demo-canary" and "get " not in w]
            own_writes.setdefault(step, []).extend(own)
        if h.status.phase == "Healthy":
            break
    assert h.status.phase == "Healthy"
    assert sorted(own_writes) == [0, 1, 2]
    assert all(len(writes) <= 3 for writes in own_writes.values()), own_writes


# ---- the canary's readiness from its pods ------------------------------------------------------


def canary_pod(
    h: Harness,
    name: str,
    ready: bool,
    terminating: bool = False,
    image: str | None = None,
    track: str = "canary",
) -> dict[str, Any]:
    """A pod of the track's Deployment's template (`image`: another image, as a template edited
    by hand) as the pod watch delivers it."""
    dep = h.kube.get("Deployment", NS, f"demo-{track}")
    assert dep is not None
    labels = dict(dep["spec"]["template"]["metadata"]["labels"])
    containers = [dict(c) for c in dep["spec"]["template"]["spec"]["containers"]]
    if image is not None:
        containers[0]["image"] = image
    meta: dict[str, Any] = {
        "name": name,
        "namespace": NS,
        "labels": labels,
        "creationTimestamp": h.now.isoformat(),
    }
    if terminating:
        meta["deletionTimestamp"] = h.now.isoformat()
    condition = {"type": "Ready", "status": str(ready), "lastTransitionTime": h.now.isoformat()}
    return {
        "metadata": meta,
        "spec": {"containers": containers},
        "status": {"conditions": [condition]},
    }


def lagging_canary(h: Harness) -> None:
    """v2 started; the canary Deployment scaled to 1 and its status not yet written for its new
    spec (observedGeneration behind: the controller-manager's next pass), as on a cluster with
    many Deployments."""
    new_version(h)
    h.kube.lagging.add("demo-canary")
    h.tick()
    h.tick()
    assert split(h) == (100, 0) and "waiting for canary pods" in h.status.message


def test_a_canary_pod_seen_ready_sets_the_weight_before_its_deployment_status_says_so() -> None:
    """Found (tests/bench): each step waited one controller-manager pass (about 20 s with 400
    Deployments changing) for readyReplicas after the pod watch had seen the pod Ready."""
    h = healthy()
    lagging_canary(h)
    h.rt.clock.observe(canary_pod(h, "demo-canary-1", ready=True), h.now)
    h.tick()
    assert split(h) == (95, 5)


def test_pods_that_cannot_be_trusted_leave_the_deployment_status_in_charge() -> None:
    h = healthy()
    lagging_canary(h)
    # not Ready, or terminating: no weight
    h.rt.clock.observe(canary_pod(h, "demo-canary-1", ready=False), h.now)
    h.rt.clock.observe(canary_pod(h, "demo-canary-0", ready=True, terminating=True), h.now)
    h.tick()
    assert split(h) == (100, 0)
    # one pod too many (a deletion the watch missed): not settled by its pods
    h.rt.clock.observe(canary_pod(h, "demo-canary-1", ready=True), h.now)
    h.rt.clock.observe(canary_pod(h, "demo-canary-2", ready=True), h.now)
    h.tick()
    assert split(h) == (100, 0)
    # a pod of the revision running another image (its template edited by hand): not counted
    h.rt.clock.forget(NS, "demo-canary-2")
    h.rt.clock.observe(canary_pod(h, "demo-canary-1", ready=True, image="gin-demo:hand"), h.now)
    h.tick()
    assert split(h) == (100, 0)
    # the Deployment's status catches up: as before
    h.kube.lagging.clear()
    h.kube.settle()
    h.tick()
    assert split(h) == (95, 5)


def test_a_promotion_ends_when_the_stable_pods_say_so_before_its_deployment_status() -> None:
    """Found (tests/bench): the stable track's last two legs were its Deployment's status
    catching up (readyReplicas, then status.replicas once the old pods were gone), about 20 s
    each with 400 Deployments changing, after the pod watch could have told."""
    h = healthy()
    old = canary_pod(h, "demo-stable-old", ready=True, track="stable")  # a v1 pod
    at_pause(h)
    h.kube.lagging.add("demo-stable")
    h.kube.annotate(NS, NAME, **{"kanary.dev/action": "promote-full"})
    h.run_until(lambda s: deployment_image(h, "stable") == "demo:v2", limit=10)
    h.tick()
    h.tick()
    assert h.status.phase == "Progressing"  # the status lags: as before
    for i in range(4):
        h.rt.clock.observe(canary_pod(h, f"demo-stable-{i}", ready=True, track="stable"), h.now)
    h.rt.clock.observe(old, h.now)  # an old pod still live: not settled
    h.tick()
    assert h.status.phase == "Progressing"
    old["metadata"]["deletionTimestamp"] = h.now.isoformat()
    h.rt.clock.observe(old, h.now)
    h.tick()
    assert h.status.phase == "Healthy" and h.status.stable_revision == h.status.history[-1].revision
