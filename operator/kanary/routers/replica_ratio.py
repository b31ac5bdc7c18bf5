"""No gateway: Service <name> selects both tracks; the replica counts are the traffic split."""

from __future__ import annotations


class ReplicaRatioRouter:
    """The engine's replica counts (ScaleStable, ApplyCanary) are the weights: nothing to write."""

    def set_weight(self, weight: int) -> tuple[int, int] | None:
        if not 0 <= weight <= 100:
            raise ValueError(f"weight {weight} is outside 0..100")
        return None
