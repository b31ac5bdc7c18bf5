"""election.Elector against a fake Lease API that keeps what the decisions depend on: one Lease
object, its resourceVersion (a stale write is a 409, a second create too), and 404 when absent.
Each replica has its own monotonic clock, as two processes do."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from kanary.election import Elector
from kanary.leader import Timings

TIMINGS = Timings(lease_seconds=15, renew_deadline_seconds=10, retry_seconds=2)


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


class FakeLeases:
    def __init__(self) -> None:
        self.body: dict[str, Any] | None = None
        self.rv = 0
        self.writes: list[str | None] = []  # holderIdentity of each accepted write

    def read_namespaced_lease(self, name: str, namespace: str, **_: Any) -> Any:
        if self.body is None:
            raise ApiException(status=404, reason="Not Found")
        spec = self.body["spec"]
        return SimpleNamespace(
            metadata=SimpleNamespace(resource_version=str(self.rv)),
            spec=SimpleNamespace(
                holder_identity=spec["holderIdentity"],
                lease_duration_seconds=spec["leaseDurationSeconds"],
                acquire_time=_time(spec["acquireTime"]),
                renew_time=_time(spec["renewTime"]),
                lease_transitions=spec["leaseTransitions"],
            ),
        )

    def create_namespaced_lease(self, namespace: str, body: dict[str, Any], **_: Any) -> Any:
        if self.body is not None:
            raise ApiException(status=409, reason="AlreadyExists")
        return self._store(body)

    def replace_namespaced_lease(
        self, name: str, namespace: str, body: dict[str, Any], **_: Any
    ) -> Any:
        if body["metadata"].get("resourceVersion") != str(self.rv):
            raise ApiException(status=409, reason="Conflict")
        return self._store(body)

    def _store(self, body: dict[str, Any]) -> Any:
        self.body = copy.deepcopy(body)
        self.rv += 1
        self.writes.append(body["spec"]["holderIdentity"])
        return self.read_namespaced_lease("", "")


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def replica(api: FakeLeases, name: str, clock: Clock) -> Elector:
    return Elector(
        api, "kanary-system", "kanary-leader", name, TIMINGS, clock, lambda: datetime.now(UTC)
    )


@pytest.fixture
def api() -> FakeLeases:
    return FakeLeases()


def run(seconds: float, clocks: list[Clock], rounds: list[Elector]) -> None:
    """Every replica in `rounds` attempts each retry period for `seconds`; all clocks move."""
    for _ in range(int(seconds / TIMINGS.retry_seconds)):
        for c in clocks:
            c.t += TIMINGS.retry_seconds
        for e in rounds:
            e.attempt()


def test_the_first_replica_acquires_and_the_second_stands_by(api: FakeLeases) -> None:
    ca, cb = Clock(), Clock()
    a, b = replica(api, "a", ca), replica(api, "b", cb)
    a.attempt()
    b.attempt()
    assert a.may_act() and not b.may_act()
    assert b.holder == "a"
    run(60, [ca, cb], [a, b])  # a renews; b never takes over a live Lease
    assert a.may_act() and not b.may_act()
    assert set(api.writes) == {"a"}


def test_a_dead_leader_is_replaced_after_the_lease_duration_of_the_standbys_clock(
    api: FakeLeases,
) -> None:
    ca, cb = Clock(), Clock()
    a, b = replica(api, "a", ca), replica(api, "b", cb)
    a.attempt()
    b.attempt()
    run(12, [ca, cb], [b])  # a is dead: no more rounds of a
    assert not b.may_act(), "12 s < the 15 s lease: the standby waits"
    run(4, [ca, cb], [b])
    assert b.may_act()
    assert api.body is not None and api.body["spec"]["leaseTransitions"] == 1


def test_a_stopped_leader_stops_acting_before_anyone_may_take_over(api: FakeLeases) -> None:
    """SIGSTOP: the leader's clock moves, its rounds do not. It stops acting at the renew
    deadline (10 s), before the standby can take over (15 s); after SIGCONT it finds the
    Lease taken and never acts again."""
    ca, cb = Clock(), Clock()
    a, b = replica(api, "a", ca), replica(api, "b", cb)
    a.attempt()
    b.attempt()
    stopped_at = ca.t
    took_over_at = None
    while took_over_at is None:
        ca.t += 1
        cb.t += 1
        if ca.t - stopped_at >= 10:
            assert not a.may_act()
        if round(cb.t) % 2 == 0:
            b.attempt()
        if b.may_act():
            took_over_at = ca.t
    assert not a.may_act(), "the old leader acted while the new one held the Lease"
    assert took_over_at - stopped_at >= 15
    a.attempt()  # SIGCONT: its next round reads the Lease
    assert not a.may_act() and a.holder == "b"
    assert api.writes[-1] == "b"


def test_of_two_candidates_racing_for_a_free_lease_exactly_one_wins(api: FakeLeases) -> None:
    ca, cb = Clock(), Clock()
    a, b = replica(api, "a", ca), replica(api, "b", cb)
    # both read "no Lease", then both write: b's create is refused with 409
    original = api.create_namespaced_lease
    calls: list[str] = []

    def slow_create(namespace: str, body: dict[str, Any], **kw: Any) -> Any:
        calls.append(body["spec"]["holderIdentity"])
        if len(calls) == 1:
            b.attempt()  # b runs its whole round while a's create is in flight
        return original(namespace, body, **kw)

    api.create_namespaced_lease = slow_create  # type: ignore[method-assign]
    a.attempt()  # its create is refused (409): it stays standby, no error
    assert calls == ["a", "b"] and api.writes == ["b"]
    assert b.may_act() and not a.may_act()
    api.create_namespaced_lease = original  # type: ignore[method-assign]
    a.attempt()
    assert not a.may_act() and a.holder == "b"


def test_a_clean_shutdown_hands_the_lease_over_at_once(api: FakeLeases) -> None:
    ca, cb = Clock(), Clock()
    a, b = replica(api, "a", ca), replica(api, "b", cb)
    a.attempt()
    b.attempt()
    a.release()
    assert not a.may_act()
    cb.t += TIMINGS.retry_seconds
    b.attempt()
    assert b.may_act(), "no need to wait out the lease after a release"


def test_a_restarted_replica_with_the_same_identity_renews_at_once(api: FakeLeases) -> None:
    replica(api, "pod-0", Clock()).attempt()
    again = replica(api, "pod-0", Clock())  # the same pod name, a new process
    again.attempt()
    assert again.may_act()
