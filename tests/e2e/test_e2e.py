"""End to end: kanary rolls the Gin service out with real traffic and real Prometheus analysis.

Each test drives one Rollout of kanary/gin-demo (2 replicas, real containers on the local
cluster's real node, Ready by the kubelet's probe of /readyz) behind its own HTTPRoute (hostname
<namespace>.e2e.kanary.test) on the local cluster's Gateway, keeps GETs flowing through the
Gateway for the whole scenario (e2e_fixtures.Traffic: every answer with its send time and
version), records the route's weights over time (TimedWeightRecorder), and asserts on those, on
status, conditions and Events. Analysis asks the data plane's Prometheus (1s scrapes) every 3s
over a 12s window, 20 canary requests at least.

Waits are generous (the machine is shared); outcomes are asserted exactly. Measurements are
printed as "[measured] ..." and kept in $KANARY_STATE/dataplane/measurements.json.
The Prometheus test stops and restarts Prometheus: it stays last.

    hack/cluster/exec.sh .venv/bin/python -m pytest -q tests/e2e
"""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from tests.integration.conftest import apps, cluster, core, namespace, wait_until
from tests.integration.dataplane_fixtures import dataplane, record

from .e2e_fixtures import (
    TRAFFIC_LAG_S,
    Sample,
    Scenario,
    TimedWeightRecorder,
    Traffic,
    e2e_operator,
    failures,
    scenario,
    share_within,
    start_prometheus,
    statuses,
    stop_prometheus,
    versions,
)

# pytest fixtures, imported for the tests below
__all__ = [
    "apps",
    "cluster",
    "core",
    "dataplane",
    "e2e_operator",
    "namespace",
    "scenario",
]

pytestmark = pytest.mark.e2e


def _canary_scaled_to_zero(sc: Scenario) -> None:
    def probe() -> bool:
        dep = sc.kit.deployment(f"{sc.name}-canary")
        return dep is not None and dep.spec.replicas == 0

    wait_until("canary Deployment scaled to 0", probe, timeout=60)


def _warnings(sc: Scenario) -> list[tuple[str, str]]:
    return [(reason, message) for kind, reason, message in sc.events() if kind == "Warning"]


def _assert_rolled_back(
    sc: Scenario, status: dict[str, Any], cause: str, words: list[str]
) -> tuple[str, str]:
    """RolledBack with weight 0, the RolledBack condition's reason `cause`, `words` in the
    message, the condition and the Warning Event; the stable track still v1. Returns the
    RolledBack Warning Event."""
    assert status["phase"] == "RolledBack", sc.describe()
    assert status["canaryWeight"] == 0
    assert sc.kit.weights(sc.name) == (100, 0)
    condition = sc.condition(status, "RolledBack")
    assert condition["status"] == "True" and condition["reason"] == cause, condition
    for word in words:
        assert word in status["message"], status["message"]
        assert word in condition["message"], condition
    assert status["history"][-1]["outcome"] == "RolledBack", status["history"]
    rolled = [(r, m) for r, m in _warnings(sc) if r == "RolledBack"]
    assert len(rolled) == 1, sc.events()
    for word in words:
        assert word in rolled[0][1], rolled
    assert sc.stable_image() == sc.image("v1")
    return rolled[0]


def _only(samples: list[Sample], version: str) -> None:
    """Every one of these requests was answered 200 by `version`."""
    assert samples, "no requests in this interval"
    assert statuses(samples) == {"200": len(samples)}, failures(samples)
    assert versions(samples) == {version: len(samples)}, versions(samples)


# ------------------------------------------------------------------------------ 1 ---
def test_healthy_promotion_without_a_failed_request(scenario: Scenario) -> None:
    sc = scenario
    first = sc.start_v1()
    with Traffic(sc.host) as traffic:
        t_serving = traffic.wait_only({"v1"})
        with TimedWeightRecorder(sc.kit, sc.name) as rec:
            t_change = time.monotonic()
            sc.set_version("v2")
            final = sc.kit.wait_promoted(sc.name, sc.image("v2"), timeout=240)
            t_done = time.monotonic()
            t_v2_only = traffic.wait_only({"v2"}, n=200)
    everything = traffic.samples(t_serving)

    # the route: every step's weight in order, then all traffic on the new stable
    assert rec.canary() == [0, 5, 25, 50, 100, 0], rec.seen
    assert rec.seen[-1] == (100, 0)
    # the served versions: v1 only until the route gave the canary a weight, a share of v2
    # that follows each weight, v2 only once the new stable takes all traffic
    # (the recorder sees a weight up to a poll late: 1s of margin)
    _only(traffic.samples(t_serving, rec.first_time(5) - 1.0), "v1")
    shares: dict[int, str] = {}
    for (_, canary), start, end in rec.periods():
        if canary not in (5, 25, 50):
            continue
        window = traffic.samples(start + TRAFFIC_LAG_S, end)
        v2 = versions(window)["v2"]
        shares[canary] = f"{v2}/{len(window)}"
        if len(window) >= 100:
            assert share_within(v2, len(window), canary), (canary, versions(window))
    assert versions(everything)["v2"] > 0
    _only(traffic.samples(t_v2_only), "v2")
    # not one request failed, from v1 serving until v2 alone served 200 requests
    record(sc.dp, "e2e_healthy_requests", dict(statuses(everything)))
    record(sc.dp, "e2e_healthy_v2_share_per_weight", shares)
    record(sc.dp, "e2e_healthy_rollout_seconds", round(t_done - t_change, 1))
    assert not failures(everything), (
        f"{sum(failures(everything).values())} of {len(everything)} requests failed during "
        f"a healthy promotion: {dict(failures(everything))}, at "
        f"{[round(s.at - t_change, 2) for s in everything if s.status != '200'][:5]}... s "
        f"after the change; weights {[(p, round(t - t_change, 2)) for p, t, _ in rec.periods()]}"
    )

    # status and Events
    assert final["stableRevision"] != first["stableRevision"]
    assert final["canaryWeight"] == 0
    assert final["analysis"]["verdict"] == "Pass", final["analysis"]
    completed = sc.condition(final, "Completed")
    assert (completed["status"], completed["reason"]) == ("True", "Promoted"), completed
    assert final["history"][-1]["outcome"] == "Promoted"
    weights_set = [m for _, r, m in sc.events() if r == "WeightSet"]
    assert [m.rsplit(" ", 1)[-1] for m in weights_set] == ["5%", "25%", "50%", "100%"], weights_set
    reasons = sc.reasons()
    for reason in ("RolloutStarted", "Promoting", "Promoted"):
        assert reasons.count(reason) == 1, reasons
    assert not _warnings(sc), sc.events()


# ------------------------------------------------------------------------------ 2 ---
def test_error_rate_rolls_back(scenario: Scenario) -> None:
    sc = scenario
    sc.start_v1()
    with Traffic(sc.host) as traffic:
        t_serving = traffic.wait_only({"v1"})
        with TimedWeightRecorder(sc.kit, sc.name) as rec:
            sc.set_version("v2", env={"ERROR_RATE": "0.2"})
            status = sc.kit.wait_phase(sc.name, "RolledBack", timeout=120)
            t_v1_only = traffic.wait_only({"v1"})
    everything = traffic.samples(t_serving)

    assert rec.canary() == [0, 5, 0], rec.seen  # never past the first weight
    _assert_rolled_back(sc, status, "AnalysisFailed", ["error-rate"])
    metric = next(m for m in status["analysis"]["metrics"] if m["name"] == "error-rate")
    assert metric["verdict"] == "Fail" and metric["value"] > 0.01, metric
    # the error rate's sequential test is conclusive before a second interval check (issue 14)
    sequential = status["analysis"]["sequential"]
    assert sequential["errors"] >= 2 and sequential["requests"] >= sequential["errors"], sequential
    assert "sequential test" in status["message"], status["message"]
    # every failed request was the canary's own 500; v1 only once the weight was back to 0
    assert set(failures(everything)) == {"v2 500"}, failures(everything)
    _only(traffic.samples(t_v1_only), "v1")
    _canary_scaled_to_zero(sc)

    t_weight = rec.first_time(5)
    t_zero = rec.first_time(0, after=t_weight)
    canary_answers = [s.at for s in everything if s.version == "v2"]
    record(sc.dp, "e2e_error_rate_canary_weight_seconds", round(t_zero - t_weight, 2))
    record(
        sc.dp,
        "e2e_error_rate_first_canary_answer_to_weight_0_seconds",
        round(t_zero - canary_answers[0], 2),
    )
    record(
        sc.dp,
        "e2e_error_rate_last_canary_answer_after_weight_0_seconds",
        round(canary_answers[-1] - t_zero, 2),
    )
    record(
        sc.dp, "e2e_error_rate_requests", dict(failures(everything)) | {"total": len(everything)}
    )
    record(sc.dp, "e2e_error_rate_message", status["message"])


# ------------------------------------------------------------------------------ 3 ---
def test_latency_rolls_back(scenario: Scenario) -> None:
    sc = scenario
    sc.start_v1()
    with Traffic(sc.host) as traffic:
        t_serving = traffic.wait_only({"v1"})
        with TimedWeightRecorder(sc.kit, sc.name) as rec:
            sc.set_version("v2", env={"LATENCY": "400ms"})
            status = sc.kit.wait_phase(sc.name, "RolledBack", timeout=120)
            t_v1_only = traffic.wait_only({"v1"})
    everything = traffic.samples(t_serving)

    assert rec.canary() == [0, 5, 0], rec.seen
    _assert_rolled_back(sc, status, "AnalysisFailed", ["latency-p99"])
    assert "error-rate" not in status["message"], status["message"]  # it passed
    metric = next(m for m in status["analysis"]["metrics"] if m["name"] == "latency-p99")
    assert metric["verdict"] == "Fail" and metric["value"] > 0.3, metric
    assert not failures(everything), failures(everything)  # slow, not failing
    assert versions(everything)["v2"] > 0
    _only(traffic.samples(t_v1_only), "v1")
    t_weight = rec.first_time(5)
    record(
        sc.dp,
        "e2e_latency_canary_weight_seconds",
        round(rec.first_time(0, after=t_weight) - t_weight, 2),
    )
    record(sc.dp, "e2e_latency_message", status["message"])


# ------------------------------------------------------------------------------ 4 ---
# Readiness is the app's own /readyz as the real node's kubelet probes it.
def test_slow_readiness_rolls_back(scenario: Scenario) -> None:
    sc = scenario
    sc.start_v1(readiness={"maxPodReadySeconds": 3})
    with Traffic(sc.host) as traffic:
        t_serving = traffic.wait_only({"v1"})
        with TimedWeightRecorder(sc.kit, sc.name) as rec:
            t_change = time.monotonic()
            # /readyz answers 503 for 6s after the app started: slower than maxPodReadySeconds 3
            sc.set_version("v2", env={"STARTUP_DELAY": "6s"})
            status = sc.kit.wait_phase(sc.name, "RolledBack", timeout=90)
            t_rolled = time.monotonic()
            time.sleep(2)  # a little traffic after the rollback, too
    everything = traffic.samples(t_serving)

    assert rec.canary() == [0], rec.seen  # the slow canary never got traffic
    _assert_rolled_back(sc, status, "PodReadyTooSlow", ["maxPodReadySeconds 3", "gin-canary"])
    assert t_rolled - t_change >= 3, "rolled back before the pod was 3s late"
    _only(everything, "v1")

    # The canary pod still turns Ready before it is scaled down: status shows its real time,
    # the 6s of STARTUP_DELAY plus the container's start, as the kubelet's probe saw it.
    def real_time() -> float | None:
        seconds = (sc.kit.rollout(sc.name).get("status", {}).get("readiness") or {}).get(
            "maxSeconds"
        )
        return seconds if seconds is not None and seconds >= 6 else None

    measured = wait_until("the canary's real readiness time in status", real_time, timeout=30)
    assert measured < 15, measured
    record(sc.dp, "e2e_slow_readiness_seconds_to_rollback", round(t_rolled - t_change, 1))
    record(sc.dp, "e2e_slow_readiness_real_ready_seconds", measured)
    record(sc.dp, "e2e_slow_readiness_message", status["message"])


# ------------------------------------------------------------------------------ 5 ---
def test_crashing_canary_rolls_back_at_the_progress_deadline(scenario: Scenario) -> None:
    """A bad knob (LATENCY=soon) makes v2 exit 2 at start: the kubelet restarts it, it is never
    Ready, and the rollback message says why, from the container's status."""
    sc = scenario
    sc.start_v1(progressDeadlineSeconds=15)
    with Traffic(sc.host) as traffic:
        t_serving = traffic.wait_only({"v1"})
        with TimedWeightRecorder(sc.kit, sc.name) as rec:
            t_change = time.monotonic()
            sc.set_version("v2", env={"LATENCY": "soon"})
            status = sc.kit.wait_phase(sc.name, "RolledBack", timeout=90)
            t_rolled = time.monotonic()
            time.sleep(2)
    everything = traffic.samples(t_serving)

    assert rec.canary() == [0], rec.seen
    _assert_rolled_back(
        sc,
        status,
        "ProgressDeadlineExceeded",
        ["progress deadline", "0/1", "container app exited with code 2"],
    )
    assert t_rolled - t_change >= 15, "rolled back before the deadline"
    _only(everything, "v1")
    record(sc.dp, "e2e_crashing_seconds_to_rollback", round(t_rolled - t_change, 1))
    record(sc.dp, "e2e_crashing_message", status["message"])


# ----------------------------------------------------------------------------- 5b ---
def test_canary_unready_after_ready_loses_traffic_then_rolls_back(
    scenario: Scenario,
) -> None:
    """UNREADY_AFTER=12s: v2 is Ready, gets its 5%, then its /readyz fails. The kubelet takes
    Ready away, kanary sets weight 0 at once, and rolls back after unavailableGraceSeconds."""
    sc = scenario
    sc.start_v1(unavailableGraceSeconds=8)
    with Traffic(sc.host) as traffic:
        t_serving = traffic.wait_only({"v1"})
        with TimedWeightRecorder(sc.kit, sc.name) as rec:
            sc.set_version("v2", env={"UNREADY_AFTER": "12s"})
            wait_until("canary weight 5%", lambda: 5 in rec.canary(), timeout=60)
            t_weight = rec.first_time(5)
            status = sc.kit.wait_phase(sc.name, "RolledBack", timeout=90)
            t_rolled = time.monotonic()
            time.sleep(2)
    everything = traffic.samples(t_serving)

    assert 5 in rec.canary(), rec.seen  # it had traffic while Ready
    assert rec.canary()[-1] == 0
    assert "CanaryUnavailable" in sc.reasons()
    _assert_rolled_back(sc, status, "CanaryUnavailable", ["no Ready canary pod for 8s"])
    t_zero = rec.first_time(0, after=t_weight)
    assert t_rolled - t_zero >= 8 - 1, "rolled back before the grace period"
    # v2 answered while it had traffic; nothing failed through the Gateway
    assert versions(everything)["v2"] > 0, versions(everything)
    record(sc.dp, "e2e_unready_weight0_after_ready_seconds", round(t_zero - t_weight, 1))
    record(sc.dp, "e2e_unready_message", status["message"])


# ------------------------------------------------------------------------------ 6 ---
def test_pause_then_kanary_promote(scenario: Scenario) -> None:
    sc = scenario
    sc.start_v1(steps=[{"setWeight": 25}, {"pause": {}}, {"setWeight": 100}])
    with Traffic(sc.host) as traffic:
        t_serving = traffic.wait_only({"v1"})
        with TimedWeightRecorder(sc.kit, sc.name) as rec:
            sc.set_version("v2")
            paused = sc.kit.wait_phase(sc.name, "Paused", timeout=120)
            traffic.wait_seen("v2", n=20)
            time.sleep(3)  # a pause {} holds: no timer ends it
            held = sc.kit.status(sc.name)
            assert held["phase"] == "Paused" and sc.kit.weights(sc.name) == (75, 25), held
            out = sc.kanary("promote", sc.name)
            assert out.returncode == 0, out.stderr
            assert "promote requested" in out.stdout, out.stdout
            final = sc.kit.wait_promoted(sc.name, sc.image("v2"), timeout=120)
            t_v2_only = traffic.wait_only({"v2"})
    everything = traffic.samples(t_serving)

    assert rec.canary() == [0, 25, 100, 0], rec.seen
    condition = sc.condition(paused, "Paused")
    assert (condition["status"], condition["reason"]) == ("True", "PauseStep"), condition
    assert "kanary promote" in paused["message"], paused["message"]
    assert sc.condition(final, "Completed")["status"] == "True"
    reasons = sc.reasons()
    assert reasons.count("ManualPromote") == 1 and reasons.count("Promoted") == 1, reasons
    assert versions(traffic.samples(t_serving, t_v2_only)).keys() >= {"v1", "v2"}
    _only(traffic.samples(t_v2_only), "v2")
    # the annotation was consumed; promoting a Healthy rollout is refused at once
    annotations = sc.kit.rollout(sc.name)["metadata"].get("annotations") or {}
    assert "kanary.dev/action" not in annotations, annotations
    again = sc.kanary("promote", sc.name)
    assert again.returncode != 0 and "cannot promote" in again.stderr, again
    record(sc.dp, "e2e_pause_promote_failed_requests", dict(failures(everything)))


# ------------------------------------------------------------------------------ 7 ---
def test_kanary_abort_mid_rollout(scenario: Scenario) -> None:
    sc = scenario
    sc.start_v1(steps=[{"setWeight": 25}, {"pause": {"duration": "5m"}}, {"setWeight": 100}])
    stable_before = sc.kit.deployment(f"{sc.name}-stable")
    assert stable_before is not None
    with Traffic(sc.host) as traffic:
        t_serving = traffic.wait_only({"v1"})
        with TimedWeightRecorder(sc.kit, sc.name) as rec:
            sc.set_version("v2")
            wait_until("canary weight 25", lambda: sc.kit.weights(sc.name) == (75, 25), 120)
            traffic.wait_seen("v2", n=20)
            assert sc.kit.status(sc.name)["phase"] == "Progressing"
            t_abort = time.monotonic()
            out = sc.kanary("abort", sc.name)
            t_cli_done = time.monotonic()
            assert out.returncode == 0, out.stderr
            wait_until("weight 0 after abort", lambda: sc.kit.weights(sc.name) == (100, 0), 30)
            t_zero = time.monotonic()
            t_v1_only = traffic.wait_only({"v1"})
            status = sc.kit.wait_phase(sc.name, "RolledBack", timeout=30)
    everything = traffic.samples(t_serving)

    assert rec.canary() == [0, 25, 0], rec.seen  # one write, straight back to 0
    _assert_rolled_back(sc, status, "Aborted", ["aborted by user"])
    _only(traffic.samples(t_v1_only), "v1")
    stable_after = sc.kit.deployment(f"{sc.name}-stable")
    assert stable_after is not None
    assert stable_after.metadata is not None and stable_before.metadata is not None
    assert stable_after.metadata.generation == stable_before.metadata.generation
    _canary_scaled_to_zero(sc)
    record(sc.dp, "e2e_abort_to_weight_0_seconds", round(t_zero - t_abort, 2))
    record(sc.dp, "e2e_abort_cli_exit_to_weight_0_seconds", round(t_zero - t_cli_done, 2))
    record(sc.dp, "e2e_abort_to_v1_only_seconds", round(t_v1_only - t_abort, 2))
    record(sc.dp, "e2e_abort_failed_requests", dict(failures(everything)))


# ------------------------------------------------------------------------------ 8 ---
def test_new_version_mid_rollout_supersedes_it(scenario: Scenario) -> None:
    sc = scenario
    sc.start_v1()
    with Traffic(sc.host) as traffic:
        t_serving = traffic.wait_only({"v1"})
        with TimedWeightRecorder(sc.kit, sc.name) as rec:
            sc.set_version("v2")
            wait_until("canary weight 25", lambda: sc.kit.weights(sc.name)[1] == 25, 120)
            v2_revision = sc.kit.status(sc.name)["canaryRevision"]
            sc.set_version("v3")
            final = sc.kit.wait_promoted(sc.name, sc.image("v3"), timeout=240)
            t_v3_only = traffic.wait_only({"v3"})
    everything = traffic.samples(t_serving)

    assert rec.canary() == [0, 5, 25, 0, 5, 25, 50, 100, 0], rec.seen
    t_v3 = rec.first_time(5, after=rec.first_time(25))
    assert versions(traffic.samples(t_serving, t_v3))["v2"] > 0  # v2 did take traffic
    _only(traffic.samples(t_v3_only), "v3")
    outcomes = [(h["revision"], h["outcome"]) for h in final["history"]]
    assert outcomes[-2:] == [(v2_revision, "Superseded"), (final["stableRevision"], "Promoted")]
    superseded = [m for _, r, m in sc.events() if r == "Superseded"]
    assert len(superseded) == 1 and v2_revision in superseded[0], sc.events()
    assert sc.reasons().count("Promoted") == 1
    record(sc.dp, "e2e_supersede_failed_requests", dict(failures(everything)))


# ------------------------------------------------------------------------------ 9 ---
def test_operator_killed_mid_rollout_finishes_exactly(scenario: Scenario) -> None:
    sc = scenario
    sc.start_v1()
    with Traffic(sc.host) as traffic:
        traffic.wait_only({"v1"})
        with TimedWeightRecorder(sc.kit, sc.name) as rec:
            sc.set_version("v2")
            wait_until("canary weight 25", lambda: sc.kit.weights(sc.name)[1] == 25, 120)
            sc.operator.kill(signal.SIGKILL)
            time.sleep(3)  # traffic keeps flowing with no operator
            assert sc.kit.weights(sc.name) == (75, 25)
            sc.operator.start()
            final = sc.kit.wait_promoted(sc.name, sc.image("v2"), timeout=240)
            t_v2_only = traffic.wait_only({"v2"})

    assert rec.canary() == [0, 5, 25, 50, 100, 0], rec.seen  # none repeated, none skipped
    _only(traffic.samples(t_v2_only), "v2")
    assert final["history"][-1]["outcome"] == "Promoted"
    events = [(r, m) for _, r, m in sc.events() if r in ("Step", "WeightSet", "Paused")]
    assert len(events) == len(set(events)), events  # no step announced or done twice
    weights_set = [m.rsplit(" ", 1)[-1] for r, m in events if r == "WeightSet"]
    assert set(weights_set) <= {"5%", "25%", "50%", "100%"} and "50%" in weights_set, events
    reasons = sc.reasons()
    assert reasons.count("RolloutStarted") == 1 and reasons.count("Promoted") == 1, reasons


# ----------------------------------------------------------------------- 10 (last) ---
def test_prometheus_stopped_mid_rollout_never_promotes(scenario: Scenario) -> None:
    sc = scenario
    steps: list[dict[str, Any]] = [
        {"setWeight": 25},
        {"pause": {"duration": "5s"}},
        {"setWeight": 50},
        {"pause": {"duration": "5s"}},
        {"setWeight": 100},
    ]
    sc.start_v1(steps=steps)
    with Traffic(sc.host) as traffic:
        t_serving = traffic.wait_only({"v1"})
        try:
            with TimedWeightRecorder(sc.kit, sc.name) as rec:
                sc.set_version("v2")
                wait_until("canary weight 25", lambda: sc.kit.weights(sc.name)[1] == 25, 120)
                stop_prometheus()

                status = sc.kit.wait_phase(sc.name, "RolledBack", timeout=90)
                t_v1_only = traffic.wait_only({"v1"})
        finally:
            start_prometheus()
    everything = traffic.samples(t_serving)

    assert rec.canary() == [0, 25, 0], rec.seen  # held at 25 while blind, then back
    _assert_rolled_back(sc, status, "AnalysisError", ["Prometheus", "errorLimit 2"])
    analysis = status["analysis"]
    assert analysis["verdict"] == "Error" and analysis["consecutiveErrors"] >= 2, analysis
    assert "unreachable" in analysis["summary"], analysis
    assert sc.stable_image() == sc.image("v1")
    _only(traffic.samples(t_v1_only), "v1")
    record(sc.dp, "e2e_prometheus_down_message", status["message"])
    record(sc.dp, "e2e_prometheus_down_failed_requests", dict(failures(everything)))
