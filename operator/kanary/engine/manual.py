"""Manual actions (`kanary promote`, `abort`, `retry`, `pause`, `resume`): each applies once
per request id and is answered in status.lastAction."""

from __future__ import annotations

from collections.abc import Callable

from kanary import canary_math
from kanary.engine.report import _pause_text
from kanary.engine.rollback import _roll_back
from kanary.engine.steps import _advance, _start_promotion, _start_rollout
from kanary.engine.tick import _pause_reason_of, _phase_of, _Tick
from kanary.observation import ManualAction
from kanary.status import LastAction

# ---- manual actions ----------------------------------------------------------------------------


def _manual_is_new(tick: _Tick) -> bool:
    request_id = tick.obs.manual_id
    return request_id is None or request_id != tick.status.last_manual_id


def _apply_manual(tick: _Tick) -> None:
    action = tick.obs.manual
    if action is None or not _manual_is_new(tick):
        return
    _acknowledge(tick, action, _MANUAL[action](tick))


def _acknowledge(tick: _Tick, action: ManualAction, refusal: str | None) -> None:
    """status.lastAction answers the request (`kanary ACTION --wait` reads it)."""
    if tick.obs.manual_id is not None:
        tick.update(last_manual_id=tick.obs.manual_id)
    answer = LastAction(
        id=tick.obs.manual_id or action,
        action=action,
        result="Accepted" if refusal is None else "Refused",
        reason=refusal or "",
        at=tick.now,
    )
    tick.update(last_action=answer)
    if refusal is not None:
        tick.event("ManualActionRefused", f"{action}: {refusal}", warning=True)


def _promote(tick: _Tick) -> str | None:
    if tick.status.stage != "Stepping":
        return f"nothing to promote: the rollout is {_phase_of(tick.status)}"
    step = tick.step()
    if step.pause is None:
        return (
            f"{tick.label()} is {canary_math.describe_step(step)}, not a pause; "
            "`promote --full` promotes now"
        )
    tick.event("ManualPromote", f"{tick.label()} ({canary_math.describe_step(step)}) ended by user")
    _advance(tick)
    return None


def _promote_full(tick: _Tick) -> str | None:
    if tick.status.stage != "Stepping":
        return f"nothing to promote: the rollout is {_phase_of(tick.status)}"
    _start_promotion(tick, f"promote --full at {tick.label()}")
    return None


def _abort(tick: _Tick) -> str | None:
    if tick.status.stage not in ("Stepping", "Promoting"):
        return f"nothing to abort: the rollout is {_phase_of(tick.status)}"
    _roll_back(tick, "Aborted", "aborted by user")
    return None


def _retry(tick: _Tick) -> str | None:
    if tick.status.stage != "Aborted":
        return f"nothing to retry: the rollout is {_phase_of(tick.status)}"
    _start_rollout(tick)
    return None


def _pause(tick: _Tick) -> str | None:
    if tick.status.stage != "Stepping":
        return f"only a running rollout can pause: the rollout is {_phase_of(tick.status)}"
    if tick.status.pause_reason is not None:
        return f"already paused ({_pause_text(tick)})"
    tick.update(pause_reason="User")
    tick.event("Paused", f"{tick.label()}: paused by user")
    return None


def _resume(tick: _Tick) -> str | None:
    reason = tick.status.pause_reason if tick.status.stage == "Stepping" else None
    if reason is None:
        return f"not paused: the rollout is {_phase_of(tick.status)}"
    if reason == "Step":
        return f"{tick.label()} is a pause until promote: use `kanary promote`"
    step = tick.step()
    counts = tick.status.analysis.model_copy(update={"consecutive_inconclusive": 0})
    tick.update(pause_reason=_pause_reason_of(step), analysis=counts)
    tick.event("Resumed", f"{tick.label()}: resumed by user")
    return None


_MANUAL: dict[ManualAction, Callable[[_Tick], str | None]] = {
    "promote": _promote,
    "promote-full": _promote_full,
    "abort": _abort,
    "retry": _retry,
    "pause": _pause,
    "resume": _resume,
}
