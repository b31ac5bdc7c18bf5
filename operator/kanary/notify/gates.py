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
    asked: dict[tuple[str, str, str], datetime],
    spec: RolloutSpec,
    current: RolloutStatus,
    providers: Mapping[tuple[str, str], Mapping[str, Any]],
    meta: Mapping[str, Any],
    now: datetime,
) -> GateOutcome | None:
    """Ask the gate the engine waits for (status.gate), at most every its interval. Synchronous,
    like an analysis check, and bounded by the gate's timeout."""
    waiting = current.gate
    if waiting is None or notifier is None:
        return None
    gate = spec.strategy.gate(waiting.type)
    if gate is None:
        return None
    key = (str(meta.get("uid", "")), waiting.type, waiting.revision)
    last = asked.get(key)
    if last is not None and (now - last).total_seconds() < gate.interval_seconds():
        return None
    asked[key] = now
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
