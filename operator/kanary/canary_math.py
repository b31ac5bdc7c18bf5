"""Arithmetic of a canary: pods for a weight, the replica-ratio split, and the step plan.

Pure functions over the spec's numbers; the engine and the CLI both read steps through these so
that "step 3/7" and "weight 25%" mean the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kanary.spec import HeaderRoute, Step


def replicas_for_weight(replicas: int, weight: int) -> int:
    """Canary pods for a weight: ceil(replicas * weight / 100), so any weight > 0 gets a pod."""
    bounded = min(max(weight, 0), 100)
    return (replicas * bounded + 99) // 100


def ratio_percent(canary: int, stable: int) -> int:
    """The share of pods (so of traffic, in replica-ratio mode) on the canary, rounded half up."""
    total = canary + stable
    if total <= 0:
        return 0
    return (200 * canary + total) // (2 * total)


@dataclass(frozen=True)
class RatioSplit:
    """Replica-ratio mode: one Service across both tracks, so pods are the weights."""

    canary: int
    stable: int
    percent: int  # the actual canary share, what status reports as canaryWeight


def replicas_for_ratio(replicas: int, percent: int) -> int:
    """Fewest canary pods of `replicas` whose share (ratio_percent) is at least `percent`."""
    return next(
        (n for n in range(replicas + 1) if ratio_percent(n, replicas - n) >= percent), replicas
    )


def ratio_split(replicas: int, weight: int) -> RatioSplit:
    canary = replicas_for_weight(replicas, weight)
    stable = replicas - canary
    return RatioSplit(canary=canary, stable=stable, percent=ratio_percent(canary, stable))


def step_count(steps: Sequence[Step]) -> int:
    return len(steps)


def step_label(index: int, steps: Sequence[Step]) -> str:
    """'step 3/7' for index 2 of 7 steps (1-based, as on-call counts)."""
    return f"step {index + 1}/{step_count(steps)}"


def weight_through(steps: Sequence[Step], index: int) -> int:
    """The weight in force once step `index` is done: the last setWeight at or before it."""
    for step in reversed(steps[: index + 1]):
        if step.set_weight is not None:
            return step.set_weight
    return 0


def weight_before(steps: Sequence[Step], index: int) -> int:
    """The weight in force while step `index` runs, before it writes its own weight."""
    return weight_through(steps, index - 1) if index > 0 else 0


def header_route_through(steps: Sequence[Step], index: int) -> HeaderRoute | None:
    """The header route in force once step `index` is done: the last setHeaderRoute at or
    before it (None if none, or if that one has no match: it removed the route)."""
    for step in reversed(steps[: index + 1]):
        if step.set_header_route is not None:
            return step.set_header_route if step.set_header_route.match else None
    return None


def mirror_through(steps: Sequence[Step], index: int) -> int | None:
    """The mirror percent in force once step `index` is done (None: none)."""
    for step in reversed(steps[: index + 1]):
        if step.set_mirror is not None:
            return step.set_mirror.percent or None
    return None


def describe_step(step: Step) -> str:
    """'setWeight 25', 'pause 30s', 'pause until promote', 'setHeaderRoute X-Canary: yes'."""
    if step.set_weight is not None:
        return f"setWeight {step.set_weight}"
    if step.set_header_route is not None:
        route = step.set_header_route
        return f"setHeaderRoute {route.describe()}" if route.match else "setHeaderRoute off"
    if step.set_mirror is not None:
        return f"setMirror {step.set_mirror.percent}%"
    if step.pause is not None and step.pause.duration is not None:
        return f"pause {step.pause.duration}"
    return "pause until promote"
