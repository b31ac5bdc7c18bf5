"""Kube's writes against a stub API server over HTTP (the official client, real urllib3): the
answer is parsed as plain JSON (no client model), errors still raise ApiException, and every
answer gives its connection back to the pool."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes import client as k8s

from kanary.kube import Kube

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "demo-canary", "namespace": "ns", "generation": 7},
    "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "app"}]}}},
}


class _Server(ThreadingHTTPServer):
    connections = 0
    requests: list[tuple[str, str, Any]]
    conflict = False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the API server
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1

    def log_message(self, *_: Any) -> None:
        pass

    def _answer(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _read(self) -> Any:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def do_PATCH(self) -> None:
        body = self._read()
        self.server.requests.append(("PATCH", self.path, body))
        if self.server.conflict:
            status = {"kind": "Status", "code": 409, "reason": "Conflict", "message": "changed"}
            self._answer(409, status)
        else:
            self._answer(200, DEPLOYMENT)

    def do_POST(self) -> None:
        body = self._read()
        self.server.requests.append(("POST", self.path, body))
        self._answer(201, {**body, "metadata": {**body["metadata"], "name": "demo.abc123"}})


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.requests = []
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _kube(server: _Server) -> Kube:
    config = k8s.Configuration(host=f"http://127.0.0.1:{server.server_address[1]}")
    config.connection_pool_maxsize = 1
    return Kube(api_client=k8s.ApiClient(config), identity="test")


def test_apply_returns_the_stored_object_as_json(server: _Server) -> None:
    stored = _kube(server).apply(DEPLOYMENT)
    assert stored == DEPLOYMENT  # camelCase keys, as the API server sent them
    method, path, _ = server.requests[0]
    assert (method, path.split("?")[0]) == (
        "PATCH",
        "/apis/apps/v1/namespaces/ns/deployments/demo-canary",
    )
    assert "fieldManager=kanary" in path and "force=true" in path


def test_an_event_is_named_by_the_api_servers_answer(server: _Server) -> None:
    kube = _kube(server)
    involved = {"name": "demo", "namespace": "ns", "uid": "u1"}
    now = datetime(2026, 12, 4, tzinfo=UTC)
    assert kube.post_event(involved, "Normal", "Step", "step 1/3", now) == "demo.abc123"
    kube.repeat_event("ns", "demo.abc123", 2, now)
    assert [r[0] for r in server.requests] == ["POST", "PATCH"]


def test_a_refused_write_still_raises_with_its_status(server: _Server) -> None:
    server.conflict = True
    with pytest.raises(k8s.exceptions.ApiException) as refused:
        _kube(server).apply(DEPLOYMENT)
    assert refused.value.status == 409


def test_every_answer_gives_its_connection_back(server: _Server) -> None:
    kube = _kube(server)
    for _ in range(5):
        kube.apply(DEPLOYMENT)
        kube.scale("ns", "demo-stable", 0)
    server.conflict = True
    for _ in range(3):
        with pytest.raises(k8s.exceptions.ApiException):
            kube.scale("ns", "demo-stable", 1)
    assert len(server.requests) == 13
    assert server.connections == 1
