"""Rollback: weight 0 first, in one write; the canary goes to 0 pods later (scale-down times)."""

from __future__ import annotations

from datetime import datetime, timedelta

from kanary.actions import SetWeight
from kanary.engine.tick import (
    _put_condition,
    _Tick,
)

# ---- rollback ----------------------------------------------------------------------------------


def _roll_back(tick: _Tick, cause: str, reason: str) -> None:
    """Weight to 0 first, in one write; the canary goes to 0 pods later; stable is untouched."""
    where = tick.label()
    tick.moved = True
    tick.act(SetWeight(0))
    tick.record("RolledBack", reason)
    tick.update(
        stage="Aborted",
        canary_weight=0,
        header_route=None,
        mirror_percent=None,
        pause_reason=None,
        scale_down_at=_scale_down_time(tick),
        gate=None,
    )
    _put_condition(tick, "RolledBack", True, cause, f"{where}: {reason}")
    revision = tick.status.canary_revision
    tick.event("RolledBack", f"{revision} rolled back at {where}: {reason}", warning=True)
    _scale_down_if_due(tick)


def _scale_down_time(tick: _Tick, delay: int | None = None) -> datetime:
    """When the canary may go to 0 pods: after the router has stopped sending it traffic."""
    # Replica-ratio mode has no weight to write: canary pods are its traffic, so they go at once.
    if tick.ratio_mode:
        return tick.now
    if delay is None:
        delay = tick.spec.strategy.abort_scale_down_delay_seconds
    return tick.now + timedelta(seconds=delay)


def _scale_down_if_due(tick: _Tick) -> None:
    """Scale-down waits while the route is broken: its weight 0 may not have been written."""
    due = tick.status.scale_down_at
    if due is not None:
        tick.recheck(due)
    if due is None or tick.now < due or tick.obs.route_problem:
        return
    tick.update(scale_down_at=None)
    tick.event("ScaledDown", "canary scaled to 0 pods")
