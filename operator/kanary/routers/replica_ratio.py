"""No gateway: Service <name> selects both tracks; the replica counts are the traffic split."""

from __future__ import annotations

from kanary.spec import HeaderRoute


class ReplicaRatioRouter:
    """The engine's replica counts (ScaleStable, ApplyCanary) are the weights: nothing to write."""

    def set_weight(
        self, weight: int, header: HeaderRoute | None = None, mirror: int | None = None
    ) -> tuple[int, int] | None:
        if not 0 <= weight <= 100:
            raise ValueError(f"weight {weight} is outside 0..100")
        if header is not None or mirror:  # the CRD and the models refuse them without a route
            raise ValueError("header routes and mirrors need spec.trafficRouting.gatewayAPI")
        return None
