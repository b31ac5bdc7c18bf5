"""Gates: webhooks asked before the engine acts (pre-rollout: before the canary's first traffic;
confirm-promotion: before the automatic promotion). The engine only says which gate it waits
for (status.gate); the I/O layer asks it every interval and passes the answer in as
``obs.gate``. A 2xx lets the rollout act and is remembered per revision (status.gatesPassed),
so it is never asked twice; anything else holds, with the answer in the message."""

from __future__ import annotations

from kanary.engine.tick import _Tick
from kanary.notify.spec import GateType
from kanary.status import GateStatus

PASSED_KEPT = 4  # entries of status.gatesPassed kept (two gate types, current and previous)


def _gate_holds(tick: _Tick, kind: GateType) -> bool:
    """True while the rollout must wait for gate `kind`; records a pass when it answered 2xx."""
    gate = tick.spec.strategy.gate(kind)
    revision = tick.status.canary_revision or ""
    passed = f"{kind}/{revision}"
    if gate is None or passed in tick.status.gates_passed:
        return False
    answer = tick.obs.gate
    if answer is not None and (answer.type, answer.revision) != (kind, revision):
        answer = None  # an answer about another gate or revision (a superseded rollout)
    if answer is not None and answer.passed:
        tick.update(gate=None, gates_passed=[*tick.status.gates_passed, passed][-PASSED_KEPT:])
        tick.event("GatePassed", f"{tick.label()}: gate {kind} said {answer.message}")
        return False
    waiting = tick.status.gate
    if waiting is None or (waiting.type, waiting.revision) != (kind, revision):
        tick.event("WaitingForGate", f"{tick.label()}: asking gate {kind} before acting")
        waiting = GateStatus(type=kind, revision=revision, since=tick.now)
    if answer is not None and answer.message != waiting.message:
        tick.event("GateHeld", f"{tick.label()}: gate {kind} holds: {answer.message}", True)
        waiting = waiting.model_copy(update={"message": answer.message})
    tick.update(gate=waiting)
    return True


def _waiting_text(status_gate: GateStatus) -> str:
    said = f": {status_gate.message}" if status_gate.message else ""
    return f"waiting for gate {status_gate.type}{said}"
