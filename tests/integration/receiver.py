"""A real HTTP receiver for webhooks and alert notifications, for tests in the cluster's netns.

`Receiver` is a threaded HTTP server bound to 0.0.0.0 on a given or ephemeral port. Inside the
cluster's network namespace that includes the node IP (10.243.0.1, an address of the netns), so
pods on the real node reach it at ``http://10.243.0.1:<port>/`` (`Receiver.node_url`) and
processes in the netns at ``http://127.0.0.1:<port>/`` (`Receiver.url`).

It records every POST (path, headers, body, its JSON if any, client address, time) and can be
switched while a test runs:

- ``down()``: stop listening; connecting gives "connection refused";
- ``up()``: listen again, on the same port;
- ``status(code)``: answer every request with that HTTP status (default 200).

A POST is recorded whatever status it is answered with (the sender did send it). Every
connection is closed after one request (HTTP/1.0), so ``down()`` leaves no open connection
that could still deliver a request.

The pytest fixture `receiver` (tests/integration/conftest.py) gives each test a started one and
closes it afterwards.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

NODE_IP = "10.243.0.1"  # hack/cluster/lib.sh NODE_IP: an address of the cluster's netns
MAX_BODY = 10 * 1024 * 1024


@dataclass(frozen=True)
class Request:
    """One recorded POST."""

    path: str  # with the query string, as sent
    headers: dict[str, str]  # names lower-cased; a repeated header keeps its last value
    body: bytes
    json: Any  # the body parsed as JSON, or None when it is not JSON
    client: str  # the sender's IP address
    at: float  # time.time() when the body had been read


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True  # up() again at once, whatever TIME_WAIT remains
    daemon_threads = True
    receiver: Receiver


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the tests look at Receiver.requests

    def _answer(self) -> None:
        code = self.server.receiver.code
        body = json.dumps({"status": code}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY:
            self.send_error(413)
            return
        body = self.rfile.read(length) if length else b""
        try:
            doc: Any = json.loads(body) if body else None
        except ValueError:
            doc = None
        self.server.receiver._record(
            Request(
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                json=doc,
                client=str(self.client_address[0]),
                at=time.time(),
            )
        )
        self._answer()

    def do_GET(self) -> None:  # not recorded: for a liveness check
        self._answer()


@dataclass
class Receiver:
    """See the module docstring. ``port=0`` picks an ephemeral port once; up() reuses it."""

    port: int = 0
    host: str = "0.0.0.0"
    code: int = 200
    _requests: list[Request] = field(default_factory=list, repr=False)
    _lock: threading.Condition = field(default_factory=threading.Condition, repr=False)
    _server: _Server | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ switching ---
    def up(self) -> Receiver:
        """Listen (again) on self.port; a no-op when already listening."""
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), _Handler)
        server.receiver = self
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"receiver:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def down(self) -> None:
        """Stop listening: new connections are refused until up()."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def status(self, code: int) -> None:
        """Answer every later request with this HTTP status code."""
        if not 100 <= code <= 599:
            raise ValueError(f"not an HTTP status code: {code}")
        self.code = code

    def close(self) -> None:
        self.down()

    @property
    def listening(self) -> bool:
        return self._server is not None

    # ---------------------------------------------------------------- addresses ---
    @property
    def url(self) -> str:
        """For processes in the netns (the tests themselves)."""
        return f"http://127.0.0.1:{self.port}/"

    @property
    def node_url(self) -> str:
        """For pods on the real node (and anything else in the netns)."""
        return f"http://{NODE_IP}:{self.port}/"

    # ---------------------------------------------------------------- recording ---
    def _record(self, request: Request) -> None:
        with self._lock:
            self._requests.append(request)
            self._lock.notify_all()

    @property
    def requests(self) -> list[Request]:
        """Every POST so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Request]:
        """Block until at least `count` POSTs have arrived; all of them (AssertionError on
        timeout, naming what did arrive)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    got = [(r.path, r.body[:200]) for r in self._requests]
                    raise AssertionError(
                        f"timed out after {timeout}s waiting for {count} POSTs to "
                        f"{self.url}; got {len(got)}: {got}"
                    )
                self._lock.wait(left)
            return list(self._requests)


def connection_refused(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when connecting to host:port is refused (nothing listens)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return False
    except ConnectionRefusedError:
        return True
