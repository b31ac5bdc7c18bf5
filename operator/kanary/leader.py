"""Leader election by a coordination.k8s.io Lease: the pure decisions (groundwork for issue 15,
not yet wired into the operator).

As client-go's leaderelection, with the fencing the issue asks for made explicit:

- A candidate reads the Lease and remembers when it first saw its current ``resourceVersion``
  on its own monotonic clock (``observed_at``); wall clocks of other replicas are never
  compared with its own.
- Nobody holds it (no Lease, no holder): acquire. The holder is this replica: renew. Another
  holder whose Lease has not changed for ``lease_seconds`` of this replica's clock: take over
  (leaseTransitions + 1). Otherwise: stand by. Every write carries the resourceVersion read,
  so two candidates cannot both win.
- Fencing by deadline: a leader acts (ticks, writes) only while its last successful renewal
  is younger than ``renew_deadline_seconds``, which is shorter than ``lease_seconds``. A
  leader that cannot renew (partitioned, or stopped by SIGSTOP) has stopped acting before any
  standby may take the Lease over, and after a SIGCONT it does not act until it has renewed,
  which fails if someone else holds the Lease.

Defaults as Argo Rollouts: lease 15 s, renew deadline 10 s, retry every 2 s.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

Action = Literal["acquire", "renew", "take-over", "stand-by"]


@dataclass(frozen=True)
class Timings:
    lease_seconds: float = 15.0
    renew_deadline_seconds: float = 10.0
    retry_seconds: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_seconds < self.renew_deadline_seconds < self.lease_seconds:
            raise ValueError(
                "lease timings must satisfy 0 < retry < renew deadline < lease duration, got "
                f"retry {self.retry_seconds:g}s, renew deadline "
                f"{self.renew_deadline_seconds:g}s, lease {self.lease_seconds:g}s"
            )


@dataclass(frozen=True)
class LeaseRecord:
    """spec of a coordination.k8s.io/v1 Lease, as far as election needs it."""

    holder: str | None
    lease_seconds: int
    acquired: datetime | None
    renewed: datetime | None
    transitions: int = 0


@dataclass(frozen=True)
class Observed:
    """The Lease as last read, and when (this replica's monotonic clock) its resourceVersion
    was first seen."""

    record: LeaseRecord | None  # None: no Lease object
    resource_version: str | None
    observed_at: float


def observe(
    previous: Observed | None, record: LeaseRecord | None, rv: str | None, now: float
) -> Observed:
    """The new observation: ``observed_at`` moves only when the Lease changed."""
    if previous is not None and previous.resource_version == rv and rv is not None:
        return replace(previous, record=record)
    return Observed(record, rv, now)


def next_action(me: str, seen: Observed, now: float, timings: Timings) -> Action:
    record = seen.record
    if record is None or not record.holder:
        return "acquire"
    if record.holder == me:
        return "renew"
    expires = max(record.lease_seconds, timings.lease_seconds)
    if now - seen.observed_at >= expires:
        return "take-over"
    return "stand-by"


def written(
    me: str, action: Action, seen: Observed, wall: datetime, timings: Timings
) -> LeaseRecord:
    """The Lease spec to write for ``action`` (not for stand-by)."""
    if action == "stand-by":
        raise ValueError("a standby writes nothing")
    old = seen.record
    lease = int(timings.lease_seconds)
    if action == "renew" and old is not None:
        return replace(old, renewed=wall, lease_seconds=lease)
    transitions = 0 if old is None else old.transitions + 1  # the holder changes
    return LeaseRecord(me, lease, wall, wall, transitions)


def may_act(last_renewed: float | None, now: float, timings: Timings) -> bool:
    """Fencing: act only within the renew deadline of the last successful renewal."""
    return last_renewed is not None and now - last_renewed < timings.renew_deadline_seconds
