"""PrometheusSource result typing: a real HTTP round trip through prometheus-api-client to a
tiny server on 127.0.0.1 that answers like Prometheus' /api/v1/query."""

from __future__ import annotations

import contextlib
import json
import math
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from kanary.analysis.endpoints import PrometheusNotAllowed, PrometheusPolicy
from kanary.analysis.source import (
    ManySeries,
    NoData,
    NotFinite,
    PrometheusSource,
    QueryError,
    Value,
    classify,
)
from kanary.spec import PrometheusSpec

AT = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


def vector(*values: str) -> dict[str, Any]:
    return {
        "resultType": "vector",
        "result": [
            {"metric": {"pod": f"p{i}"}, "value": [AT.timestamp(), v]} for i, v in enumerate(values)
        ],
    }


def error(kind: str, message: str) -> dict[str, Any]:
    return {"status": "error", "errorType": kind, "error": message}


SECRET = "s3cr3t-internal-token"  # what the server sends that must never reach a status

# query text -> (HTTP status, body); a dict body is sent as JSON, "data" wrapped in success
ANSWERS: dict[str, tuple[int, Any]] = {
    "ok": (200, vector("0.125")),
    "empty": (200, vector()),
    "nan": (200, vector("NaN")),
    "inf": (200, vector("+Inf")),
    "many": (200, vector("1", "2", "3")),
    "scalar": (200, {"resultType": "scalar", "result": [AT.timestamp(), "42"]}),
    "matrix": (
        200,
        {"resultType": "matrix", "result": [{"metric": {}, "values": [[AT.timestamp(), "1"]]}]},
    ),
    "bad": (400, error("bad_data", '1:5: parse error: unexpected "}"')),
    "exec": (422, error("execution", "many-to-many matching not allowed")),
    "boom": (500, error("internal", "storage is on fire")),
    "gateway": (502, f"<html><h1>Bad Gateway</h1><p>upstream {SECRET} failed</p></html>"),
    "garbage": (200, f"this is not json {SECRET}"),
    "long": (422, error("execution", "x" * 5000)),
    "lines": (400, error("bad_data", "parse error:\nunexpected\r\n  end")),
    "teapot-json": (500, {"error": SECRET, "status": "oops"}),  # JSON, not Prometheus' shape
    "proxy-400": (400, f"<html>denied {SECRET}</html>"),
    "odd-status": (599, SECRET),
    "deep": (500, "[" * 100_000),
    "deep-200": (200, "[" * 100_000),
    "wrong-data": (200, {"status": "success", "data": {"result": SECRET}}),
}


class Handler(BaseHTTPRequestHandler):
    seen: list[dict[str, list[str]]]

    def do_GET(self) -> None:
        url = urlparse(self.path)
        params = parse_qs(url.query)
        self.server.seen.append(params)  # type: ignore[attr-defined]
        query = params.get("query", [""])[0]
        if url.path != "/api/v1/query":
            self._send(404, "not found")
        elif query == "close":  # read the request, then hang up without an answer
            self.close_connection = True
        elif query == "slow":
            time.sleep(1.5)
            self._send(200, vector("1"))
        else:
            self._send(*ANSWERS[query])

    def _send(self, status: int, body: Any) -> None:
        if isinstance(body, dict) and "resultType" in body:
            body = {"status": "success", "data": body}
        raw = (json.dumps(body) if isinstance(body, dict) else body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # client gave up
            self.wfile.write(raw)

    def log_message(self, *args: Any) -> None:
        pass


class FakePrometheus(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # listen() backlog: the default 5 drops some of 8 threads' connects

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.seen: list[dict[str, list[str]]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture(scope="module")
def server() -> Iterator[FakePrometheus]:
    srv = FakePrometheus()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


@pytest.fixture()
def source(server: FakePrometheus) -> Iterator[PrometheusSource]:
    with PrometheusSource(server.url, timeout_seconds=0.5) as src:
        yield src


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("ok", Value(0.125)),
        ("empty", NoData()),
        ("many", ManySeries(3, '{pod="p0"}')),
        ("scalar", Value(42.0)),
    ],
)
def test_answers_become_typed_results(source: PrometheusSource, query: str, expected: Any) -> None:
    assert source.query(query, AT) == expected


def test_nan_and_inf_are_not_finite(source: PrometheusSource) -> None:
    nan, inf = source.query("nan", AT), source.query("inf", AT)
    assert isinstance(nan, NotFinite) and math.isnan(nan.value)
    assert inf == NotFinite(math.inf)


@pytest.mark.parametrize(
    ("query", "kind", "detail"),
    [
        ("matrix", "bad-query", "a range vector (matrix) answer"),
        ("bad", "bad-query", 'HTTP 400: bad_data: 1:5: parse error: unexpected "}"'),
        ("exec", "bad-query", "HTTP 422: execution: many-to-many matching not allowed"),
        ("boom", "http", "HTTP 500: internal: storage is on fire"),
        ("gateway", "http", "HTTP 502 Bad Gateway"),
        ("garbage", "http", "malformed answer from http://127.0.0.1:"),
    ],
)
def test_errors_are_typed(source: PrometheusSource, query: str, kind: str, detail: str) -> None:
    got = source.query(query, AT)
    assert isinstance(got, QueryError)
    assert got.kind == kind
    assert got.detail.startswith(detail), got.detail


# What goes into status: Prometheus' own error string, else the status line, never the body.
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("gateway", QueryError("http", "HTTP 502 Bad Gateway")),
        ("proxy-400", QueryError("http", "HTTP 400 Bad Request")),
        ("teapot-json", QueryError("http", "HTTP 500 Internal Server Error")),
        ("odd-status", QueryError("http", "HTTP 599")),
        ("deep", QueryError("http", "HTTP 500 Internal Server Error")),
        ("lines", QueryError("bad-query", "HTTP 400: bad_data: parse error: unexpected end")),
    ],
)
def test_only_the_status_line_or_prometheus_error_reaches_the_detail(
    source: PrometheusSource, query: str, expected: QueryError
) -> None:
    assert source.query(query, AT) == expected


@pytest.mark.parametrize(
    "query", ["gateway", "garbage", "teapot-json", "proxy-400", "odd-status", "wrong-data"]
)
def test_the_body_never_reaches_the_detail(source: PrometheusSource, query: str) -> None:
    got = source.query(query, AT)
    assert isinstance(got, QueryError), got
    assert SECRET not in got.detail and "<html>" not in got.detail, got.detail


def test_a_long_prometheus_error_is_bounded(source: PrometheusSource) -> None:
    got = source.query("long", AT)
    assert isinstance(got, QueryError) and got.kind == "bad-query"
    assert got.detail.startswith("HTTP 422: execution: xxx"), got.detail
    assert got.detail.endswith("...") and len(got.detail) <= len("HTTP 422: ") + 200


def test_a_deeply_nested_200_is_malformed_not_a_crash(source: PrometheusSource) -> None:
    got = source.query("deep-200", AT)
    assert isinstance(got, QueryError) and got.detail.startswith("malformed answer"), got


def test_a_connection_closed_without_an_answer_is_one_short_line(
    server: FakePrometheus, source: PrometheusSource
) -> None:
    got = source.query("close", AT)
    assert got == QueryError(
        "unreachable", f"cannot reach {server.url}: connection closed without an answer"
    )


def test_credentials_in_the_url_are_not_shown() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with PrometheusSource(f"http://admin:hunter2@127.0.0.1:{port}", timeout_seconds=1) as src:
        got = src.query("ok", AT)
    assert got == QueryError(
        "unreachable", f"cannot reach http://127.0.0.1:{port}: Connection refused"
    )


def test_query_is_evaluated_at_the_given_instant_with_a_server_timeout(
    server: FakePrometheus, source: PrometheusSource
) -> None:
    server.seen.clear()
    source.query("ok", AT)
    assert server.seen[-1]["time"] == [f"{AT.timestamp():.3f}"]
    assert server.seen[-1]["timeout"] == ["0.5"]


def test_naive_instant_is_taken_as_utc(server: FakePrometheus, source: PrometheusSource) -> None:
    server.seen.clear()
    source.query("ok", AT.replace(tzinfo=None))
    assert server.seen[-1]["time"] == [f"{AT.timestamp():.3f}"]


def test_a_server_error_is_not_retried(server: FakePrometheus, source: PrometheusSource) -> None:
    server.seen.clear()
    source.query("boom", AT)
    assert len(server.seen) == 1


def test_no_answer_within_the_timeout_is_unreachable(source: PrometheusSource) -> None:
    started = time.monotonic()
    got = source.query("slow", AT)
    elapsed = time.monotonic() - started
    assert got == QueryError("unreachable", f"no answer from {source.url} within 0.5s")
    assert elapsed < 1.4  # gave up on its own, did not wait for the answer


def test_connection_refused_is_unreachable() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with PrometheusSource(f"http://127.0.0.1:{port}/", timeout_seconds=1) as src:
        started = time.monotonic()
        got = src.query("ok", AT)
        assert time.monotonic() - started < 1  # no retries with back-off
    assert got == QueryError(
        "unreachable", f"cannot reach http://127.0.0.1:{port}: Connection refused"
    )


def test_from_spec_takes_the_allowed_url_and_timeout() -> None:
    policy = PrometheusPolicy("http://prometheus:9090", ("http://127.0.0.1:9090",))
    src = PrometheusSource.from_spec(
        PrometheusSpec(url="http://127.0.0.1:9090/", timeout="1500ms"), policy
    )
    assert (src.url, src.timeout_seconds) == ("http://127.0.0.1:9090", 1.5)
    assert PrometheusSource.from_spec(PrometheusSpec(), policy).url == "http://prometheus:9090"


def test_from_spec_refuses_a_url_the_policy_does_not_allow() -> None:
    policy = PrometheusPolicy("http://prometheus:9090", ())
    with pytest.raises(PrometheusNotAllowed, match="http://evil:80 is not allowed"):
        PrometheusSource.from_spec(PrometheusSpec(url="http://evil:80"), policy)


def test_one_source_serves_many_threads(source: PrometheusSource) -> None:
    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda: results.append(source.query("ok", AT))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert results == [Value(0.125)] * 8


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([], NoData()),
        ([1.0, "NaN"], None),
        ([1.0, "x"], QueryError("http", "value 'x' is not a number")),
        ({"not": SECRET}, QueryError("http", "unexpected answer: data.result is a dict")),
        (
            [1.0, SECRET * 10],
            QueryError("http", f"value '{SECRET}s3cr3t-internal-to is not a number"),
        ),
        (
            [{"metric": {}, "values": []}, {"metric": {}, "values": []}],
            QueryError(
                "bad-query",
                "a range vector (matrix) answer: the query must give one instant value",
            ),
        ),
    ],
)
def test_classify_edge_cases(data: Any, expected: Any) -> None:
    got = classify(data)
    if expected is None:
        assert isinstance(got, NotFinite)
    else:
        assert got == expected
