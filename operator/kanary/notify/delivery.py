"""Sending notifications without blocking a tick (I/O, thin).

A ``Deliverer`` holds a bounded queue and one daemon worker thread. ``submit`` never blocks;
the worker POSTs each item, retries transient failures later with exponential backoff (urllib3's
``Retry`` decides which statuses are retried and how long to wait) and gives up after a total
time. ``call_gate`` is the synchronous POST for gates.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import itertools
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from http.client import RemoteDisconnected
from typing import Any
from urllib.parse import urlsplit

import requests
from prometheus_client import Counter, Gauge
from urllib3.exceptions import InvalidHeader, MaxRetryError
from urllib3.util.retry import Retry

from kanary.notify.model import Target

log = logging.getLogger("kanary")

NOTIFICATIONS = Counter(
    "kanary_notifications_total",
    "Notification deliveries by provider type and result (sent, retry, failed, dropped)",
    ["provider", "result"],
)
QUEUED = Gauge("kanary_notifications_queued", "Notifications accepted and not yet sent or failed")

# Retried: 408, 429 and every 5xx (plus connection errors and timeouts).
RETRY_STATUSES = frozenset({408, 429, *range(500, 600)})
_MESSAGE_BODY_MAX = 200


@dataclass(frozen=True)
class Delivery:
    """One POST to make: where, what, and how to recognise it again."""

    target: Target
    body: Any  # the JSON document (a dict, or a list for Alertmanager)
    key: Hashable  # e.g. (rollout uid, alert key, target name, "firing" | "resolved")
    on_delivered: Callable[[], None] | None = None


@dataclass(order=True)
class _Pending:
    due: float
    seq: int
    item: Delivery = field(compare=False)
    deadline: float = field(compare=False)
    started: float = field(compare=False)
    retry: Retry = field(compare=False)
    attempts: int = field(default=0, compare=False)
    done: bool = field(default=False, compare=False)


class Deliverer:
    """A bounded queue and one worker thread that delivers, retries and gives up.

    ``maxsize`` bounds the items accepted and not yet finished (waiting, retrying or in
    flight). Retries wait ``backoff_base`` seconds, then urllib3's exponential backoff
    (``backoff_base * 2**n``) capped at ``backoff_max``, or longer when a Retry-After header
    asks (up to the cap). An item is given up ``give_up_after`` seconds after it was submitted
    or after ``max_attempts`` attempts. While a target is failing, its other items wait for
    its next retry instead of each trying (and timing out) in turn.
    """

    def __init__(
        self,
        on_failure: Callable[[str, str], None] | None = None,
        *,
        maxsize: int = 1000,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        give_up_after: float = 600.0,
        max_attempts: int | None = None,
    ) -> None:
        self._on_failure = on_failure
        self._maxsize = maxsize
        self._base = backoff_base
        self._give_up_after = give_up_after
        self._policy = Retry(
            total=None if max_attempts is None else max_attempts - 1,
            allowed_methods=None,  # POST is retried too
            status_forcelist=RETRY_STATUSES,
            backoff_factor=backoff_base,
            backoff_max=backoff_max,
            respect_retry_after_header=True,
            retry_after_max=int(backoff_max),
        )
        self._cond = threading.Condition()
        self._heap: list[_Pending] = []
        self._keys: set[Hashable] = set()  # waiting, retrying or in flight
        self._seq = itertools.count()
        self._stopping = False
        # target name -> (its failing item's next try, what went wrong)
        self._blocked: dict[str, tuple[float, str]] = {}
        self._session = requests.Session()
        self._thread = threading.Thread(target=self._run, name="kanary-notify", daemon=True)
        self._thread.start()

    def submit(self, item: Delivery) -> bool:
        """Queue an item; never blocks. False when the queue is full (the item is dropped).

        An item whose key is already waiting or in flight is not queued again (True: it is on
        its way).
        """
        with self._cond:
            if item.key in self._keys:
                return True
            if self._stopping or len(self._keys) >= self._maxsize:
                NOTIFICATIONS.labels(item.target.type, "dropped").inc()
                return False
            now = time.monotonic()
            self._keys.add(item.key)
            self._push(
                _Pending(
                    due=now,
                    seq=0,
                    item=item,
                    deadline=now + self._give_up_after,
                    started=now,
                    retry=self._policy,
                )
            )
            QUEUED.inc()
            self._cond.notify()
        return True

    def pending(self) -> int:
        """Items accepted and not yet finished."""
        with self._cond:
            return len(self._keys)

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the worker (after its current attempt) and drop what waits; True if it ended."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            return False
        self._session.close()
        return True

    # The worker.

    def _run(self) -> None:
        while True:
            pending = self._next_due()
            if pending is None:
                return
            try:
                self._handle(pending)
            except Exception as exc:  # a bug must not end the worker
                log.exception("notification to %s failed", pending.item.target.name)
                if not pending.done:
                    self._fail(pending, _one_line(f"internal error: {type(exc).__name__}: {exc}"))

    def _next_due(self) -> _Pending | None:
        with self._cond:
            while not self._stopping:
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0].due - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                return heapq.heappop(self._heap)
            QUEUED.dec(len(self._heap))
            for dropped in self._heap:
                self._keys.discard(dropped.item.key)
            self._heap.clear()
            return None

    def _push(self, pending: _Pending) -> None:
        """Queue (or re-queue) an item; the caller holds the lock."""
        pending.seq = next(self._seq)
        heapq.heappush(self._heap, pending)

    def _handle(self, pending: _Pending) -> None:
        target = pending.item.target
        now = time.monotonic()
        blocked_until, why = self._blocked.get(target.name, (0.0, ""))
        if blocked_until > now:  # the target is failing: wait for its next retry
            if blocked_until > pending.deadline:
                self._fail(pending, f"gave up after {now - pending.started:.0f}s: {why}")
                return
            pending.due = blocked_until
            with self._cond:
                self._push(pending)
            return
        pending.attempts += 1
        try:
            response = self._session.post(
                target.url,
                json=pending.item.body,
                headers=_headers(target),
                timeout=target.timeout_seconds,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            message = describe_error(exc, target)
            if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
                self._retry_later(pending, message, None)
            else:
                self._fail(pending, message)
            return
        with response:
            status = response.status_code
            if 200 <= status < 300:
                self._blocked.pop(target.name, None)
                self._deliver(pending)
                return
            message = http_message(response)
            retry_after = response.headers.get("Retry-After")
            if pending.retry.is_retry("POST", status, retry_after is not None):
                self._retry_later(pending, message, retry_after)
                return
            self._blocked.pop(target.name, None)  # it answered: the target is up
            self._fail(pending, message)

    def _retry_later(self, pending: _Pending, message: str, retry_after: str | None) -> None:
        target = pending.item.target
        given_up = f"gave up after {pending.attempts} attempts"
        try:
            pending.retry = pending.retry.increment(method="POST", url=target.url)
        except MaxRetryError:
            self._fail(pending, f"{given_up}: {message}")
            return
        # urllib3 retries the first time at once; we wait the base delay.
        delay = max(self._base, pending.retry.get_backoff_time())
        if retry_after is not None:
            with contextlib.suppress(InvalidHeader):  # an unreadable Retry-After is ignored
                delay = max(delay, pending.retry.parse_retry_after(retry_after))
        now = time.monotonic()
        if now + delay > pending.deadline:
            self._fail(pending, f"{given_up} in {now - pending.started:.0f}s: {message}")
            return
        log.info("notification to %s: %s; retrying in %.1fs", target.name, message, delay)
        NOTIFICATIONS.labels(target.type, "retry").inc()
        pending.due = now + delay
        self._blocked[target.name] = (pending.due, message)
        with self._cond:
            self._push(pending)

    def _deliver(self, pending: _Pending) -> None:
        """The acceptance is recorded (on_delivered) before the key is freed: a tick in
        between would otherwise find it neither in flight nor accepted and send it again."""
        callback = pending.item.on_delivered
        if callback is not None:
            try:
                callback()
            except Exception:
                log.exception("on_delivered for %s failed", pending.item.target.name)
        self._finish(pending, "sent")

    def _fail(self, pending: _Pending, message: str) -> None:
        target = pending.item.target
        log.warning("notification to %s failed: %s", target.name, message)
        self._finish(pending, "failed")
        if self._on_failure is not None:
            try:
                self._on_failure(target.name, message)
            except Exception:
                log.exception("on_failure for %s failed", target.name)

    def _finish(self, pending: _Pending, result: str) -> None:
        pending.done = True
        NOTIFICATIONS.labels(pending.item.target.type, result).inc()
        with self._cond:
            self._keys.discard(pending.item.key)
            QUEUED.dec()


def call_gate(target: Target, body: dict[str, Any]) -> tuple[bool, str]:
    """POST a gate call and wait: (True, "HTTP 200") on 2xx, else (False, a one-line reason)."""
    try:
        response = requests.post(
            target.url,
            json=body,
            headers=_headers(target),
            timeout=target.timeout_seconds,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        return False, describe_error(exc, target)
    except Exception as exc:
        return False, _one_line(f"request failed: {type(exc).__name__}: {exc}")
    with response:
        if 200 <= response.status_code < 300:
            return True, f"HTTP {response.status_code}"
        return False, http_message(response)


def http_message(response: requests.Response) -> str:
    """ "HTTP 500: <the body's first 200 characters, on one line>" (or just "HTTP 500")."""
    text = _one_line(response.text)[:_MESSAGE_BODY_MAX]
    return f"HTTP {response.status_code}: {text}" if text else f"HTTP {response.status_code}"


def describe_error(exc: requests.RequestException, target: Target) -> str:
    """One line for a failed request: "timed out after 5s", "connection refused (host:port)"..."""
    if isinstance(exc, requests.Timeout):
        return f"timed out after {target.timeout_seconds:g}s"
    address = _address(target.url)
    causes = _causes(exc)
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return f"connection refused ({address})"
    if any(isinstance(c, socket.gaierror) for c in causes):
        return f"cannot resolve {urlsplit(target.url).hostname}"
    if any(isinstance(c, (RemoteDisconnected, ConnectionResetError)) for c in causes):
        return f"connection closed by {address} without a response"
    if any(isinstance(c, ssl.SSLError) for c in causes):
        return f"TLS error with {address}: {_one_line(str(causes[-1]))[:_MESSAGE_BODY_MAX]}"
    oserror = next((c for c in causes if isinstance(c, OSError) and c.errno), None)
    if oserror is not None and oserror.errno is not None:
        reason = errno.errorcode.get(oserror.errno, str(oserror.errno))
        return f"connection failed ({address}): {reason}"
    if isinstance(exc, requests.ConnectionError):
        return f"connection failed ({address})"
    return _one_line(f"{type(exc).__name__}: {exc}")[:_MESSAGE_BODY_MAX]


def _headers(target: Target) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if target.token:
        headers["Authorization"] = f"Bearer {target.token}"
    return headers


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and everything it wraps (args, urllib3's reason, cause, context)."""
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        linked.extend(current.args)
        todo.extend(x for x in linked if isinstance(x, BaseException))
    return seen


def _address(url: str) -> str:
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # a port out of range
        return parts.netloc
    return f"{parts.hostname}:{port}" if parts.hostname else url


def _one_line(text: str) -> str:
    return " ".join(text.split())
