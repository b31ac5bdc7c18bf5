"""End to end: rollbacks alert, with the evidence, exactly once; gates hold and release.

Real parts only: the operator process (its ServiceAccount, which may get Secrets and list
AlertProviders), Debian's Alertmanager of the data plane (queried through its API v2), a real
HTTP receiver in the cluster's netns for the Slack and Flagger-webhook payloads and for gates
(tests/integration/receiver.py), real containers on the real node and real traffic through
Traefik. URLs reach the operator only through Secrets, as a user writes them.

    hack/cluster/exec.sh .venv/bin/python -m pytest -q tests/e2e/test_e2e_alerts.py
"""

from __future__ import annotations

import base64
import signal
import time
import warnings
from typing import Any

import pytest

from tests.integration.conftest import apps, cluster, core, namespace, receiver, wait_until
from tests.integration.dataplane_fixtures import Alertmanager, alertmanager, dataplane, record
from tests.integration.receiver import Receiver

from .e2e_fixtures import (
    Scenario,
    Traffic,
    e2e_operator,
    failures,
    scenario,
    statuses,
    versions,
)

__all__ = [
    "alertmanager",
    "apps",
    "cluster",
    "core",
    "dataplane",
    "e2e_operator",
    "namespace",
    "receiver",
    "scenario",
]

pytestmark = pytest.mark.e2e

FAST_STEPS: list[dict[str, Any]] = [
    {"setWeight": 25},
    {"pause": {"duration": "2s"}},
    {"setWeight": 50},
]


def provider(sc: Scenario, name: str, kind: str, url: str) -> None:
    """A Secret with the URL and a token, and the AlertProvider that names it."""
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"{name}-url"},
        "data": {
            "address": base64.b64encode(url.encode()).decode(),
            "token": base64.b64encode(b"e2e-token").decode(),
        },
    }
    sc.kit.core.create_namespaced_secret(sc.ns, secret)
    body = {
        "apiVersion": "kanary.dev/v1alpha1",
        "kind": "AlertProvider",
        "metadata": {"name": name},
        "spec": {"type": kind, "secretRef": {"name": f"{name}-url"}},
    }
    sc.kit.custom.create_namespaced_custom_object(
        "kanary.dev", "v1alpha1", sc.ns, "alertproviders", body
    )


def posts(receiver: Receiver, path: str) -> list[Any]:
    return [r.json for r in receiver.requests if r.path == path]


def rollback_alerts(am: Alertmanager, sc: Scenario, active: bool = True) -> list[dict[str, Any]]:
    return am.alerts(active=active, alertname="KanaryRollback", namespace=sc.ns, rollout=sc.name)


def test_error_rate_rollback_alerts_once_with_the_evidence_then_resolves(
    scenario: Scenario, alertmanager: Alertmanager, receiver: Receiver
) -> None:
    sc = scenario
    provider(sc, "oncall", "alertmanager", alertmanager.url)
    provider(sc, "hook", "webhook", receiver.url + "hook")
    provider(sc, "chat", "slack", receiver.url + "slack")
    sc.start_v1(notifications={"providers": ["oncall", "hook", "chat"]})
    with Traffic(sc.host) as traffic:
        traffic.wait_only({"v1"})
        sc.set_version("v2", env={"ERROR_RATE": "0.2"})
        status = sc.kit.wait_phase(sc.name, "RolledBack", timeout=120)
        t_rolled = time.monotonic()
        firing = wait_until(
            "KanaryRollback in Alertmanager", lambda: rollback_alerts(alertmanager, sc) or None, 30
        )
        t_alert = time.monotonic()
        receiver.wait_for(2)
        time.sleep(5)  # anything sent twice would arrive by now

    # Alertmanager: exactly one alert, routable labels, the measured value in an annotation
    assert len(firing) == 1, firing
    labels, notes = firing[0]["labels"], firing[0]["annotations"]
    revision = status["history"][-1]["revision"]
    assert labels == {
        "alertname": "KanaryRollback",
        "namespace": sc.ns,
        "rollout": sc.name,
        "severity": "critical",
        "reason": "AnalysisFailed",
        "revision": revision,
    }, labels
    assert notes["metric"] == "error-rate" and notes["value"].endswith("%"), notes
    assert float(notes["value"].rstrip("%")) > 1.0, notes
    # The step the Rollout itself records. A 20% canary is expected to fall at step 1/7; one
    # CI run on a loaded machine saw step 3/7 (two passing checks before the sequential test
    # rejected). Likely cause, fixed in ae9f588: the canary's first 5xx series through Traefik
    # had one sample in the window and counted 0. Not confirmed (that run's data was gone), so a
    # later step is surfaced with its evidence, and the alert is still judged.
    where = f"step {status['currentStepIndex'] + 1}/7"
    if where != "step 1/7":
        warnings.warn(
            f"rolled back at {where}, not step 1/7: analysis {status.get('analysis')}; "
            f"events {sc.events()}",
            stacklevel=1,
        )
    assert notes["threshold"] == "<= 1.0%" and notes["step"] == where, notes
    assert f"kanary retry {sc.name} -n {sc.ns}" in notes["commands"], notes
    assert f"rolled back at {where} (weight " in notes["summary"], notes
    assert "%): error-rate" in notes["summary"], notes

    # the Flagger-compatible webhook and the Slack message: once each, documented fields
    (hook,) = posts(receiver, "/hook")
    assert set(hook) >= {"name", "namespace", "phase", "checksum", "metadata"}, hook
    assert (hook["name"], hook["namespace"], hook["phase"]) == (sc.name, sc.ns, "RolledBack")
    assert all(isinstance(v, str) for v in hook["metadata"].values()), hook["metadata"]
    assert (
        hook["metadata"]["eventType"] == "Warning" and hook["metadata"]["value"] == notes["value"]
    )
    (chat,) = posts(receiver, "/slack")
    assert isinstance(chat["text"], str) and notes["value"] in chat["text"], chat
    assert chat["blocks"][0]["type"] == "header", chat["blocks"]
    assert all(r.headers.get("authorization") == "Bearer e2e-token" for r in receiver.requests)
    alerts = sc.kit.status(sc.name)["alerts"]
    assert [(a["key"], sorted(a["sent"])) for a in alerts] == [
        (f"RolledBack/{revision}", sorted(f"{sc.ns}/{p}" for p in ("oncall", "hook", "chat")))
    ]
    record(sc.dp, "e2e_alert_rollback_to_alertmanager_seconds", round(t_alert - t_rolled, 2))

    # a later healthy rollout resolves it
    with Traffic(sc.host) as traffic:
        traffic.wait_only({"v1"})
        sc.set_version("v3")
        sc.kit.wait_promoted(sc.name, sc.image("v3"), timeout=180)
    wait_until("KanaryRollback resolved", lambda: not rollback_alerts(alertmanager, sc), 60)
    assert len(posts(receiver, "/hook")) == 1  # the resolution is Alertmanager's only


def test_a_receiver_down_for_30s_loses_nothing_and_the_rollout_keeps_its_pace(
    scenario: Scenario, receiver: Receiver
) -> None:
    sc = scenario
    provider(sc, "hook", "webhook", receiver.url + "hook")
    events = [{"event": "StepCompleted"}, {"event": "Promoted"}]
    sc.start_v1(steps=FAST_STEPS, notifications={"providers": ["hook"], "events": events})

    def rollout_seconds(tag: str) -> float:
        with Traffic(sc.host) as traffic:
            traffic.wait_only({"v1", "v2"})
            sc.set_version(tag)
            final = sc.kit.wait_promoted(sc.name, sc.image(tag), timeout=180)
        last = final["history"][-1]
        from datetime import datetime

        started = datetime.fromisoformat(last["started"])
        finished = datetime.fromisoformat(last["finished"])
        return (finished - started).total_seconds()

    up_seconds = rollout_seconds("v2")
    receiver.wait_for(4)  # steps 1, 2 and 3 completed, promoted
    receiver.clear()
    receiver.down()
    t_down = time.monotonic()
    down_seconds = rollout_seconds("v3")
    time.sleep(max(0.0, 30 - (time.monotonic() - t_down)))
    assert receiver.requests == []
    receiver.up()
    got = receiver.wait_for(4, timeout=60)
    time.sleep(3)
    keys = sorted(r.json["metadata"]["key"] for r in receiver.requests)
    assert len(keys) == 4 and len(set(keys)) == 4, keys  # each once, none lost
    assert {r.json["metadata"]["event"] for r in got} == {"StepCompleted", "Promoted"}
    record(sc.dp, "e2e_alert_rollout_seconds_receiver_up_down", [up_seconds, down_seconds])
    # Pace, not speed: a delivery that held the tick would add urllib3's backoff (1 + 2 + 4 + 8 s
    # before giving up on the first event alone) to each of the 4 events, well over half again.
    # Load on a shared 2-core machine moves a 34 s rollout by a few seconds (CI saw +3.2 s).
    assert down_seconds <= up_seconds * 1.5, (up_seconds, down_seconds)


def test_a_gate_answering_500_holds_promotion_and_200_releases_it(
    scenario: Scenario, receiver: Receiver
) -> None:
    sc = scenario
    provider(sc, "release-gate", "webhook", receiver.url + "gate")
    gate = {"type": "confirm-promotion", "provider": "release-gate", "interval": "1s"}
    sc.start_v1(steps=FAST_STEPS, gates=[gate])
    receiver.status(500)
    with Traffic(sc.host) as traffic:
        t_serving = traffic.wait_only({"v1"})
        sc.set_version("v2")

        def held() -> dict[str, Any] | None:
            st = sc.kit.status(sc.name)
            return st if "waiting for gate confirm-promotion: HTTP 500" in st["message"] else None

        wait_until("held by the gate", held, 120)
        t_held = time.monotonic()
        time.sleep(8)
        still = sc.kit.status(sc.name)
        assert still["phase"] == "Progressing" and sc.kit.weights(sc.name) == (50, 50), still
        held_samples = traffic.samples(t_held + 3, time.monotonic())
        receiver.status(200)
        sc.kit.wait_promoted(sc.name, sc.image("v2"), timeout=120)
        traffic.wait_only({"v2"})
    everything = traffic.samples(t_serving)
    assert statuses(everything) == {"200": len(everything)}, failures(everything)
    assert set(versions(held_samples)) == {"v1", "v2"}, versions(held_samples)
    gate_calls = posts(receiver, "/gate")
    assert len(gate_calls) >= 5 and all(c["type"] == "confirm-promotion" for c in gate_calls)
    assert {"name", "namespace", "phase", "checksum"} <= set(gate_calls[0]), gate_calls[0]
    assert "GatePassed" in sc.reasons()


def test_operator_killed_right_after_the_rollback_still_one_alert(
    scenario: Scenario, alertmanager: Alertmanager, receiver: Receiver
) -> None:
    sc = scenario
    provider(sc, "oncall", "alertmanager", alertmanager.url)
    provider(sc, "hook", "webhook", receiver.url + "hook")
    sc.start_v1(steps=FAST_STEPS, notifications={"providers": ["oncall", "hook"]})
    with Traffic(sc.host) as traffic:
        traffic.wait_only({"v1"})
        sc.set_version("v2", env={"ERROR_RATE": "0.2"})
        sc.kit.wait_phase(sc.name, "RolledBack", timeout=120)
        sc.operator.kill(signal.SIGKILL)
    time.sleep(2)
    sc.operator.start()
    wait_until(
        "the alert recorded as sent",
        lambda: all(
            len(a.get("sent") or []) == 2 for a in sc.kit.status(sc.name).get("alerts") or [{}]
        ),
        60,
    )
    time.sleep(5)
    assert len(posts(receiver, "/hook")) == 1, receiver.requests
    assert len(rollback_alerts(alertmanager, sc)) == 1


def test_a_provider_with_a_missing_secret_is_a_condition_and_nothing_else(
    scenario: Scenario,
) -> None:
    sc = scenario
    body = {
        "apiVersion": "kanary.dev/v1alpha1",
        "kind": "AlertProvider",
        "metadata": {"name": "ghost"},
        "spec": {"type": "slack", "secretRef": {"name": "no-such-secret"}},
    }
    sc.kit.custom.create_namespaced_custom_object(
        "kanary.dev", "v1alpha1", sc.ns, "alertproviders", body
    )
    sc.start_v1(steps=FAST_STEPS, notifications={"providers": ["ghost"]})
    expected = f"AlertProvider {sc.ns}/ghost: Secret {sc.ns}/no-such-secret not found"

    def alerting() -> dict[str, Any] | None:
        conditions = sc.kit.status(sc.name).get("conditions") or []
        found = [c for c in conditions if c["type"] == "Alerting"]
        return found[0] if found else None

    condition = wait_until("condition Alerting", alerting, 30)
    assert (condition["status"], condition["reason"]) == ("False", "ProviderProblem")
    assert condition["message"] == expected
    problems = [(t, m) for t, r, m in sc.events() if r == "AlertProviderProblem"]
    assert problems == [("Warning", expected)], sc.events()
    with Traffic(sc.host) as traffic:  # nothing else changes: v2 goes out as always
        traffic.wait_only({"v1"})
        sc.set_version("v2")
        sc.kit.wait_promoted(sc.name, sc.image("v2"), timeout=120)
