"""Lease election decisions (leader.py): who acts, and never two at once."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from kanary.leader import (
    LeaseRecord,
    Observed,
    Timings,
    may_act,
    next_action,
    observe,
    written,
)

T = Timings()
WALL = datetime(2026, 12, 2, tzinfo=UTC)


def test_timings_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="retry < renew deadline < lease duration"):
        Timings(lease_seconds=10, renew_deadline_seconds=10)


def test_actions() -> None:
    nobody = Observed(None, None, 0.0)
    assert next_action("a", nobody, 0.0, T) == "acquire"
    mine = Observed(LeaseRecord("a", 15, WALL, WALL), "1", 0.0)
    assert next_action("a", mine, 100.0, T) == "renew"
    theirs = Observed(LeaseRecord("b", 15, WALL, WALL), "1", 0.0)
    assert next_action("a", theirs, 14.9, T) == "stand-by"
    assert next_action("a", theirs, 15.0, T) == "take-over"
    released = Observed(LeaseRecord(None, 15, WALL, WALL), "2", 0.0)
    assert next_action("a", released, 0.0, T) == "acquire"


def test_an_unchanged_lease_keeps_its_first_sighting() -> None:
    first = observe(None, LeaseRecord("b", 15, WALL, WALL), "7", now=3.0)
    again = observe(first, LeaseRecord("b", 15, WALL, WALL), "7", now=9.0)
    assert again.observed_at == 3.0
    renewed = observe(again, LeaseRecord("b", 15, WALL, WALL + timedelta(seconds=2)), "8", 11.0)
    assert renewed.observed_at == 11.0


def test_written_records() -> None:
    theirs = Observed(LeaseRecord("b", 15, WALL, WALL, transitions=4), "1", 0.0)
    taken = written("a", "take-over", theirs, WALL + timedelta(seconds=20), T)
    assert (taken.holder, taken.transitions, taken.acquired) == ("a", 5, taken.renewed)
    mine = Observed(taken, "2", 20.0)
    renewed = written("a", "renew", mine, WALL + timedelta(seconds=22), T)
    assert renewed.acquired == taken.acquired and renewed.transitions == 5
    with pytest.raises(ValueError):
        written("a", "stand-by", mine, WALL, T)


def test_fencing_deadline() -> None:
    assert not may_act(None, 0.0, T)
    assert may_act(100.0, 109.9, T)
    assert not may_act(100.0, 110.0, T)


# ---- two replicas against one Lease, with stops and partitions -----------------------------


@dataclass
class Store:
    """The API server's Lease: compare-and-swap on resourceVersion."""

    record: LeaseRecord | None = None
    rv: int = 0

    def write(self, record: LeaseRecord, expected: str | None) -> bool:
        if (None if self.rv == 0 else str(self.rv)) != expected:
            return False
        self.record, self.rv = record, self.rv + 1
        return True


@dataclass
class Replica:
    name: str
    seen: Observed | None = None
    last_renewed: float | None = None
    stopped_until: float = -1.0  # SIGSTOP: no election loop, no acting, until then
    next_try: float = 0.0
    acted: list[float] = field(default_factory=list)

    def step(self, store: Store, now: float) -> None:
        if now < self.stopped_until:
            return
        if now >= self.next_try:
            self.next_try = now + T.retry_seconds
            rv = None if store.rv == 0 else str(store.rv)
            self.seen = observe(self.seen, store.record, rv, now)
            action = next_action(self.name, self.seen, now, T)
            if action != "stand-by":
                record = written(self.name, action, self.seen, WALL, T)
                if store.write(record, rv):
                    self.last_renewed = now
        if may_act(self.last_renewed, now, T):
            self.acted.append(now)


@pytest.mark.parametrize("seed", range(20))
def test_never_two_acting_and_the_standby_takes_over(seed: int) -> None:
    rng = random.Random(seed)
    store, a, b = Store(), Replica("a"), Replica("b")
    replicas = [a, b]
    now, dt = 0.0, 0.1
    outage_at = rng.uniform(20, 60)
    for _ in range(int(200 / dt)):
        now = round(now + dt, 1)
        leader = next((r for r in replicas if may_act(r.last_renewed, now, T)), None)
        if leader is not None and abs(now - outage_at) < dt / 2:
            leader.stopped_until = now + rng.uniform(16, 40)  # SIGSTOP longer than the Lease
        rng.shuffle(replicas)
        for r in replicas:
            r.step(store, now)
    both = set(a.acted) & set(b.acted)
    assert not both, f"both acted at {sorted(both)[:5]}"
    assert a.acted and b.acted, "the standby never took over"
