"""What each provider type is sent: Alertmanager v2, Slack Block Kit, Teams, Flagger webhooks."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from kanary.notify import payloads
from kanary.notify.model import ALERT_EVENTS, ALERT_NAMES, Alert

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
VARIABLES = {
    "metric": "error-rate",
    "value": "12.4%",
    "threshold": "1.0%",
    "window": "30s",
    "requests": "640",
    "step": "3",
    "weight": "25",
    "revision": "7d9f8c",
    "reason": "AnalysisFailed",
}


def make_alert(**overrides: Any) -> Alert:
    fields: dict[str, Any] = {
        "key": "RolledBack/7d9f8c",
        "event": "RolledBack",
        "severity": "critical",
        "namespace": "demo",
        "rollout": "gin-demo",
        "uid": "0b6f1d4e-uid",
        "revision": "7d9f8c",
        "phase": "RolledBack",
        "reason": "AnalysisFailed",
        "text": "gin-demo rolled back: error-rate 12.4% > 1.0% over 30s, 640 requests",
        "variables": dict(VARIABLES),
        "commands": ("kanary status gin-demo -n demo", "kanary retry gin-demo -n demo"),
        "starts_at": T0,
        "resolved_at": None,
    }
    fields.update(overrides)
    return Alert(**fields)


# Alertmanager API v2 (postableAlert: labels, annotations, startsAt, endsAt, generatorURL).


def test_alertmanager_firing_alert() -> None:
    now = T0 + timedelta(seconds=90)
    [body] = payloads.alertmanager([make_alert()], now, resend_seconds=60)
    assert set(body) == {"labels", "annotations", "startsAt", "endsAt"}
    assert body["labels"] == {
        "alertname": "KanaryRollback",
        "namespace": "demo",
        "rollout": "gin-demo",
        "severity": "critical",
        "reason": "AnalysisFailed",
        "revision": "7d9f8c",
    }
    assert body["annotations"] == {
        "summary": "gin-demo rolled back: error-rate 12.4% > 1.0% over 30s, 640 requests",
        "metric": "error-rate",
        "value": "12.4%",
        "threshold": "1.0%",
        "window": "30s",
        "requests": "640",
        "step": "3",
        "weight": "25",
        "reason": "AnalysisFailed",
        "commands": "kanary status gin-demo -n demo; kanary retry gin-demo -n demo",
    }
    assert body["startsAt"] == "2025-01-01T12:00:00Z"
    # now + 4 * resend: active only while re-sent.
    assert body["endsAt"] == "2025-01-01T12:05:30Z"
    assert all(
        isinstance(v, str) for v in [*body["labels"].values(), *body["annotations"].values()]
    )
    json.dumps(body)


def test_alertmanager_resolved_alert_ends_when_resolved() -> None:
    resolved = T0 + timedelta(minutes=3, milliseconds=250)
    now = T0 + timedelta(minutes=10)
    [body] = payloads.alertmanager([make_alert(resolved_at=resolved)], now, 60)
    assert body["endsAt"] == "2025-01-01T12:03:00.250Z"
    assert body["startsAt"] == "2025-01-01T12:00:00Z"
    assert body["labels"]["alertname"] == "KanaryRollback"


def test_alertmanager_leaves_out_what_is_unknown() -> None:
    alert = make_alert(
        reason="", revision="", variables={"metric": "", "value": "3"}, commands=(), starts_at=None
    )
    [body] = payloads.alertmanager([alert], T0, 30)
    assert set(body["labels"]) == {"alertname", "namespace", "rollout", "severity"}
    assert body["annotations"] == {"summary": alert.text, "value": "3"}
    assert "startsAt" not in body
    assert body["endsAt"] == "2025-01-01T12:02:00Z"


def test_alertmanager_times_are_utc_with_z() -> None:
    plus_two = datetime(2025, 1, 1, 16, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    naive = datetime(2025, 1, 1, 12, 1, 0)
    [body] = payloads.alertmanager([make_alert(starts_at=plus_two, resolved_at=naive)], T0, 30)
    assert body["startsAt"] == "2025-01-01T14:00:00Z"
    assert body["endsAt"] == "2025-01-01T12:01:00Z"


@pytest.mark.parametrize("event", ALERT_EVENTS)
def test_alertmanager_alertname_per_event(event: Any) -> None:
    [body] = payloads.alertmanager([make_alert(event=event)], T0, 30)
    assert body["labels"]["alertname"] == ALERT_NAMES[event]


def test_alertmanager_is_a_list_of_one_per_alert() -> None:
    alerts = [make_alert(), make_alert(key="Paused/7d9f8c/2", event="Paused", severity="warning")]
    bodies = payloads.alertmanager(alerts, T0, 30)
    assert [b["labels"]["alertname"] for b in bodies] == ["KanaryRollback", "KanaryPaused"]
    assert payloads.alertmanager([], T0, 30) == []


# Slack incoming webhook with Block Kit.


def test_slack_message() -> None:
    body = payloads.slack(make_alert(), None)
    assert set(body) == {"text", "blocks"}
    assert body["text"] == (
        "gin-demo rolled back: error-rate 12.4% &gt; 1.0% over 30s, 640 requests"
    )
    header, section, fields, context = body["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "RolledBack: demo/gin-demo"},
    }
    assert section == {"type": "section", "text": {"type": "mrkdwn", "text": body["text"]}}
    assert fields["type"] == "section"
    assert [f["type"] for f in fields["fields"]] == ["mrkdwn"] * 5
    assert [f["text"] for f in fields["fields"]] == [
        "*Severity*\ncritical",
        "*Revision*\n7d9f8c",
        "*Step*\n3",
        "*Weight*\n25",
        "*error-rate*\n12.4% vs threshold 1.0%",
    ]
    assert context == {
        "type": "context",
        "elements": [
            {
                "type": "mrkdwn",
                "text": "`kanary status gin-demo -n demo`\n`kanary retry gin-demo -n demo`",
            }
        ],
    }


def test_slack_channel_only_when_given() -> None:
    assert payloads.slack(make_alert(), "#deploys")["channel"] == "#deploys"
    assert "channel" not in payloads.slack(make_alert(), None)
    assert "channel" not in payloads.slack(make_alert(), "")


def test_slack_shows_only_known_fields_and_no_context_without_commands() -> None:
    alert = make_alert(revision="", variables={}, commands=())
    blocks = payloads.slack(alert, None)["blocks"]
    assert [b["type"] for b in blocks] == ["header", "section", "section"]
    assert [f["text"] for f in blocks[2]["fields"]] == ["*Severity*\ncritical"]


def test_slack_value_without_threshold_or_metric() -> None:
    alert = make_alert(variables={"value": "41"})
    fields = [f["text"] for f in payloads.slack(alert, None)["blocks"][2]["fields"]]
    assert fields[-1] == "*Value*\n41"


def test_slack_truncates_to_its_limits() -> None:
    alert = make_alert(rollout="r" * 400, text="x" * 5000)
    body = payloads.slack(alert, None)
    header = body["blocks"][0]["text"]["text"]
    assert len(header) == payloads.SLACK_HEADER_MAX == 150
    assert header.startswith("RolledBack: demo/rrr") and header.endswith("…")
    section = body["blocks"][1]["text"]["text"]
    assert len(section) == payloads.SLACK_TEXT_MAX == 3000
    assert section.endswith("…")
    assert len(body["text"]) <= 3000


def test_slack_truncation_never_splits_an_escape() -> None:
    alert = make_alert(text="<" * 2000)  # 8000 characters once escaped
    section = payloads.slack(alert, None)["blocks"][1]["text"]["text"]
    assert len(section) <= 3000
    assert section.endswith("&lt;…")
    assert section[:-1].replace("&lt;", "") == ""


def test_slack_escapes_mrkdwn_control_characters() -> None:
    alert = make_alert(text="a < b & c > d")
    assert payloads.slack(alert, None)["blocks"][1]["text"]["text"] == "a &lt; b &amp; c &gt; d"


# Microsoft Teams: a message carrying one Adaptive Card.


def test_msteams_adaptive_card() -> None:
    body = payloads.msteams(make_alert())
    assert body["type"] == "message"
    [attachment] = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert card["type"] == "AdaptiveCard"
    assert card["version"] == "1.4"
    title, text, facts, *commands = card["body"]
    assert title["type"] == "TextBlock"
    assert title["text"] == "RolledBack: demo/gin-demo"
    assert title["color"] == "Attention"
    assert text == {"type": "TextBlock", "text": make_alert().text, "wrap": True}
    assert facts["type"] == "FactSet"
    assert facts["facts"][0] == {"title": "Severity", "value": "critical"}
    assert {"title": "error-rate", "value": "12.4% vs threshold 1.0%"} in facts["facts"]
    assert [c["text"] for c in commands] == list(make_alert().commands)
    assert all(c["type"] == "TextBlock" and c["fontType"] == "Monospace" for c in commands)
    json.dumps(body)


# Flagger-compatible webhooks (CanaryWebhookPayload: name, namespace, phase, checksum, metadata).


def test_webhook_has_flaggers_shape() -> None:
    body = payloads.webhook(make_alert())
    assert set(body) == {"name", "namespace", "phase", "checksum", "metadata"}
    assert body["name"] == "gin-demo"
    assert body["namespace"] == "demo"
    assert body["phase"] == "RolledBack"
    expected = hashlib.sha256(b"demo/gin-demo/7d9f8c").hexdigest()[:10]
    assert body["checksum"] == expected
    metadata = body["metadata"]
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    # What Flagger puts there for event webhooks.
    assert metadata["eventMessage"] == make_alert().text
    assert metadata["eventType"] == "Warning"
    assert metadata["timestamp"] == str(int(T0.timestamp()) * 1000)
    # Ours.
    assert metadata["event"] == "RolledBack"
    assert metadata["severity"] == "critical"
    assert metadata["reason"] == "AnalysisFailed"
    assert metadata["revision"] == "7d9f8c"
    assert metadata["text"] == make_alert().text
    assert metadata["commands"] == "kanary status gin-demo -n demo; kanary retry gin-demo -n demo"
    assert metadata["key"] == "RolledBack/7d9f8c"
    assert metadata["status"] == "firing"
    for name in ("metric", "value", "threshold", "window", "requests", "step", "weight"):
        assert metadata[name] == VARIABLES[name]


def test_webhook_resolved_and_info() -> None:
    resolved = T0 + timedelta(seconds=42, milliseconds=7)
    alert = make_alert(severity="info", resolved_at=resolved, variables={"metric": ""})
    metadata = payloads.webhook(alert)["metadata"]
    assert metadata["eventType"] == "Normal"
    assert metadata["status"] == "resolved"
    assert metadata["timestamp"] == str(int(T0.timestamp()) * 1000 + 42_007)
    assert "metric" not in metadata


def test_webhook_without_a_time_has_no_timestamp() -> None:
    assert "timestamp" not in payloads.webhook(make_alert(starts_at=None))["metadata"]


def test_checksum_is_per_revision_and_stable() -> None:
    one = payloads.webhook(make_alert())["checksum"]
    assert payloads.webhook(make_alert(key="other", text="other"))["checksum"] == one
    assert payloads.webhook(make_alert(revision="aaaaaa"))["checksum"] != one
    assert payloads.webhook(make_alert(rollout="other"))["checksum"] != one
    gate = payloads.gate("confirm-promotion", "demo", "gin-demo", "Paused", "7d9f8c", {})
    assert gate["checksum"] == one


def test_gate_payload() -> None:
    body = payloads.gate(
        "confirm-promotion", "demo", "gin-demo", "Progressing", "7d9f8c", {"cmd": "make test"}
    )
    assert body == {
        "name": "gin-demo",
        "namespace": "demo",
        "phase": "Progressing",
        "checksum": payloads.checksum("demo", "gin-demo", "7d9f8c"),
        "type": "confirm-promotion",
        "metadata": {"cmd": "make test"},
    }


def test_gate_metadata_is_the_gates_own_and_left_out_when_empty() -> None:
    assert "metadata" not in payloads.gate("pre-rollout", "demo", "gin-demo", "P", "r", {})
    metadata = {"type": "bash", "cmd": "curl -sf http://x"}
    body = payloads.gate("pre-rollout", "demo", "gin-demo", "P", "r", metadata)
    assert body["metadata"] == metadata
    assert body["metadata"] is not metadata
