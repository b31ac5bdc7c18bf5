"""Which alerts a tick raises and resolves: the Rollout's status before and after the engine's
decision in, the status with its alert records out. Pure.

One alert per event per revision (per step for step events), keyed in status.alerts and written
in the same status write as the transition that raised it: a tick that is lost raises nothing,
a restart finds it recorded, and delivery (I/O) sends each record once per provider, recording
what was sent. An alert is resolved when its condition is over: a rollback when the Rollout is
Healthy again, a pause when it goes on, an unavailable canary when a pod is Ready (or it was
rolled back, which raises its own alert). Promoted and StepCompleted are over when raised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from kanary.actions import EmitEvent
from kanary.notify import text
from kanary.notify.model import AlertEvent
from kanary.notify.spec import DEFAULT_SEVERITY, NotificationsSpec
from kanary.spec import RolloutSpec
from kanary.status import AlertRecord, Condition, RolloutStatus

KEPT = 20  # status.alerts entries; resolved and delivered ones go first
State = Literal["firing", "resolved"]


@dataclass(frozen=True)
class AlertContext:
    """What the I/O layer knows: the providers that apply and what they have accepted."""

    namespace: str
    name: str
    providers: tuple[str, ...] = ()  # names of the providers that apply, in order
    # (alert key, provider, "firing" | "resolved") accepted since the status was read
    delivered: frozenset[tuple[str, str, State]] = field(default_factory=frozenset)
    problem: str | None = None  # why some alerts cannot be delivered (one line), if so


def _raised(before: RolloutStatus, after: RolloutStatus) -> list[tuple[AlertEvent, str]]:
    """The events of this transition, with their keys."""
    rev = after.canary_revision or before.canary_revision or ""
    out: list[tuple[AlertEvent, str]] = []
    if after.stage == "Aborted" and before.stage != "Aborted":
        out.append(("RolledBack", f"RolledBack/{rev}"))
    paused = after.phase == "Paused" and after.pause_reason in ("Step", "Inconclusive")
    newly = before.phase != "Paused" or before.pause_reason != after.pause_reason
    if paused and (newly or before.current_step_index != after.current_step_index):
        out.append(("Paused", f"Paused/{rev}/{after.current_step_index}"))
    if after.history[-1:] != before.history[-1:] and after.history[-1].outcome == "Promoted":
        out.append(("Promoted", f"Promoted/{after.history[-1].revision}"))
    same_rollout = before.stage == "Stepping" and before.canary_revision == after.canary_revision
    if same_rollout and (after.current_step_index or 0) > (before.current_step_index or 0):
        out.append(("StepCompleted", f"StepCompleted/{rev}/{before.current_step_index}"))
    if after.analysis.verdict == "Error" and before.analysis.verdict != "Error":
        out.append(("AnalysisError", f"AnalysisError/{rev}"))
    if after.canary_unavailable_since is not None and before.canary_unavailable_since is None:
        out.append(("CanaryUnavailable", f"CanaryUnavailable/{rev}"))
    return out


def _still_holds(record: AlertRecord, after: RolloutStatus) -> bool:
    same = after.canary_revision == record.revision
    match record.event:
        case "RolledBack":
            return after.phase != "Healthy"
        case "Paused":
            return (
                same
                and after.phase == "Paused"
                and record.key.endswith(f"/{after.current_step_index}")
            )
        case "AnalysisError":
            return same and after.stage == "Stepping" and after.analysis.verdict == "Error"
        case "CanaryUnavailable":
            return same and after.stage == "Stepping" and after.canary_unavailable_since is not None
        case _:
            return False


def _delivered(ctx: AlertContext, key: str, state: State) -> set[str]:
    return {p for (k, p, s) in ctx.delivered if k == key and s == state}


def raise_alerts(
    spec: RolloutSpec,
    before: RolloutStatus,
    after: RolloutStatus,
    ctx: AlertContext,
    now: datetime,
) -> tuple[RolloutStatus, list[EmitEvent]]:
    """`after` with this tick's alerts raised, resolved and marked delivered; and the Events
    to post (an alert problem that appeared or changed)."""
    notifications = spec.notifications or NotificationsSpec()
    records = [_fold(r, ctx) for r in after.alerts]
    known = {r.key for r in records}
    if ctx.providers:
        for event, key in _raised(before, after):
            rule = notifications.rule(event)
            if rule is None or key in known:
                continue
            records.append(_record(spec, notifications, before, after, ctx, event, key, now))
            known.add(key)
    records = [_resolve(r, after, now) for r in records]
    status = after.model_copy(update={"alerts": _trim(records)})
    return _alerting_condition(status, ctx, now)


def _record(
    spec: RolloutSpec,
    notifications: NotificationsSpec,
    before: RolloutStatus,
    after: RolloutStatus,
    ctx: AlertContext,
    event: AlertEvent,
    key: str,
    now: datetime,
) -> AlertRecord:
    rule = notifications.rule(event)
    severity = rule.level() if rule is not None else DEFAULT_SEVERITY[event]
    values = text.variables(event, spec, before, after, ctx.namespace, ctx.name, severity)
    line = text.text(event, notifications.template, values, ctx.namespace, ctx.name)
    instant = event in ("Promoted", "StepCompleted")
    return AlertRecord(
        key=key,
        event=event,
        severity=severity,
        revision=values["revision"],
        reason=_cause(event, after),
        text=line,
        variables={k: v for k, v in values.items() if v},
        at=now,
        resolved_at=now if instant else None,
    )


def _cause(event: AlertEvent, after: RolloutStatus) -> str:
    """The machine-readable reason label: the RolledBack condition's reason, else the event."""
    if event == "RolledBack":
        rolled = next((c for c in after.conditions if c.type == "RolledBack"), None)
        if rolled is not None and rolled.status == "True":
            return rolled.reason
    return event


def _fold(record: AlertRecord, ctx: AlertContext) -> AlertRecord:
    sent = _delivered(ctx, record.key, "firing") - set(record.sent)
    done = _delivered(ctx, record.key, "resolved") - set(record.resolved_sent)
    if not sent and not done:
        return record
    return record.model_copy(
        update={
            "sent": [*record.sent, *sorted(sent)],
            "resolved_sent": [*record.resolved_sent, *sorted(done)],
        }
    )


def _resolve(record: AlertRecord, after: RolloutStatus, now: datetime) -> AlertRecord:
    if record.resolved_at is not None or _still_holds(record, after):
        return record
    return record.model_copy(update={"resolved_at": now})


def _trim(records: list[AlertRecord]) -> list[AlertRecord]:
    """At most KEPT records: the oldest resolved ones go first, then the oldest."""
    while len(records) > KEPT:
        done = next((r for r in records if r.resolved_at is not None), records[0])
        records = [r for r in records if r is not done]
    return records


def _alerting_condition(
    status: RolloutStatus, ctx: AlertContext, now: datetime
) -> tuple[RolloutStatus, list[EmitEvent]]:
    """Condition Alerting: True while every provider resolves and delivers, False with the
    one line why; none when the Rollout has no providers. The Event goes out once per
    problem (status.alertProblem remembers it)."""
    others = [c for c in status.conditions if c.type != "Alerting"]
    previous = next((c for c in status.conditions if c.type == "Alerting"), None)
    events: list[EmitEvent] = []
    if not ctx.providers and ctx.problem is None:
        return status.model_copy(update={"conditions": others, "alert_problem": None}), events
    ok = ctx.problem is None
    value: Literal["True", "False"] = "True" if ok else "False"
    reason = "ProvidersReady" if ok else "ProviderProblem"
    message = ", ".join(ctx.providers) if ok else (ctx.problem or "")
    since = previous.last_transition_time if previous and previous.status == value else now
    condition = Condition(
        type="Alerting", status=value, reason=reason, message=message, last_transition_time=since
    )
    if ctx.problem is not None and ctx.problem != status.alert_problem:
        events.append(EmitEvent(type="Warning", reason="AlertProviderProblem", message=ctx.problem))
    elif ctx.problem is None and status.alert_problem is not None:
        events.append(EmitEvent(type="Normal", reason="AlertProvidersReady", message=message))
    update = {"conditions": [*others, condition], "alert_problem": ctx.problem}
    return status.model_copy(update=update), events
