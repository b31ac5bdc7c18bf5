"""The interface every traffic router implements."""

from __future__ import annotations

from typing import Protocol

from kanary.spec import HeaderRoute


class RouteProblem(Exception):
    """The router cannot write weights (e.g. the HTTPRoute lacks our backendRefs); says why."""


class TrafficRouter(Protocol):
    def set_weight(
        self, weight: int, header: HeaderRoute | None = None, mirror: int | None = None
    ) -> tuple[int, int] | None:
        """Send `weight`% to canary, the rest to stable, requests matching `header` to the
        canary and a copy of `mirror`% of requests to it, in one write; RouteProblem if not.
        Returns the (stable, canary) split as stored, or None where pods are the split."""
        ...
