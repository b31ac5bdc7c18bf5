"""An owned Deployment's watch event wakes its Rollout only when it changes what a tick reads,
given the pods as the watch shows them (Runtime.deployment_event): not for the status updates
that only catch up with what the pods said already."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime
from typing import Any

import kopf
from tests.unit.test_namespace_deletion import rt  # noqa: F401 (the fixture)
from tests.unit.test_reconcile import NS

from kanary import handlers
from kanary.reconcile_state import Runtime

KEY = (NS, "demo")
LABELS = {"kanary.dev/rollout": "demo", "kanary.dev/track": "stable"}


def _deployment(generation: int, **status: Any) -> dict[str, Any]:
    template = {
        "metadata": {"labels": {**LABELS, "kanary.dev/revision": "r1"}},
        "spec": {"containers": [{"name": "app", "image": "app:v1"}]},
    }
    return {
        "metadata": {
            "namespace": NS,
            "name": "demo-stable",
            "generation": generation,
            "labels": dict(LABELS),
        },
        "spec": {"replicas": 1, "template": template},
        "status": status,
    }


def _pod(ready: bool) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": NS,
            "name": "demo-stable-abc",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {**LABELS, "kanary.dev/revision": "r1"},
        },
        "spec": {"containers": [{"name": "app", "image": "app:v1"}]},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def _woken(body: dict[str, Any], kind: str = "MODIFIED") -> bool:
    async def event() -> bool:
        await handlers.owned_deployment(
            event={"type": kind}, body=kopf.Body(copy.deepcopy(body)), meta=kopf.Meta(body)
        )
        woken = len(handlers._queue) > 0
        handlers._queue.forget(KEY)
        return woken

    return asyncio.run(event())


def test_status_catching_up_with_the_pods_wakes_nothing(rt: Runtime) -> None:  # noqa: F811
    """Before: every event woke the Rollout (1000 Rollouts: 16 ticks a second that changed
    nothing for 15 s after all were Healthy)."""
    handlers._rollouts[KEY] = {"metadata": {}, "spec": {}, "status": {}}
    rt.clock.observe(_pod(ready=True), datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC))
    assert _woken(_deployment(2, observedGeneration=1), "ADDED")  # first seen
    caught_up = {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1}
    assert not _woken(_deployment(2, **caught_up, readyReplicas=1))  # the pod said so
    available = {**caught_up, "readyReplicas": 1, "availableReplicas": 1}
    assert not _woken(_deployment(2, **available, conditions=[{"type": "Available"}]))
    assert _woken(_deployment(3, **available))  # its spec changed (someone scaled it)
    assert _woken(_deployment(3, **available), "DELETED")


def test_status_that_says_more_than_the_pods_wakes_it(rt: Runtime) -> None:  # noqa: F811
    """The pod watch shows the pod not Ready (or has not listed it): the status is in charge."""
    handlers._rollouts[KEY] = {"metadata": {}, "spec": {}, "status": {}}
    rt.clock.observe(_pod(ready=False), datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC))
    assert _woken(_deployment(2, observedGeneration=2, replicas=1, updatedReplicas=1), "ADDED")
    assert _woken(
        _deployment(2, observedGeneration=2, replicas=1, updatedReplicas=1, readyReplicas=1)
    )


def test_what_it_remembers_of_the_deployments_goes_with_the_rollout(rt: Runtime) -> None:  # noqa: F811
    handlers._rollouts[KEY] = {"metadata": {}, "spec": {}, "status": {}}
    _woken(_deployment(2), "ADDED")
    assert rt.deployments
    rt.forget(NS, "demo", "uid")
    assert rt.deployments == {}
