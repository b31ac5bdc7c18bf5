"""Writing a Rollout's status: the smallest merge patch (changed keys only, compared as the API
server stores them), with the resourceVersion read as its precondition; the printer columns'
fields; a failed tick recorded as condition ReconcileError."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException

from kanary.observation import Observation
from kanary.spec import RolloutSpec
from kanary.status import Condition, RolloutStatus


class StatusWriter(Protocol):
    def patch_rollout_status(
        self, namespace: str, name: str, resource_version: str, status: dict[str, Any]
    ) -> None: ...


class Conflict(Exception):
    """The Rollout changed since it was read: this tick's decision is dropped; the next one
    decides again."""


def routing_text(status: RolloutStatus, spec: RolloutSpec) -> str:
    """'stable 95% / canary 5%', '... + X-Canary: always -> canary', 'replica ratio 25%'."""
    weight = status.canary_weight
    routed = spec.traffic_routing is not None and spec.traffic_routing.gateway_api is not None
    if not routed:
        return f"replica ratio: canary {weight}% of pods"
    text = f"stable {100 - weight}% / canary {weight}%"
    header = status.header_route
    if status.canary_unavailable_since is not None:
        return text
    if header is not None:
        text += f" + {header.describe()} -> canary"
    if status.mirror_percent is not None:
        text += f" + mirror {status.mirror_percent}% -> canary"
    return text


def for_kubectl(status: RolloutStatus, spec: RolloutSpec, obs: Observation) -> RolloutStatus:
    """The printer columns' fields: step "i/N" and the images each track runs."""
    index = status.current_step_index
    steps = len(spec.strategy.plan())
    canary = ",".join(spec.template.images()) if status.stage == "Stepping" else None
    return status.model_copy(
        update={
            "step": None if index is None else f"{min(index + 1, steps)}/{steps}",
            "strategy": "blueGreen" if spec.strategy.is_blue_green() else "canary",
            "routing": routing_text(status, spec),
            "stable_image": obs.stable.images or None,
            "canary_image": canary,
        }
    )


def _stored(value: Any) -> Any:
    """A value as the API server keeps it: a merge patch's nulls delete keys, so none remain."""
    if isinstance(value, dict):
        return {k: _stored(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_stored(v) for v in value]
    return value


_KNOWN = {field.alias or key for key, field in RolloutStatus.model_fields.items()}


def status_patch(old: Mapping[str, Any], new: RolloutStatus) -> dict[str, Any]:
    """Merge-patch body: changed keys, and None for keys of ours that went away. Keys the model
    does not know (a newer operator's) are never mentioned, so never dropped. Compared as
    stored, so a status that did not change is not written again."""
    fresh = new.to_patch()
    patch = {k: v for k, v in fresh.items() if _stored(old.get(k)) != _stored(v)}
    patch.update({k: None for k in old if k in _KNOWN and fresh.get(k) is None and k not in patch})
    return {k: v for k, v in patch.items() if not (v is None and old.get(k) is None)}


# What a tick observed rather than decided: the readiness figures, the progress message
# ("3/4 pods Ready") and a condition's message. A status patch of these alone waits up to
# COALESCE_SECONDS for the next write that carries it (writes per step, issue 15).
OBSERVED = frozenset({"readiness", "message"})
COALESCE_SECONDS = 5.0


def observation_only(old: Mapping[str, Any], patch: Mapping[str, Any]) -> bool:
    """The patch only refreshes observations: no phase, step, weight, revision, alert or
    condition state (type, status, reason) changes in it."""

    def states(conditions: Any) -> list[tuple[Any, Any, Any]]:
        return [(c.get("type"), c.get("status"), c.get("reason")) for c in conditions or []]

    for key, value in patch.items():
        if key in OBSERVED:
            continue
        if key == "conditions" and states(old.get("conditions")) == states(value):
            continue
        return False
    return True


def invalid_status(old: Mapping[str, Any], reason: str, generation: int) -> RolloutStatus:
    status = RolloutStatus.model_validate(dict(old))
    return status.model_copy(
        update={"phase": "Invalid", "message": reason, "observed_generation": generation}
    )


def write_status(
    kube: StatusWriter,
    meta: Mapping[str, Any],
    old: Mapping[str, Any],
    new: RolloutStatus,
    patch: dict[str, Any] | None = None,
) -> None:
    """`patch`: status_patch(old, new), when the caller has it already."""
    if patch is None:
        patch = status_patch(old, new)
    if not patch:
        return
    try:
        kube.patch_rollout_status(
            meta["namespace"], meta["name"], str(meta.get("resourceVersion", "")), patch
        )
    except ApiException as e:
        if e.status == 409:
            raise Conflict(f"rollout {meta['namespace']}/{meta['name']} changed meanwhile") from e
        raise


def with_reconcile_error(old: Mapping[str, Any], message: str, now: datetime) -> dict[str, Any]:
    """The status patch that records a failed tick as condition ReconcileError (the one line
    on-call needs); the next successful tick removes it."""
    status = RolloutStatus.model_validate(dict(old))
    previous = next((c for c in status.conditions if c.type == "ReconcileError"), None)
    since = previous.last_transition_time if previous is not None else now
    if previous is not None and previous.message == message:
        return {}
    others = [c for c in status.conditions if c.type != "ReconcileError"]
    error = Condition(
        type="ReconcileError",
        status="True",
        reason="ReconcileError",
        message=message,
        last_transition_time=since,
    )
    return status_patch(old, status.model_copy(update={"conditions": [*others, error]}))
