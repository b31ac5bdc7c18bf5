"""A deleted Rollout leaves nothing behind in the operator's memory or its /metrics (issue 15:
memory returned after Rollouts are deleted, per-Rollout series removed with the Rollout)."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime
from typing import Any

import kopf
import pytest
from kubernetes.client.exceptions import ApiException
from prometheus_client import generate_latest
from tests.unit.fake_kube import FakeKube
from tests.unit.test_reconcile import NS, healthy, new_version, rollout

from kanary import handlers, memtrim, metrics_export
from kanary.notify.delivery import Delivery
from kanary.notify.dispatch import SECRET_TTL_SECONDS, Notifier
from kanary.notify.gates import ask_gate
from kanary.notify.model import Target
from kanary.objects import LABEL_REVISION, LABEL_ROLLOUT, LABEL_TRACK
from kanary.observation import AnalysisOutcome
from kanary.reconcile_state import TERMINATING_SECONDS, EventSeries, Runtime
from kanary.spec import RolloutSpec
from kanary.status import (
    AlertRecord,
    Condition,
    GateStatus,
    MetricResult,
    RolloutStatus,
)
from kanary.wakeups import WakeQueue

T = datetime(2026, 1, 1, tzinfo=UTC)


def test_forget_drops_what_the_runtime_kept_of_that_rollout_only() -> None:
    h = healthy()
    new_version(h)
    h.run_until(lambda s: s.phase == "Paused")
    rt = h.rt
    uid = str(h.body["metadata"].get("uid", ""))
    other_event = ("other-uid", "Normal", "Step", "x")
    other_gate = "other-uid"
    rt.recent_events[other_event] = EventSeries("other.1", 1, 1.0)
    rt.gate_asked[other_gate] = ("confirm-promotion", "abc", datetime.now(UTC))
    rt.applied_generation[(NS, "other-stable")] = 3
    assert any(k[0] == uid for k in rt.recent_events)
    assert any(k[1] in ("demo-stable", "demo-canary") for k in rt.applied_generation)
    rt.forget(NS, "demo", uid)
    assert list(rt.recent_events) == [other_event]
    assert list(rt.gate_asked) == [other_gate]
    assert list(rt.applied_generation) == [(NS, "other-stable")]


def _series_of(rollout: str) -> list[str]:
    text = generate_latest().decode()
    return [line for line in text.splitlines() if f'rollout="{rollout}"' in line]


def test_forget_removes_every_series_of_the_rollout_and_its_phase_count() -> None:
    old = RolloutStatus(phase="Progressing", current_step_index=0)
    rolled = RolloutStatus(
        phase="RolledBack",
        current_step_index=1,
        canary_weight=0,
        conditions=[
            Condition(
                type="RolledBack",
                status="True",
                reason="AnalysisFailed",
                message="x",
                last_transition_time=datetime.now(UTC),
            )
        ],
    )
    for name in ("gone", "kept"):
        metrics_export.record_status("ns-f", name, old, rolled)
        outcome = AnalysisOutcome(
            at=datetime.now(UTC),
            verdict="Fail",
            metrics=(MetricResult(name="error-rate", verdict="Fail", value=0.2),),
        )
        metrics_export.record_analysis("ns-f", name, outcome)
    assert len(_series_of("gone")) >= 4  # weight, steps, rollbacks{reason}, analysis{metric}
    metrics_export.forget("ns-f", "gone")
    assert _series_of("gone") == []
    assert len(_series_of("kept")) >= 4
    metrics_export.forget("ns-f", "kept")
    assert 'kanary_rollouts{phase="RolledBack"} 0.0' in generate_latest().decode()


# ---- what a tick, a delivery or a cache could keep after the Rollout is gone -------------------


class _Kube(FakeKube):
    """The fake Kube with the per-thread write count handlers reads (kube.Kube has it)."""

    def writes_in_this_thread(self) -> int:
        return self.writes


def test_a_tick_in_flight_when_its_rollout_is_deleted_leaves_nothing_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The DELETED event is handled while the tick's thread still runs: what the tick records
    after it (applied generations, the status' metrics series) is forgotten too."""
    body = rollout()
    del body["spec"]["trafficRouting"]
    body["metadata"].update(name="inflight", uid="uid-inflight")
    kube = _Kube()
    kube.put(body)
    rt = Runtime(kube=kube)  # type: ignore[arg-type]
    key = (NS, "inflight")
    monkeypatch.setattr(handlers, "_runtime", rt)
    monkeypatch.setattr(handlers, "_rollouts", {})
    monkeypatch.setattr(handlers, "_last_tick", {})
    monkeypatch.setattr(handlers, "_queue", WakeQueue())
    monkeypatch.setattr(handlers, "_indexes", {})
    indexes: dict[str, Any] = {n: {} for n in ("tracks", "owned_services", "revisions")}
    indexes.update({n: {} for n in ("routes", "alert_providers", "gateways", "gateway_classes")})
    stored = kube.get("Rollout", NS, "inflight")
    assert stored is not None
    real = handlers.reconcile

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        await handlers.rollout_event(
            event={"type": "ADDED"},
            body=kopf.Body(copy.deepcopy(stored)),
            namespace=NS,
            name="inflight",
            **indexes,
        )

        def deleted_meanwhile(*args: Any, **kwargs: Any) -> Any:
            gone = handlers.rollout_event(
                event={"type": "DELETED"},
                body=kopf.Body(copy.deepcopy(stored)),
                namespace=NS,
                name="inflight",
            )
            asyncio.run_coroutine_threadsafe(gone, loop).result()
            return real(*args, **kwargs)

        monkeypatch.setattr(handlers, "reconcile", deleted_meanwhile)
        return await handlers._reconcile_one(key)

    asyncio.run(scenario())
    assert kube.writes, "the tick ran to its writes"
    assert rt.applied_generation == {}
    assert key not in metrics_export._phases
    assert _series_of("inflight") == []


class _Queue:
    """The Deliverer's submit, kept for the test to play the delivery thread."""

    def __init__(self) -> None:
        self.items: list[Delivery] = []

    def submit(self, item: Delivery) -> bool:
        self.items.append(item)
        return True


class _Patches:
    def json_patch_rollout_status(self, namespace: str, name: str, ops: list[Any]) -> None:
        raise ApiException(status=404, reason="Not Found")


def _alert(key: str, resolved: bool = False) -> AlertRecord:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return AlertRecord(
        key=key,
        event="RolledBack",
        severity="critical",
        revision="abc",
        at=at,
        resolved_at=at if resolved else None,
    )


AM = Target(name=f"{NS}/am", type="alertmanager", url="http://am:9093/api/v2/alerts")


def _notifier() -> tuple[Notifier, _Queue, list[float]]:
    queue, clock = _Queue(), [0.0]
    notifier = Notifier(
        queue,  # type: ignore[arg-type]
        _Patches(),
        lambda ns, name: {"address": "http://x"},
        monotonic=lambda: clock[0],
    )
    return notifier, queue, clock


def test_a_delivery_accepted_after_its_rollout_is_forgotten_is_not_remembered() -> None:
    notifier, queue, _ = _notifier()
    status = RolloutStatus(phase="RolledBack", alerts=[_alert("RolledBack/abc")])
    notifier.dispatch("uid-gone", NS, "gone", status, [AM], datetime.now(UTC))
    assert len(queue.items) == 1
    notifier.forget("uid-gone")  # the Rollout is deleted while its alert is on its way
    queue.items[0].on_delivered()  # the provider accepts it (on the delivery thread)
    assert notifier._accepted == {}
    assert "uid-gone" not in repr(notifier._resent)


def test_the_resend_marks_of_a_living_rollout_are_only_those_of_its_firing_alerts() -> None:
    """Alertmanager re-sends are timed per firing alert; the marks of alerts that resolved or
    were trimmed from status go, so a Rollout that lives for years does not grow them."""
    notifier, queue, _ = _notifier()
    now = datetime.now(UTC)
    for n in range(5):
        firing = RolloutStatus(phase="RolledBack", alerts=[_alert(f"RolledBack/{n}")])
        notifier.dispatch("uid-1", NS, "demo", firing, [AM], now)
        queue.items.pop().on_delivered()
        over = RolloutStatus(phase="Healthy", alerts=[_alert(f"RolledBack/{n}", resolved=True)])
        notifier.dispatch("uid-1", NS, "demo", over, [AM], now)
    firing = RolloutStatus(phase="RolledBack", alerts=[_alert("RolledBack/5")])
    notifier.dispatch("uid-1", NS, "demo", firing, [AM], now)
    queue.items.pop().on_delivered()
    notifier.dispatch("uid-1", NS, "demo", firing, [AM], now)
    assert not queue.items, "re-sent only after resend_seconds"
    assert "RolledBack/5" in repr(notifier._resent)
    assert all(f"RolledBack/{n}" not in repr(notifier._resent) for n in range(5))


def test_expired_secrets_are_not_kept() -> None:
    """Secrets are cached SECRET_TTL_SECONDS; an expired one (its namespace may be gone) is
    dropped, not kept until it is read again."""
    notifier, _, clock = _notifier()
    notifier.read_secret("ns-gone", "hook-secret")
    clock[0] += SECRET_TTL_SECONDS + 1
    notifier.read_secret(NS, "other-secret")
    assert list(notifier._secrets) == [(NS, "other-secret")]
    clock[0] += SECRET_TTL_SECONDS + 1
    notifier.forget("uid-1")
    assert notifier._secrets == {}


def test_a_rollout_asks_its_gates_with_one_memory_whatever_the_revisions() -> None:
    """gate_asked holds when each Rollout last asked the gate it waits for: one entry per
    Rollout, not one per revision it ever waited at."""
    notifier, _, _ = _notifier()
    body = rollout()
    body["spec"]["strategy"]["gates"] = [{"type": "confirm-promotion", "provider": "missing"}]
    spec = RolloutSpec.model_validate(body["spec"])
    asked: dict[Any, Any] = {}
    for revision in ("r1", "r2", "r3"):
        waiting = GateStatus(type="confirm-promotion", revision=revision, since=T)
        current = RolloutStatus(phase="Paused", gate=waiting)
        answer = ask_gate(notifier, asked, spec, current, {}, body["metadata"], T)
        assert answer is not None and not answer.passed
    assert len(asked) == 1
    again = ask_gate(notifier, asked, spec, current, {}, body["metadata"], T)
    assert again is None, "asked at most every its interval"


def test_forget_drops_terminating_namespaces_once_they_expired() -> None:
    clock = [0.0]
    rt = Runtime(kube=FakeKube(), monotonic=lambda: clock[0])  # type: ignore[arg-type]
    rt.terminating["ns-gone"] = 0.0
    clock[0] = TERMINATING_SECONDS + 1
    rt.terminating["ns-going"] = clock[0]
    rt.forget("ns-gone", "demo", "uid-1")
    assert list(rt.terminating) == ["ns-going"]


def _pod(rollout_name: str, pod: str) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": NS,
            "name": pod,
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {LABEL_ROLLOUT: rollout_name, LABEL_REVISION: "abc", LABEL_TRACK: "canary"},
        }
    }


def test_forget_drops_the_pod_records_of_that_rollout_a_missed_pod_deletion_would_keep() -> None:
    rt = Runtime(kube=FakeKube())  # type: ignore[arg-type]
    rt.clock.observe(_pod("demo", "demo-canary-1"), T)
    rt.clock.observe(_pod("other", "other-canary-1"), T)
    rt.forget(NS, "demo", "uid-1")
    assert rt.clock.timings(NS, "demo", "abc") == []
    assert [t.name for t in rt.clock.timings(NS, "other", "abc")] == ["other-canary-1"]


def test_deleted_rollouts_give_their_memory_back_once_the_deletions_settle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A burst of DELETED events ends in one trim (memtrim.py), not one per Rollout and not
    none: the operator's RSS follows the Rollouts that exist."""
    trims: list[int] = []
    monkeypatch.setattr(handlers, "_runtime", Runtime(kube=_Kube()))  # type: ignore[arg-type]
    monkeypatch.setattr(handlers, "_rollouts", {})
    monkeypatch.setattr(handlers, "_last_tick", {})
    monkeypatch.setattr(handlers, "_queue", WakeQueue())
    monkeypatch.setattr(handlers, "_indexes", {"x": {}})
    bodies = []
    for i in range(5):
        body = rollout()
        body["metadata"].update(name=f"r{i}", uid=f"uid-{i}")
        bodies.append(body)

    async def scenario() -> None:
        monkeypatch.setattr(
            handlers, "_trim", memtrim.QuietTrim(quiet=0.1, release=lambda: trims.append(1))
        )
        for kind in ("ADDED", "DELETED"):
            for body in bodies:
                name = body["metadata"]["name"]
                await handlers.rollout_event(
                    event={"type": kind}, body=kopf.Body(body), namespace=NS, name=name
                )
        await asyncio.sleep(0.3)

    asyncio.run(scenario())
    assert trims == [1]
