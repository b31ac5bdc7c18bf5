"""The JSON body each provider type is sent (pure: no I/O, no clock; the time is passed in).

- ``alertmanager``: Alertmanager API v2 postable alerts (``POST /api/v2/alerts``);
- ``slack``: a Slack incoming-webhook message with Block Kit blocks;
- ``msteams``: a Teams incoming/workflow webhook message carrying an Adaptive Card;
- ``webhook`` and ``gate``: Flagger's ``CanaryWebhookPayload`` shape, so receivers written
  for Flagger (its load tester, its gates, event sinks) work unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from kanary.notify.model import ALERT_NAMES, Alert

# Template variables shown as Alertmanager annotations and webhook metadata, in this order.
# ("revision" is a label of its own.)
ANNOTATED_VARIABLES = (
    "metric",
    "value",
    "threshold",
    "window",
    "requests",
    "step",
    "weight",
    "reason",
)
# Slack Block Kit limits (characters).
SLACK_HEADER_MAX = 150
SLACK_TEXT_MAX = 3000
SLACK_FIELD_MAX = 2000
ADAPTIVE_CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
_SEVERITY_COLORS = {"critical": "Attention", "warning": "Warning", "info": "Good"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MRKDWN_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def rfc3339(moment: datetime) -> str:
    """UTC, with a "Z"; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    spec = "seconds" if moment.microsecond == 0 else "milliseconds"
    return moment.astimezone(UTC).isoformat(timespec=spec).replace("+00:00", "Z")


def checksum(namespace: str, rollout: str, revision: str) -> str:
    """First 10 hex digits of sha256("<namespace>/<rollout>/<revision>").

    Like Flagger's checksum it names one configuration of one canary: the same for every
    event and gate call about a revision, different for the next revision.
    """
    digest = hashlib.sha256(f"{namespace}/{rollout}/{revision}".encode()).hexdigest()
    return digest[:10]


def alertmanager(
    alerts: Sequence[Alert], now: datetime, resend_seconds: float
) -> list[dict[str, Any]]:
    """Postable alerts for ``POST /api/v2/alerts``.

    A firing alert ends at now + 4 * resend_seconds (as Prometheus does), so it stays active
    only while it is re-sent; a resolved one ends at its ``resolved_at``. Empty labels are left
    out (Alertmanager treats them as absent).
    """
    ends_if_firing = now + timedelta(seconds=4 * resend_seconds)
    out: list[dict[str, Any]] = []
    for alert in alerts:
        labels = {
            "alertname": ALERT_NAMES[alert.event],
            "namespace": alert.namespace,
            "rollout": alert.rollout,
            "severity": alert.severity,
            "reason": alert.reason,
            "revision": alert.revision,
        }
        annotations = {"summary": alert.text, **_known_variables(alert)}
        if alert.commands:
            annotations["commands"] = "; ".join(alert.commands)
        body: dict[str, Any] = {
            "labels": {k: v for k, v in labels.items() if v},
            "annotations": annotations,
        }
        if alert.starts_at is not None:
            body["startsAt"] = rfc3339(alert.starts_at)
        ends = alert.resolved_at if alert.resolved_at is not None else ends_if_firing
        body["endsAt"] = rfc3339(ends)
        out.append(body)
    return out


def slack(alert: Alert, channel: str | None) -> dict[str, Any]:
    """A Slack incoming-webhook message: the one line as fallback text, then Block Kit."""
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _cut(_title(alert), SLACK_HEADER_MAX)},
        },
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": _mrkdwn(alert.text, SLACK_TEXT_MAX)},
        },
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": _mrkdwn(f"*{name}*\n{value}", SLACK_FIELD_MAX)}
                for name, value in _facts(alert)
            ],
        },
    ]
    if alert.commands:
        commands = "\n".join(f"`{command}`" for command in alert.commands)
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": _mrkdwn(commands, SLACK_TEXT_MAX)}],
            }
        )
    body: dict[str, Any] = {"text": _mrkdwn(alert.text, SLACK_TEXT_MAX), "blocks": blocks}
    if channel:
        body["channel"] = channel
    return body


def msteams(alert: Alert) -> dict[str, Any]:
    """A Teams webhook message with one Adaptive Card (1.4)."""
    card_body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": _title(alert),
            "size": "Large",
            "weight": "Bolder",
            "color": _SEVERITY_COLORS.get(alert.severity, "Default"),
            "wrap": True,
        },
        {"type": "TextBlock", "text": alert.text, "wrap": True},
        {
            "type": "FactSet",
            "facts": [{"title": name, "value": value} for name, value in _facts(alert)],
        },
    ]
    card_body.extend(
        {"type": "TextBlock", "text": command, "fontType": "Monospace", "wrap": True}
        for command in alert.commands
    )
    card = {
        "$schema": ADAPTIVE_CARD_SCHEMA,
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": card_body,
    }
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }


def webhook(alert: Alert) -> dict[str, Any]:
    """Flagger's event webhook payload (``CanaryWebhookPayload``).

    metadata carries what Flagger puts there for events (eventMessage, eventType "Warning" or
    "Normal", timestamp in Unix milliseconds: resolved_at if resolved, else starts_at, left out
    when neither is known), then ours: event, severity, reason, revision, text, commands
    ("; "-joined), key, status ("firing" or "resolved") and the known template variables.
    """
    metadata = {
        "eventMessage": alert.text,
        "eventType": "Normal" if alert.severity == "info" else "Warning",
        **_known_variables(alert),
        "event": alert.event,
        "severity": alert.severity,
        "reason": alert.reason,
        "revision": alert.revision,
        "text": alert.text,
        "commands": "; ".join(alert.commands),
        "key": alert.key,
        "status": "resolved" if alert.resolved_at is not None else "firing",
    }
    moment = alert.resolved_at if alert.resolved_at is not None else alert.starts_at
    if moment is not None:
        metadata["timestamp"] = str(_unix_ms(moment))
    return {
        "name": alert.rollout,
        "namespace": alert.namespace,
        "phase": alert.phase,
        "checksum": checksum(alert.namespace, alert.rollout, alert.revision),
        "metadata": metadata,
    }


def gate(
    gate_type: str,
    namespace: str,
    rollout: str,
    phase: str,
    revision: str,
    metadata: Mapping[str, str],
) -> dict[str, Any]:
    """Flagger's webhook payload for a gate call, plus a top-level "type" (the gate type).

    Flagger itself sends no "type" (its payload is name, namespace, phase, checksum, metadata);
    Go receivers ignore unknown fields. metadata is the gate's own, untouched and left out when
    empty, as Flagger does: its load tester reads "type" and "cmd" from it.
    """
    body: dict[str, Any] = {
        "name": rollout,
        "namespace": namespace,
        "phase": phase,
        "checksum": checksum(namespace, rollout, revision),
        "type": gate_type,
    }
    if metadata:
        body["metadata"] = dict(metadata)
    return body


def _known_variables(alert: Alert) -> dict[str, str]:
    return {k: alert.variables[k] for k in ANNOTATED_VARIABLES if alert.variables.get(k)}


def _title(alert: Alert) -> str:
    return f"{alert.event}: {alert.namespace}/{alert.rollout}"


def _facts(alert: Alert) -> list[tuple[str, str]]:
    """(name, value) pairs shown as Slack fields and Teams facts; only what is known."""
    var = alert.variables
    facts: list[tuple[str, str]] = [("Severity", alert.severity)]
    if alert.revision:
        facts.append(("Revision", alert.revision))
    for key in ("step", "weight"):
        if var.get(key):
            facts.append((key.capitalize(), var[key]))
    value, threshold = var.get("value", ""), var.get("threshold", "")
    if value:
        shown = f"{value} vs threshold {threshold}" if threshold else value
        facts.append((var.get("metric") or "Value", shown))
    return facts


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mrkdwn(text: str, limit: int) -> str:
    """Escape &, <, > for Slack mrkdwn, then cut to limit without splitting an escape."""
    escaped = "".join(_MRKDWN_ESCAPES.get(ch, ch) for ch in text)
    if len(escaped) <= limit:
        return escaped
    out: list[str] = []
    size = 0
    for ch in text:
        piece = _MRKDWN_ESCAPES.get(ch, ch)
        if size + len(piece) > limit - 1:
            break
        out.append(piece)
        size += len(piece)
    return "".join(out) + "…"


def _unix_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)
