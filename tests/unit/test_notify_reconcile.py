"""Alerts and gates through the I/O glue: reconcile() with the fake Kube (which models the
Rollout's status subresource, AlertProviders and Secrets), the real Deliverer and a real HTTP
receiver on 127.0.0.1. Each test is one "must show" of the alerts issue, at unit scale; the e2e
tests show the same against the real cluster, Alertmanager and Traefik."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests.unit.fake_kube import FakeKube, Harness
from tests.unit.test_reconcile import NAME, NS, httproute, new_version, rollout, split

from kanary.notify.delivery import Deliverer
from kanary.notify.dispatch import Notifier


class Receiver:
    """A real HTTP server: records each POST and answers `code`."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.code = 200
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.posts.append(
                    {
                        "path": self.path,
                        "body": json.loads(body),
                        "auth": self.headers["Authorization"],
                    }
                )
                self.send_response(receiver.code)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.posts) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.posts


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def provider(kube: FakeKube, name: str, kind: str, url: str | None, secret: bool = True) -> None:
    kube.put(
        {
            "kind": "AlertProvider",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"type": kind, "secretRef": {"name": f"{name}-secret"}},
        }
    )
    if secret:
        data = {"address": url} if url is not None else {}
        kube.put(
            {
                "kind": "Secret",
                "metadata": {"name": f"{name}-secret", "namespace": NS},
                "stringData": {**data, "token": "s3cret"},
            }
        )


def start_operator(h: Harness) -> Deliverer:
    """A fresh operator process: no memory of what was sent, only the Rollout's status."""
    deliverer = Deliverer(
        lambda p, m: notifier.on_failure(p, m), backoff_base=0.05, backoff_max=0.2
    )
    notifier = Notifier(deliverer, h.kube, h.kube.secret_data)
    h.rt.notifier = notifier
    h.rt.gate_asked.clear()
    return deliverer


def notified(extra: dict[str, Any] | None = None, **strategy: Any) -> dict[str, Any]:
    body = rollout(**strategy)
    body["spec"]["notifications"] = {
        "providers": ["hook"],
        "events": [{"event": "RolledBack"}, {"event": "Promoted"}],
        **(extra or {}),
    }
    return body


def harness(body: dict[str, Any], receiver: Receiver, kind: str = "webhook") -> Harness:
    kube = FakeKube()
    kube.put(body)
    kube.put(httproute())
    provider(kube, "hook", kind, receiver.url + "/hook")
    h = Harness(kube)
    start_operator(h)
    h.run_until(lambda s: s.phase == "Healthy")
    return h


def abort_at_5_percent(h: Harness) -> None:
    new_version(h)
    h.run_until(lambda s: s.canary_weight == 5)
    h.kube.annotate(NS, NAME, **{"kanary.dev/action": "abort"})
    h.run_until(lambda s: s.phase == "RolledBack")


def ticks(h: Harness, n: int, pause: float = 0.02) -> None:
    for _ in range(n):
        h.tick()
        time.sleep(pause)


def test_a_rollback_is_sent_once_with_flaggers_webhook_shape(receiver: Receiver) -> None:
    h = harness(notified(), receiver)
    abort_at_5_percent(h)
    posts = receiver.wait(1)
    ticks(h, 5)
    assert len(posts) == 1, posts
    body = posts[0]["body"]
    assert {"name", "namespace", "phase", "checksum", "metadata"} <= set(body)
    assert (body["name"], body["namespace"], body["phase"]) == (NAME, NS, "RolledBack")
    assert (body["metadata"]["event"], body["metadata"]["eventType"]) == ("RolledBack", "Warning")
    text = json.dumps(body)
    assert "rolled back at step 2/5 (weight 5%): aborted by user" in text
    assert f"kanary retry {NAME} -n {NS}" in text
    assert posts[0]["auth"] == "Bearer s3cret"
    record = h.status.alerts[0]
    assert (record.event, record.sent) == ("RolledBack", [f"{NS}/hook"])


def test_acceptances_by_two_providers_are_both_recorded_without_a_tick(receiver: Receiver) -> None:
    """Found in CI (e2e alerts: status listed only the last provider): each acceptance wrote a
    one-provider list when the alert had none at submit time, so the second replaced the
    first. Ticks used to repair it from memory every second; a Rollout at rest no longer
    ticks then."""
    body = notified()
    body["spec"]["notifications"]["providers"] = ["hook", "hook2"]
    h = harness(body, receiver)
    provider(h.kube, "hook2", "webhook", receiver.url + "/hook2")
    deliverer = start_operator(h)
    woken: list[tuple[str, str]] = []
    assert h.rt.notifier is not None
    h.rt.notifier.on_accepted = lambda ns, name: woken.append((ns, name))
    abort_at_5_percent(h)
    receiver.wait(2)
    deadline = time.monotonic() + 5
    while deliverer.pending() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)
    assert sorted(h.status.alerts[0].sent) == [f"{NS}/hook", f"{NS}/hook2"]
    assert woken == [(NS, NAME), (NS, NAME)]  # and the Rollout is woken to record them too


def test_a_restarted_operator_does_not_send_it_again(receiver: Receiver) -> None:
    h = harness(notified(), receiver)
    abort_at_5_percent(h)
    receiver.wait(1)
    start_operator(h)  # killed and started again: memory gone, status kept
    ticks(h, 10)
    assert len(receiver.posts) == 1


def test_killed_before_delivery_the_restart_delivers_it_once(receiver: Receiver) -> None:
    h = harness(notified(), receiver)
    receiver.code = 503  # the first operator never gets it through
    old = start_operator(h)
    abort_at_5_percent(h)
    receiver.wait(1)
    old.stop(timeout=2)  # killed
    receiver.code = 200
    refused = len(receiver.posts)
    start_operator(h)
    ticks(h, 5)
    receiver.wait(refused + 1)
    ticks(h, 5)
    assert len(receiver.posts) == refused + 1
    assert h.status.alerts[0].sent == [f"{NS}/hook"]


def test_a_receiver_down_loses_nothing_and_does_not_slow_the_rollout(receiver: Receiver) -> None:
    h = harness(notified(), receiver)
    receiver.code = 500
    abort_at_5_percent(h)
    rolled_back_in = h.status.alerts[0].at
    receiver.wait(2)
    receiver.code = 200
    deadline = time.monotonic() + 5
    while not h.status.alerts[0].sent and time.monotonic() < deadline:
        ticks(h, 1, pause=0.05)
    assert h.status.alerts[0].sent == [f"{NS}/hook"]
    assert [p["body"]["phase"] for p in receiver.posts if p["body"]["phase"]][-1] == "RolledBack"
    assert rolled_back_in is not None


def test_alertmanager_gets_routable_labels_and_the_resolution(receiver: Receiver) -> None:
    h = harness(notified(), receiver, kind="alertmanager")
    abort_at_5_percent(h)
    posts = receiver.wait(1)
    assert posts[0]["path"] == "/hook/api/v2/alerts"  # the address is Alertmanager's base URL
    alert = posts[0]["body"][0]
    assert alert["labels"]["alertname"] == "KanaryRollback"
    assert {"namespace": NS, "rollout": NAME, "severity": "critical"}.items() <= alert[
        "labels"
    ].items()
    assert alert["labels"]["reason"] == "AbortedByUser" or alert["labels"]["reason"]
    new_version(h, "v3")
    h.run_until(lambda s: s.current_step_index == 3)  # pause {}
    h.kube.annotate(NS, NAME, **{"kanary.dev/action": "promote"})
    h.run_until(lambda s: s.phase == "Healthy")
    ticks(h, 3)
    resolved = [
        p["body"][0]
        for p in receiver.wait(3)
        if p["body"][0]["labels"]["alertname"] == "KanaryRollback"
        and p["body"][0].get("endsAt", "9") <= h.now.isoformat()
    ]
    assert resolved, receiver.posts
    assert h.status.alerts[0].resolved_sent == [f"{NS}/hook"]


def test_a_missing_secret_is_a_condition_and_one_event_and_nothing_else(
    receiver: Receiver,
) -> None:
    body = notified()
    kube = FakeKube()
    kube.put(body)
    kube.put(httproute())
    provider(kube, "hook", "webhook", None, secret=False)
    h = Harness(kube)
    start_operator(h)
    h.run_until(lambda s: s.phase == "Healthy")
    alerting = next(c for c in h.status.conditions if c.type == "Alerting")
    assert alerting.status == "False"
    assert alerting.message == f"AlertProvider {NS}/hook: Secret {NS}/hook-secret not found"
    assert h.reasons().count("AlertProviderProblem") == 1
    new_version(h)
    h.run_until(lambda s: s.canary_weight == 5)  # the rollout goes on


def test_a_bad_url_names_the_secret_key(receiver: Receiver) -> None:
    kube = FakeKube()
    kube.put(notified())
    kube.put(httproute())
    provider(kube, "hook", "webhook", "htp:/nowhere")
    h = Harness(kube)
    start_operator(h)
    h.run_until(lambda s: s.phase == "Healthy")
    alerting = next(c for c in h.status.conditions if c.type == "Alerting")
    assert "key `address`: 'htp:/nowhere' is not an http(s) URL" in alerting.message


def gated(kind: str) -> dict[str, Any]:
    body = rollout(
        steps=[{"setWeight": 5}, {"setWeight": 50}],
        gates=[{"type": kind, "provider": "gate", "interval": "1s", "timeout": "1s"}],
    )
    return body


def gate_harness(receiver: Receiver, kind: str) -> Harness:
    kube = FakeKube()
    kube.put(gated(kind))
    kube.put(httproute())
    provider(kube, "gate", "webhook", receiver.url + "/gate")
    h = Harness(kube)
    start_operator(h)
    h.run_until(lambda s: s.phase == "Healthy")
    return h


def test_confirm_promotion_holds_on_500_and_promotes_on_200(receiver: Receiver) -> None:
    h = gate_harness(receiver, "confirm-promotion")
    receiver.code = 500
    new_version(h)
    h.run_until(lambda s: s.gate is not None and "HTTP 500" in s.gate.message)
    ticks(h, 10)
    assert h.status.stage == "Stepping" and split(h) == (50, 50)
    assert "waiting for gate confirm-promotion: HTTP 500" in h.status.message
    assert receiver.posts[-1]["body"]["type"] == "confirm-promotion"
    receiver.code = 200
    h.run_until(lambda s: s.phase == "Healthy")
    assert "GatePassed" in h.reasons()


def test_pre_rollout_holds_the_first_traffic(receiver: Receiver) -> None:
    h = gate_harness(receiver, "pre-rollout")
    receiver.code = 503
    new_version(h)
    h.run_until(lambda s: s.gate is not None and "HTTP 503" in s.gate.message)
    ticks(h, 5)
    assert split(h) == (100, 0)
    receiver.code = 200
    h.run_until(lambda s: s.canary_weight == 5)


def test_a_gate_that_times_out_holds(receiver: Receiver) -> None:
    h = gate_harness(receiver, "pre-rollout")
    body = h.body
    body["spec"]["strategy"]["gates"][0]["timeout"] = "200ms"
    h.kube.put(body)
    hang = threading.Event()
    original: Callable[..., Any] = receiver.server.RequestHandlerClass.do_POST  # type: ignore[attr-defined]

    def slow(handler: Any) -> None:
        hang.wait(2)
        original(handler)

    receiver.server.RequestHandlerClass.do_POST = slow  # type: ignore[attr-defined]
    new_version(h)
    h.run_until(lambda s: s.gate is not None and "timed out" in s.gate.message, limit=20)
    hang.set()
    assert split(h) == (100, 0)


def test_an_unknown_template_variable_is_invalid(receiver: Receiver) -> None:
    kube = FakeKube()
    kube.put(notified({"template": "{{rollout}} {{nope}}"}))
    kube.put(httproute())
    h = Harness(kube)
    start_operator(h)
    h.run_until(lambda s: s.phase == "Invalid")
    assert "spec.notifications.template: unknown variable {{nope}}" in h.status.message


def test_a_firing_alert_is_re_sent_to_alertmanager_before_it_expires(receiver: Receiver) -> None:
    h = harness(notified(), receiver, kind="alertmanager")
    notifier = h.rt.notifier
    assert notifier is not None
    clock = [1000.0]
    notifier.monotonic = lambda: clock[0]
    abort_at_5_percent(h)
    receiver.wait(1)
    ticks(h, 3)
    assert len(receiver.posts) == 1  # not again within the resend interval
    clock[0] += notifier.resend_seconds + 1
    ticks(h, 1)
    posts = receiver.wait(2)
    assert len(posts) == 2
    again = posts[1]["body"][0]
    assert again["labels"]["alertname"] == "KanaryRollback"
    assert again["endsAt"] > h.now.isoformat()  # still firing: it ends 4 intervals later


def test_a_provider_that_keeps_failing_is_a_condition_and_an_event(receiver: Receiver) -> None:
    h = harness(notified(), receiver)
    deliverer = Deliverer(
        lambda p, m: notifier.on_failure(p, m),
        backoff_base=0.05,
        backoff_max=0.1,
        give_up_after=0.5,
    )
    notifier = Notifier(deliverer, h.kube, h.kube.secret_data)
    h.rt.notifier = notifier
    receiver.code = 503
    abort_at_5_percent(h)
    deadline = time.monotonic() + 5
    while not notifier.failing and time.monotonic() < deadline:
        time.sleep(0.05)
    ticks(h, 2)
    alerting = next(c for c in h.status.conditions if c.type == "Alerting")
    assert alerting.status == "False", alerting
    assert alerting.message.startswith(f"{NS}/hook: gave up after"), alerting.message
    assert alerting.message.endswith("HTTP 503"), alerting.message
    assert "AlertProviderProblem" in h.reasons()
    assert h.status.alerts[0].sent == []  # given up, and said so; not recorded as sent
    receiver.code = 200  # it is queued again by the next ticks and goes through
    deadline = time.monotonic() + 5
    while not h.status.alerts[0].sent and time.monotonic() < deadline:
        ticks(h, 1, pause=0.1)
    assert h.status.alerts[0].sent == [f"{NS}/hook"]
    ticks(h, 2)
    assert next(c for c in h.status.conditions if c.type == "Alerting").status == "True"
