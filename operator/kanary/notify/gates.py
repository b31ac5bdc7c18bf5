"""Asking a gate (I/O): the engine says which gate it waits for (status.gate); this asks it,
at most every its interval, with Flagger's webhook JSON, and hands the answer back as
``obs.gate``. Synchronous, like an analysis check, and bounded by the gate's timeout."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kanary.notify import payloads
from kanary.notify.delivery import call_gate
from kanary.notify.dispatch import Notifier
from kanary.notify.providers import resolve_one
from kanary.observation import GateOutcome
from kanary.spec import RolloutSpec
from kanary.status import RolloutStatus


def ask_gate(
    notifier: Notifier | None,
    asked: dict[str, tuple[str, str, datetime]],
    spec: RolloutSpec,
    current: RolloutStatus,
    providers: Mapping[tuple[str, str], Mapping[str, Any]],
    meta: Mapping[str, Any],
    now: datetime,
) -> GateOutcome | None:
    """Ask the gate the engine waits for (status.gate), at most every its interval. Synchronous,
    like an analysis check, and bounded by the gate's timeout. ``asked``: rollout uid -> the
    gate (type, revision) it last asked, and when."""
    waiting = current.gate
    if waiting is None or notifier is None:
        return None
    gate = spec.strategy.gate(waiting.type)
    if gate is None:
        return None
    uid = str(meta.get("uid", ""))
    last = asked.get(uid)  # one per Rollout: the gate it waits for now, not every one it did
    if (
        last is not None
        and last[:2] == (waiting.type, waiting.revision)
        and (now - last[2]).total_seconds() < gate.interval_seconds()
    ):
        return None
    asked[uid] = (waiting.type, waiting.revision, now)
    namespace, name = meta["namespace"], meta["name"]
    found = resolve_one((namespace, gate.provider), providers, notifier.read_secret)
    if isinstance(found, str):
        return GateOutcome(waiting.type, waiting.revision, False, found)
    if found.type != "webhook":
        why = f"AlertProvider {found.name} is of type {found.type}: a gate needs type webhook"
        return GateOutcome(waiting.type, waiting.revision, False, why)
    target = dataclasses.replace(found, timeout_seconds=gate.timeout_seconds())
    body = payloads.gate(waiting.type, namespace, name, current.phase or "", waiting.revision, {})
    passed, message = call_gate(target, body)
    return GateOutcome(waiting.type, waiting.revision, passed, message)
