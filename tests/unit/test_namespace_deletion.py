"""A namespace being deleted (issue 15: "namespace deletion: status writes"): the namespace
watch of a cluster-wide install (handlers.watch_namespaces) marks it from its deletionTimestamp
on, and a tick of a Rollout there writes nothing, although its Deployments are vanishing."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import kopf
import pytest
from tests.unit.test_forget import _Kube
from tests.unit.test_reconcile import NS, rollout

from kanary import handlers
from kanary.reconcile_state import TERMINATING_SECONDS, Runtime
from kanary.wakeups import WakeQueue

INDEXES = ("tracks", "owned_services", "revisions", "routes", "alert_providers")


@pytest.fixture
def rt(monkeypatch: pytest.MonkeyPatch) -> Runtime:
    kube = _Kube()
    runtime = Runtime(kube=kube)  # type: ignore[arg-type]
    monkeypatch.setattr(handlers, "_runtime", runtime)
    monkeypatch.setattr(handlers, "_rollouts", {})
    monkeypatch.setattr(handlers, "_last_tick", {})
    monkeypatch.setattr(handlers, "_queue", WakeQueue())
    monkeypatch.setattr(handlers, "_indexes", {})
    return runtime


def _namespace(event: str, deleting: bool) -> Any:
    meta: dict[str, Any] = {"name": NS}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return handlers.namespace_event(
        event={"type": event}, name=NS, meta=kopf.Meta({"metadata": meta})
    )


def test_a_namespace_with_a_deletion_timestamp_is_left_alone_until_it_is_gone(
    rt: Runtime,
) -> None:
    async def scenario() -> list[bool]:
        seen = []
        await _namespace("ADDED", deleting=False)
        seen.append(rt.namespace_terminating(NS))
        await _namespace("MODIFIED", deleting=True)
        seen.append(rt.namespace_terminating(NS))
        seen.append(rt.namespace_terminating("elsewhere"))
        await _namespace("DELETED", deleting=True)
        seen.append(rt.namespace_terminating(NS))
        return seen

    assert asyncio.run(scenario()) == [False, True, False, False]
    assert rt.deleting == set()  # nothing kept of a namespace that is gone


def test_a_tick_in_a_namespace_being_deleted_writes_nothing(rt: Runtime) -> None:
    """Before: each Rollout wrote its status as its Deployments and pods vanished (664 status
    patches while 10 namespaces with 1000 Rollouts were deleted), until a refused create marked
    the namespace."""
    body = rollout()
    del body["spec"]["trafficRouting"]
    kube = rt.kube
    kube.put(body)  # type: ignore[attr-defined]
    stored = kube.get("Rollout", NS, "demo")  # type: ignore[attr-defined]
    indexes: dict[str, Any] = {n: {} for n in INDEXES}
    indexes.update(gateways={}, gateway_classes={})

    async def scenario() -> None:
        await handlers.rollout_event(
            event={"type": "ADDED"},
            body=kopf.Body(copy.deepcopy(stored)),
            namespace=NS,
            name="demo",
            **indexes,
        )
        await _namespace("MODIFIED", deleting=True)
        await handlers._reconcile_one((NS, "demo"))

    asyncio.run(scenario())
    assert kube.writes == 0  # type: ignore[attr-defined]


def test_owned_objects_vanishing_in_a_namespace_being_deleted_wake_nothing(rt: Runtime) -> None:
    """Before: each Rollout was woken by every one of its objects' deletions (113 ticks/s, 19 %
    of a core for 132 s while 10 namespaces with 1000 Rollouts were deleted), to find its
    namespace terminating."""
    handlers._rollouts[(NS, "demo")] = {"metadata": {}, "spec": {}, "status": {}}
    deployment = {
        "metadata": {
            "namespace": NS,
            "name": "demo-stable",
            "labels": {"kanary.dev/rollout": "demo", "kanary.dev/track": "stable"},
        }
    }
    meta = kopf.Meta(deployment)

    async def scenario() -> list[int]:
        sizes = []
        await handlers.owned_deployment(
            event={"type": "ADDED"}, body=kopf.Body(deployment), meta=meta
        )
        sizes.append(len(handlers._queue))
        handlers._queue.forget((NS, "demo"))
        await _namespace("MODIFIED", deleting=True)
        await handlers.owned_deployment(
            event={"type": "DELETED"}, body=kopf.Body(deployment), meta=meta
        )
        await handlers.owned_service(meta=meta)
        sizes.append(len(handlers._queue))
        return sizes

    assert asyncio.run(scenario()) == [1, 0]


def test_a_rollout_in_a_namespace_being_deleted_sleeps_instead_of_ticking_every_5s(
    rt: Runtime,
) -> None:
    """Before: its tick returned 5 s and it ticked every 5 s until the namespace controller
    deleted it (402 of 1000 Rollouts, 31 ticks/s for 110 s, once their resync came due during
    the deletion)."""
    key = (NS, "demo")
    handlers._rollouts[key] = {"metadata": {}, "spec": {}, "status": {}}

    async def scenario() -> tuple[float, int, float]:
        await _namespace("MODIFIED", deleting=True)
        delay = await handlers._reconcile_one(key)
        handlers._queue.wake(key, 0.0)
        assert handlers._queue.pop_due(1.0, 1) == [key]
        await handlers._tick(key)
        queued = len(handlers._queue)
        await _namespace("DELETED", deleting=True)
        rt.terminating[NS] = rt.monotonic()  # a namespaced install: a write was refused
        return delay, queued, await handlers._reconcile_one(key)

    delay, queued, refused = asyncio.run(scenario())
    assert delay == float("inf")
    assert queued == 0
    assert refused == TERMINATING_SECONDS  # looked at again once the mark expires


def test_wake_ups_queued_before_a_namespace_is_marked_deleting_are_dropped(rt: Runtime) -> None:
    """Before: a Rollout woken just before its namespace got its deletionTimestamp still ticked
    once (only to find the namespace being deleted); each of 1000 Rollouts whose resync or
    in-flight deadline was queued did so while their namespaces were deleted. Rollouts
    elsewhere keep theirs."""
    here, there, running = (NS, "demo"), ("elsewhere", "demo"), (NS, "running")
    for key in (running, here, there):
        handlers._rollouts[key] = {"metadata": {}, "spec": {}, "status": {}}
        handlers._queue.wake(key, 0.0)
    assert handlers._queue.pop_due(0.0, 1) == [running]
    handlers._queue.wake(running, 0.0)  # woken during its tick: kept for after it

    asyncio.run(_namespace("MODIFIED", deleting=True))
    handlers._queue.done(running)
    assert handlers._queue.pop_due(1.0, 10) == [there]
