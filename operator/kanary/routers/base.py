"""The interface every traffic router implements."""

from __future__ import annotations

from typing import Protocol


class RouteProblem(Exception):
    """The router cannot write weights (e.g. the HTTPRoute lacks our backendRefs); says why."""


class TrafficRouter(Protocol):
    def set_weight(self, weight: int) -> tuple[int, int] | None:
        """Send `weight`% to canary, the rest to stable, in one write; RouteProblem if not.
        Returns the (stable, canary) split as stored, or None where pods are the split."""
        ...
