"""The tick's side of notifications (I/O glue): which providers apply to a Rollout, what they
have accepted, and the deliveries to queue after the tick's status write.

Delivery never runs in the tick: ``dispatch`` only queues (the Deliverer's queue is bounded and
``submit`` never blocks). A provider's acceptance is recorded twice: at once, with a JSON patch
of status.alerts[i].sent guarded by a `test` of the alert's key (so an operator killed right
after does not send it again), and in memory, which the next tick folds into status when that
patch could not be made (the status changed meanwhile).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from kanary.notify import payloads, text
from kanary.notify.alerts import AlertContext, State
from kanary.notify.delivery import Deliverer, Delivery
from kanary.notify.model import Alert, AlertEvent, Target
from kanary.notify.providers import Resolved, SecretUnreadable, resolve
from kanary.spec import RolloutSpec
from kanary.status import AlertRecord, RolloutStatus

log = logging.getLogger("kanary")

RESEND_SECONDS = 60.0  # Alertmanager: a firing alert is re-sent this often (it ends at 4x)
SECRET_TTL_SECONDS = 10.0


class StatusPatcher(Protocol):
    def json_patch_rollout_status(
        self, namespace: str, name: str, ops: list[dict[str, Any]]
    ) -> None: ...


class Notifier:
    """Process-wide: the deliverer, the Secrets cache and the memory of acceptances."""

    def __init__(
        self,
        deliverer: Deliverer,
        kube: StatusPatcher,
        read_secret: Callable[[str, str], Mapping[str, str] | None],
        admin_refs: Sequence[str] = (),
        monotonic: Callable[[], float] = time.monotonic,
        resend_seconds: float = RESEND_SECONDS,
    ) -> None:
        self.deliverer = deliverer
        self.kube = kube
        self._read_secret = read_secret
        self.admin_refs = tuple(admin_refs)
        self.monotonic = monotonic
        self.resend_seconds = resend_seconds
        self._lock = threading.Lock()
        self._secrets: dict[tuple[str, str], tuple[float, Mapping[str, str] | None]] = {}
        # rollout uid -> (alert key, provider, state) accepted and not yet seen in status
        self._accepted: dict[str, set[tuple[str, str, State]]] = {}
        # rollout uid -> (alert key, provider) -> when a firing alert was last accepted
        self._resent: dict[str, dict[tuple[str, str], float]] = {}
        self._sending: set[str] = set()  # rollout uids with deliveries, until forgotten
        self.failing: dict[str, str] = {}  # provider -> why its last delivery was given up
        # Called (on the delivery thread) once an acceptance is known, with the Rollout's
        # namespace and name: its next tick records every acceptance from memory, so a Rollout
        # at rest must be woken for it (handlers.py).
        self.on_accepted: Callable[[str, str], None] | None = None

    def forget(self, uid: str) -> None:
        """The Rollout is gone: what it was sent is no longer needed (and an acceptance still
        on its way is not recorded), nor are Secrets read before SECRET_TTL_SECONDS."""
        with self._lock:
            self._accepted.pop(uid, None)
            self._resent.pop(uid, None)
            self._sending.discard(uid)
        self._secrets = fresh(self._secrets, self.monotonic())

    # ---- which providers ----------------------------------------------------------------------

    def refs(self, spec: RolloutSpec) -> list[str]:
        own = list(spec.notifications.providers) if spec.notifications else []
        return own + [r for r in self.admin_refs if r not in own]

    def read_secret(self, namespace: str, name: str) -> Mapping[str, str] | None:
        now = self.monotonic()
        cached = self._secrets.get((namespace, name))
        if cached is not None and now - cached[0] < SECRET_TTL_SECONDS:
            return cached[1]
        data = self._read_secret(namespace, name)
        self._secrets = {**fresh(self._secrets, now), (namespace, name): (now, data)}
        return data

    def resolve(
        self,
        spec: RolloutSpec,
        namespace: str,
        objects: Mapping[tuple[str, str], Mapping[str, Any]],
    ) -> Resolved:
        return resolve(self.refs(spec), namespace, objects, self.read_secret)

    def context(
        self, uid: str, namespace: str, name: str, resolved: Resolved, status: RolloutStatus
    ) -> AlertContext:
        """What raise_alerts needs; acceptances already in status are forgotten here."""
        with self._lock:
            accepted = self._accepted.get(uid, set())
            recorded = {(r.key, p, "firing") for r in status.alerts for p in r.sent} | {
                (r.key, p, "resolved") for r in status.alerts for p in r.resolved_sent
            }
            accepted -= recorded
            delivered = frozenset(accepted)
        failing = [
            f"{t.name}: {self.failing[t.name]}" for t in resolved.targets if t.name in self.failing
        ]
        problems = [*resolved.problems, *failing]
        return AlertContext(
            namespace=namespace,
            name=name,
            providers=tuple(t.name for t in resolved.targets),
            delivered=delivered,
            problem="; ".join(problems) or None,
        )

    # ---- after the status write ---------------------------------------------------------------

    def dispatch(
        self,
        uid: str,
        namespace: str,
        name: str,
        status: RolloutStatus,
        targets: Sequence[Target],
        now: datetime,
    ) -> None:
        """Queue what the written status says is not yet delivered; re-send firing alerts to
        Alertmanager before they expire."""
        firing = {r.key for r in status.alerts if r.resolved_at is None}
        with self._lock:
            resent = self._resent.get(uid)
            if resent is not None:  # the marks of alerts over or trimmed from status go
                self._resent[uid] = {k: at for k, at in resent.items() if k[0] in firing}
        for index, record in enumerate(status.alerts):
            alert = _alert(record, uid, namespace, name, status.phase or "")
            for target in targets:
                state = self._due(uid, record, target)
                if state is not None:
                    self._submit(uid, namespace, name, index, record, alert, target, state, now)

    def _due(self, uid: str, record: AlertRecord, target: Target) -> State | None:
        """What `target` must be sent of `record` now, if anything: an alert it has not
        accepted; for Alertmanager also a firing alert not re-sent recently, and the end of
        one it was told of (not of one that was over when raised: its one POST said so)."""
        if target.name not in record.sent:
            accepted = self._was_accepted(uid, record.key, target.name, "firing")
            return None if accepted else "firing"
        if target.type != "alertmanager":
            return None
        if record.resolved_at is None:
            last = self._resent.get(uid, {}).get((record.key, target.name))
            recent = last is not None and self.monotonic() - last < self.resend_seconds
            return None if recent else "firing"  # Alertmanager keeps it active until 4x this
        if record.resolved_at == record.at or target.name in record.resolved_sent:
            return None
        accepted = self._was_accepted(uid, record.key, target.name, "resolved")
        return None if accepted else "resolved"

    def _submit(
        self,
        uid: str,
        namespace: str,
        name: str,
        index: int,
        record: AlertRecord,
        alert: Alert,
        target: Target,
        state: State,
        now: datetime,
    ) -> None:
        with self._lock:
            self._sending.add(uid)
        self.deliverer.submit(
            Delivery(
                target=target,
                body=_body(target, alert, now, self.resend_seconds),
                key=(uid, record.key, target.name, state),
                on_delivered=self._accepted_by(
                    uid, namespace, name, index, record, target.name, state
                ),
            )
        )

    def _was_accepted(self, uid: str, key: str, provider: str, state: State) -> bool:
        with self._lock:
            return (key, provider, state) in self._accepted.get(uid, set())

    def _accepted_by(
        self,
        uid: str,
        namespace: str,
        name: str,
        index: int,
        record: AlertRecord,
        provider: str,
        state: State,
    ) -> Callable[[], None]:
        def done() -> None:  # runs on the delivery thread
            with self._lock:
                self.failing.pop(provider, None)
                if uid not in self._sending:
                    return  # the Rollout was deleted meanwhile: nothing to record
                self._accepted.setdefault(uid, set()).add((record.key, provider, state))
                self._resent.setdefault(uid, {})[(record.key, provider)] = self.monotonic()
            field = "sent" if state == "firing" else "resolvedSent"
            already = record.sent if state == "firing" else record.resolved_sent
            if provider in already:
                return  # a re-send: nothing new to record
            # Append to the list; only when it is absent (422), create it. Acceptances run one
            # at a time on the delivery thread, so a list one of them created is appended to
            # by the next (creating it from what was known at submit time replaced it).
            test = {"op": "test", "path": f"/status/alerts/{index}/key", "value": record.key}
            where = f"/status/alerts/{index}/{field}"
            try:
                try:
                    self.kube.json_patch_rollout_status(
                        namespace,
                        name,
                        [test, {"op": "add", "path": f"{where}/-", "value": provider}],
                    )
                except Exception as e:
                    if getattr(e, "status", None) != 422:
                        raise
                    self.kube.json_patch_rollout_status(
                        namespace, name, [test, {"op": "add", "path": where, "value": [provider]}]
                    )
            except Exception as e:  # the next tick records it from memory
                log.debug("rollout %s/%s: alert %s: %s", namespace, name, record.key, e)
            if self.on_accepted is not None:  # a failed patch: the woken tick records it
                self.on_accepted(namespace, name)

        return done

    def on_failure(self, provider: str, message: str) -> None:
        """The Deliverer gave an item up: the Rollouts using `provider` say so (condition
        Alerting False and a Warning Event) from their next tick."""
        self.failing[provider] = message


def fresh(
    secrets: Mapping[tuple[str, str], tuple[float, Mapping[str, str] | None]], now: float
) -> dict[tuple[str, str], tuple[float, Mapping[str, str] | None]]:
    """The cached Secrets read less than SECRET_TTL_SECONDS ago (the others are read again)."""
    return {k: v for k, v in secrets.items() if now - v[0] < SECRET_TTL_SECONDS}


def _alert(record: AlertRecord, uid: str, namespace: str, name: str, phase: str) -> Alert:
    event: AlertEvent = record.event  # type: ignore[assignment]
    return Alert(
        key=record.key,
        event=event,
        severity=record.severity,  # type: ignore[arg-type]
        namespace=namespace,
        rollout=name,
        uid=uid,
        revision=record.revision,
        phase=phase,
        reason=record.reason,
        text=record.text,
        variables=dict(record.variables),
        commands=text.commands(event, namespace, name),
        starts_at=record.at,
        resolved_at=record.resolved_at,
    )


def _body(target: Target, alert: Alert, now: datetime, resend: float) -> Any:
    match target.type:
        case "alertmanager":
            return payloads.alertmanager([alert], now, resend)
        case "slack":
            return payloads.slack(alert, target.channel)
        case "msteams":
            return payloads.msteams(alert)
        case "webhook":
            return payloads.webhook(alert)


__all__ = ["Notifier", "SecretUnreadable"]
