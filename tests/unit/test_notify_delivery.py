"""The delivery worker and gate calls against a real local HTTP server that can answer an error,
hang, or be down (its socket closed)."""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from prometheus_client import REGISTRY
from urllib3.exceptions import MaxRetryError

from kanary.notify.delivery import Deliverer, Delivery, call_gate, describe_error
from kanary.notify.model import ProviderType, Target

FAST: dict[str, Any] = {"backoff_base": 0.05, "backoff_max": 0.2}


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Received:
    receiver: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float


class Receiver:
    """An HTTP server on 127.0.0.1: answers the scripted replies in turn, then ``default``;
    hangs while ``hanging`` is set; ``down()`` closes its socket, ``up()`` reopens the port."""

    def __init__(self, name: str, log: list[Received]) -> None:
        self.name = name
        self.log = log  # shared by every receiver of a test: the order across them
        self.script: list[Reply] = []
        self.default = Reply()
        self.hanging = False
        self.release = threading.Event()
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    @property
    def requests(self) -> list[Received]:
        with self._lock:
            return [r for r in self.log if r.receiver == self.name]

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(size) or b"null")
                with receiver._lock:
                    receiver.log.append(
                        Received(
                            receiver.name, self.path, dict(self.headers), body, time.monotonic()
                        )
                    )
                    reply = receiver.script.pop(0) if receiver.script else receiver.default
                    hang = receiver.hanging
                if hang:
                    receiver.release.wait(10)
                data = reply.body.encode()
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        server = self._server
        threading.Thread(target=lambda: server.serve_forever(0.01), daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def target(self, type: ProviderType = "webhook", **kw: Any) -> Target:
        return Target(name=f"kanary/{self.name}", type=type, url=self.url, **kw)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def log() -> list[Received]:
    return []


@pytest.fixture
def receivers(log: list[Received]) -> Iterator[Callable[[str], Receiver]]:
    made: list[Receiver] = []

    def make(name: str) -> Receiver:
        made.append(Receiver(name, log))
        return made[-1]

    yield make
    for r in made:
        r.release.set()
        r.down()


@dataclass
class Calls:
    delivered: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)

    def on_failure(self, target: str, message: str) -> None:
        self.failures.append((target, message))

    def item(self, target: Target, key: str, body: Any = None) -> Delivery:
        body = {"key": key} if body is None else body
        return Delivery(target, body, key, lambda: self.delivered.append(key))


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def deliverers(calls: Calls) -> Iterator[Callable[..., Deliverer]]:
    made: list[Deliverer] = []

    def make(**kw: Any) -> Deliverer:
        made.append(Deliverer(calls.on_failure, **{**FAST, **kw}))
        return made[-1]

    yield make
    for d in made:
        d.stop(2)


def wait_for(condition: Callable[[], object], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting")
        time.sleep(0.005)


def counted(provider: str, result: str) -> float:
    value = REGISTRY.get_sample_value(
        "kanary_notifications_total", {"provider": provider, "result": result}
    )
    return value or 0.0


def queued() -> float:
    return REGISTRY.get_sample_value("kanary_notifications_queued") or 0.0


# Deliveries.


def test_posts_the_json_with_token_and_content_type(
    receivers: Callable[[str], Receiver], deliverers: Callable[..., Deliverer], calls: Calls
) -> None:
    rx = receivers("a")
    deliverer = deliverers()
    sent = counted("alertmanager", "sent")
    body = [{"labels": {"alertname": "KanaryRollback"}}]
    target = rx.target("alertmanager", token="s3cret")
    assert deliverer.submit(calls.item(target, "k1", body))
    wait_for(lambda: calls.delivered)
    [request] = rx.requests
    assert request.path == "/hook"
    assert request.body == body
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Authorization"] == "Bearer s3cret"
    assert calls.delivered == ["k1"]
    assert counted("alertmanager", "sent") == sent + 1
    assert calls.failures == []


def test_no_authorization_header_without_a_token(
    receivers: Callable[[str], Receiver], deliverers: Callable[..., Deliverer], calls: Calls
) -> None:
    rx = receivers("a")
    deliverers().submit(calls.item(rx.target(), "k1"))
    wait_for(lambda: calls.delivered)
    assert "Authorization" not in rx.requests[0].headers


def test_a_receiver_down_then_back_gets_the_item_exactly_once(
    receivers: Callable[[str], Receiver], deliverers: Callable[..., Deliverer], calls: Calls
) -> None:
    rx = receivers("a")
    rx.down()
    deliverer = deliverers()
    retries = counted("webhook", "retry")
    assert deliverer.submit(calls.item(rx.target(), "k1"))
    wait_for(lambda: counted("webhook", "retry") >= retries + 2)  # refused, retried
    assert rx.requests == []
    rx.up()
    wait_for(lambda: calls.delivered)
    wait_for(lambda: deliverer.pending() == 0)
    time.sleep(0.3)  # more than the backoff cap: nothing is sent again
    assert len(rx.requests) == 1
    assert calls.delivered == ["k1"]
    assert calls.failures == []


def test_a_5xx_is_retried_with_backoff_until_it_succeeds(
    receivers: Callable[[str], Receiver], deliverers: Callable[..., Deliverer], calls: Calls
) -> None:
    rx = receivers("a")
    rx.script = [Reply(500), Reply(503), Reply(502)]
    deliverer = deliverers(backoff_base=0.05, backoff_max=1.0)
    retries, sent = counted("slack", "retry"), counted("slack", "sent")
    deliverer.submit(calls.item(rx.target("slack"), "k1"))
    wait_for(lambda: calls.delivered)
    times = [r.at for r in rx.requests]
    assert len(times) == 4
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # 0.05 s, then urllib3's backoff_base * 2**n: 0.1 s, 0.2 s.
    assert gaps[0] >= 0.045 and gaps[1] >= 0.09 and gaps[2] >= 0.18
    assert counted("slack", "retry") == retries + 3
    assert counted("slack", "sent") == sent + 1


@pytest.mark.parametrize("status", [408, 429, 500, 504])
def test_retried_statuses(
    status: int,
    receivers: Callable[[str], Receiver],
    deliverers: Callable[..., Deliverer],
    calls: Calls,
) -> None:
    rx = receivers("a")
    rx.script = [Reply(status)]
    deliverers().submit(calls.item(rx.target(), "k1"))
    wait_for(lambda: calls.delivered)
    assert len(rx.requests) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_4xx_fail_at_once(
    status: int,
    receivers: Callable[[str], Receiver],
    deliverers: Callable[..., Deliverer],
    calls: Calls,
) -> None:
    rx = receivers("a")
    rx.script = [Reply(status, "no such\nchannel")]
    deliverer = deliverers()
    failed, retries = counted("webhook", "failed"), counted("webhook", "retry")
    deliverer.submit(calls.item(rx.target(), "k1"))
    wait_for(lambda: calls.failures)
    assert calls.failures == [("kanary/a", f"HTTP {status}: no such channel")]
    wait_for(lambda: deliverer.pending() == 0)
    time.sleep(0.3)
    assert len(rx.requests) == 1
    assert calls.delivered == []
    assert counted("webhook", "failed") == failed + 1
    assert counted("webhook", "retry") == retries


def test_gives_up_after_max_attempts(
    receivers: Callable[[str], Receiver], deliverers: Callable[..., Deliverer], calls: Calls
) -> None:
    rx = receivers("a")
    rx.default = Reply(500, "boom")
    deliverer = deliverers(max_attempts=3)
    failed = counted("msteams", "failed")
    deliverer.submit(calls.item(rx.target("msteams"), "k1"))
    wait_for(lambda: calls.failures)
    assert calls.failures == [("kanary/a", "gave up after 3 attempts: HTTP 500: boom")]
    assert len(rx.requests) == 3
    assert counted("msteams", "failed") == failed + 1
    assert deliverer.pending() == 0


def test_gives_up_after_the_total_time(
    receivers: Callable[[str], Receiver], deliverers: Callable[..., Deliverer], calls: Calls
) -> None:
    rx = receivers("a")
    rx.down()
    deliverer = deliverers(give_up_after=0.4)
    started = time.monotonic()
    deliverer.submit(calls.item(rx.target(), "k1"))
    wait_for(lambda: calls.failures)
    assert time.monotonic() - started < 2
    [(name, message)] = calls.failures
    assert name == "kanary/a"
    assert message.startswith("gave up after ")
    assert message.endswith(f": connection refused (127.0.0.1:{rx.port})")
    assert calls.delivered == []


def test_retry_after_is_honoured(
    receivers: Callable[[str], Receiver], deliverers: Callable[..., Deliverer], calls: Calls
) -> None:
    rx = receivers("a")
    rx.script = [Reply(429, "slow down", {"Retry-After": "1"})]
    deliverers(backoff_base=0.05, backoff_max=5.0).submit(calls.item(rx.target(), "k1"))
    wait_for(lambda: calls.delivered)
    first, second = (r.at for r in rx.requests)
    assert second - first >= 0.95


def test_submit_never_blocks_and_drops_when_full(
    receivers: Callable[[str], Receiver], deliverers: Callable[..., Deliverer], calls: Calls
) -> None:
    rx = receivers("a")
    rx.hanging = True
    deliverer = deliverers(maxsize=2)
    target = rx.target(timeout_seconds=10)
    assert deliverer.submit(calls.item(target, "in-flight"))
    wait_for(lambda: rx.requests)  # the worker is stuck on it
    assert deliverer.submit(calls.item(target, "waiting"))
    dropped = counted("webhook", "dropped")
    results: list[bool] = []
    durations: list[float] = []

    def submit_more() -> None:
        for key in ("over-1", "over-2", "in-flight"):
            started = time.monotonic()
            results.append(deliverer.submit(calls.item(target, key)))
            durations.append(time.monotonic() - started)

    thread = threading.Thread(target=submit_more, daemon=True)
    thread.start()
    thread.join(2)
    assert not thread.is_alive(), "submit blocked"
    # Full: new keys are dropped; a key already on its way is still "on its way".
    assert results == [False, False, True]
    assert counted("webhook", "dropped") == dropped + 2
    print(f"submit took at most {max(durations) * 1000:.2f} ms")
    rx.release.set()
    wait_for(lambda: len(calls.delivered) == 2)
    assert sorted(calls.delivered) == ["in-flight", "waiting"]
    assert [r.body["key"] for r in rx.requests] == ["in-flight", "waiting"]


def test_a_key_already_waiting_or_in_flight_is_not_queued_twice(
    receivers: Callable[[str], Receiver], deliverers: Callable[..., Deliverer], calls: Calls
) -> None:
    rx = receivers("a")
    rx.hanging = True
    deliverer = deliverers()
    target = rx.target(timeout_seconds=10)
    assert deliverer.submit(calls.item(target, "first"))
    wait_for(lambda: rx.requests)
    assert deliverer.submit(calls.item(target, "first", {"key": "first", "copy": 2}))  # in flight
    assert deliverer.submit(calls.item(target, "second"))
    assert deliverer.submit(calls.item(target, "second", {"key": "second", "copy": 2}))  # waiting
    assert deliverer.pending() == 2
    rx.release.set()
    wait_for(lambda: deliverer.pending() == 0)
    time.sleep(0.1)
    assert [r.body for r in rx.requests] == [{"key": "first"}, {"key": "second"}]
    # Once delivered the key is free again: a later submit is sent.
    rx.hanging = False
    assert deliverer.submit(calls.item(target, "first", {"key": "first", "copy": 3}))
    wait_for(lambda: len(rx.requests) == 3)
    assert rx.requests[-1].body == {"key": "first", "copy": 3}


def test_the_key_stays_in_flight_until_the_delivery_is_recorded(
    receivers: Callable[[str], Receiver], deliverers: Callable[..., Deliverer], calls: Calls
) -> None:
    """Found in CI (e2e alerts: the webhook got the alert twice): the key was freed before
    on_delivered recorded the acceptance, so a tick in between submitted it again. A submit
    from inside on_delivered stands for that tick."""
    rx = receivers("a")
    deliverer = deliverers()
    target = rx.target()
    resubmitted: list[bool] = []

    def recorded() -> None:
        resubmitted.append(deliverer.submit(calls.item(target, "k", {"key": "k", "copy": 2})))
        calls.delivered.append("k")

    assert deliverer.submit(Delivery(target, {"key": "k"}, "k", recorded))
    wait_for(lambda: calls.delivered)
    wait_for(lambda: deliverer.pending() == 0)
    time.sleep(0.2)
    assert [r.body for r in rx.requests] == [{"key": "k"}], "sent twice"
    assert resubmitted == [True]


def test_a_failing_target_does_not_delay_another_targets_item(
    receivers: Callable[[str], Receiver],
    deliverers: Callable[..., Deliverer],
    calls: Calls,
    log: list[Received],
) -> None:
    failing, healthy = receivers("failing"), receivers("healthy")
    failing.default = Reply(500)
    deliverer = deliverers(backoff_base=0.3, backoff_max=1.0)
    deliverer.submit(calls.item(failing.target(), "f1"))
    wait_for(lambda: failing.requests)
    deliverer.submit(calls.item(healthy.target(), "h1"))
    wait_for(lambda: len(failing.requests) >= 2)
    assert calls.delivered == ["h1"]
    # The healthy target's item went while the failing one waited for its retry.
    assert [r.receiver for r in log][:3] == ["failing", "healthy", "failing"]


def test_a_hanging_target_tries_one_item_while_the_others_wait(
    receivers: Callable[[str], Receiver],
    deliverers: Callable[..., Deliverer],
    calls: Calls,
    log: list[Received],
) -> None:
    hanging, healthy = receivers("hanging"), receivers("healthy")
    hanging.hanging = True
    deliverer = deliverers(backoff_base=1.0, backoff_max=1.0)
    slow = hanging.target(timeout_seconds=0.3)
    for key in ("s1", "s2", "s3", "s4"):
        deliverer.submit(calls.item(slow, key))
    deliverer.submit(calls.item(healthy.target(), "h1"))
    wait_for(lambda: calls.delivered)
    assert calls.delivered == ["h1"]
    # One timed-out attempt, not one per item, before the healthy target's turn.
    assert [r.receiver for r in log] == ["hanging", "healthy"]


def test_queued_gauge_follows_the_items(
    receivers: Callable[[str], Receiver], deliverers: Callable[..., Deliverer], calls: Calls
) -> None:
    rx = receivers("a")
    rx.hanging = True
    deliverer = deliverers()
    base = queued()
    target = rx.target(timeout_seconds=10)
    deliverer.submit(calls.item(target, "k1"))
    deliverer.submit(calls.item(target, "k2"))
    assert queued() == base + 2
    rx.release.set()
    wait_for(lambda: len(calls.delivered) == 2)
    assert queued() == base


def test_a_raising_callback_does_not_stop_the_worker(
    receivers: Callable[[str], Receiver], deliverers: Callable[..., Deliverer], calls: Calls
) -> None:
    rx = receivers("a")
    deliverer = deliverers()

    def boom() -> None:
        raise RuntimeError("callback bug")

    base, sent = queued(), counted("webhook", "sent")
    deliverer.submit(Delivery(rx.target(), {"n": 1}, "k1", boom))
    deliverer.submit(calls.item(rx.target(), "k2"))
    wait_for(lambda: calls.delivered)
    assert calls.delivered == ["k2"]
    assert calls.failures == []  # k1 was delivered: its callback's bug is only logged
    assert counted("webhook", "sent") == sent + 2
    assert queued() == base


def test_stop_ends_the_worker_and_refuses_more(
    receivers: Callable[[str], Receiver], calls: Calls
) -> None:
    rx = receivers("a")
    deliverer = Deliverer(calls.on_failure, **FAST)
    assert deliverer.stop(2)
    assert not deliverer.submit(calls.item(rx.target(), "k1"))
    time.sleep(0.1)
    assert rx.requests == []


# Gates.


def test_gate_2xx(receivers: Callable[[str], Receiver]) -> None:
    rx = receivers("gate")
    rx.default = Reply(202, "Approved")
    body = {"name": "gin-demo", "namespace": "demo", "phase": "Progressing", "checksum": "x"}
    assert call_gate(rx.target(token="t"), body) == (True, "HTTP 202")
    [request] = rx.requests
    assert request.body == body
    assert request.headers["Authorization"] == "Bearer t"
    assert request.headers["Content-Type"] == "application/json"


def test_gate_non_2xx_gives_the_status_and_the_body_start_on_one_line(
    receivers: Callable[[str], Receiver],
) -> None:
    rx = receivers("gate")
    rx.default = Reply(500, "line one\nline two " + "x" * 300)
    ok, message = call_gate(rx.target(), {})
    assert not ok
    assert message == "HTTP 500: " + ("line one line two " + "x" * 300)[:200]
    rx.default = Reply(403, "")
    assert call_gate(rx.target(), {}) == (False, "HTTP 403")


def test_gate_timeout(receivers: Callable[[str], Receiver]) -> None:
    rx = receivers("gate")
    rx.hanging = True
    assert call_gate(rx.target(timeout_seconds=0.2), {}) == (False, "timed out after 0.2s")


def test_gate_connection_refused(receivers: Callable[[str], Receiver]) -> None:
    rx = receivers("gate")
    rx.down()
    ok, message = call_gate(rx.target(), {})
    assert not ok
    assert message == f"connection refused (127.0.0.1:{rx.port})"


def test_describe_error_names_the_cause_on_one_line() -> None:
    target = Target("kanary/gate", "webhook", "https://hooks.example.com/x")
    cases: list[tuple[Exception, str]] = [
        (socket.gaierror(-2, "Name or service not known"), "cannot resolve hooks.example.com"),
        (
            ConnectionResetError(104, "reset"),
            "connection closed by hooks.example.com:443 without a response",
        ),
        (ConnectionRefusedError(111, "refused"), "connection refused (hooks.example.com:443)"),
    ]
    for cause, expected in cases:
        exc = requests.ConnectionError(MaxRetryError(None, "/x", cause))  # type: ignore[arg-type]
        assert describe_error(exc, target) == expected
    assert describe_error(requests.ConnectTimeout("x"), target) == "timed out after 5s"


def test_gate_bad_url_is_one_line() -> None:
    ok, message = call_gate(Target("kanary/gate", "webhook", "hooks.example.com/x"), {})
    assert not ok
    assert message.startswith("MissingSchema: Invalid URL 'hooks.example.com/x'")
    assert "\n" not in message
