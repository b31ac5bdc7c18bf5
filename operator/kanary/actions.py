"""What the pure engine asks the I/O layer to do, in order. Each is one idempotent write."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kanary.spec import HeaderRoute


@dataclass(frozen=True)
class EnsureServices:
    """Create or fix <name>-stable, <name>-canary (and <name> in replica-ratio mode); with
    `names`, only those."""

    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class ApplyCanary:
    """Canary Deployment gets spec.template (revision) and this many replicas."""

    revision: str
    replicas: int


@dataclass(frozen=True)
class ApplyStable:
    """Stable Deployment gets spec.template (revision) and this many replicas."""

    revision: str
    replicas: int


@dataclass(frozen=True)
class ScaleStable:
    """Only the replica count of the stable Deployment (replica-ratio mode); template untouched."""

    replicas: int


@dataclass(frozen=True)
class SetWeight:
    """Canary weight in percent (stable gets 100 - weight) and the header route in force (None:
    none), in one write to the router. The engine fills `header` from the status it decides
    (engine.converge._with_header), so every route write carries the whole routing."""

    weight: int
    header: HeaderRoute | None = None
    mirror: int | None = None  # percent of requests copied to the canary; None: no mirror


@dataclass(frozen=True)
class EmitEvent:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


Action = EnsureServices | ApplyCanary | ApplyStable | ScaleStable | SetWeight | EmitEvent
