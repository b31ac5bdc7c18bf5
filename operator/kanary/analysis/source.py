"""Where metric values come from: a small protocol, and Prometheus behind it.

Every answer becomes one typed result, so the judgement cannot mistake a missing answer for a
good one: ``Value``, ``NoData``, ``NotFinite`` (NaN/Inf), ``ManySeries`` (one was expected) or
``QueryError`` (unreachable, an HTTP error, or a query Prometheus refused).
"""

from __future__ import annotations

import ast
import json
import math
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import requests
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from urllib3.util.retry import Retry

from kanary.durations import parse_duration
from kanary.spec import PrometheusSpec


@dataclass(frozen=True)
class Value:
    value: float


@dataclass(frozen=True)
class NoData:
    """The query selected no series (nothing scraped matches, or nothing happened)."""


@dataclass(frozen=True)
class NotFinite:
    value: float  # nan, inf or -inf


@dataclass(frozen=True)
class ManySeries:
    count: int
    example: str = ""  # the labels of one of them, for the reason on-call reads


ErrorKind = Literal["unreachable", "http", "bad-query"]


@dataclass(frozen=True)
class QueryError:
    kind: ErrorKind
    detail: str


QueryResult = Value | NoData | NotFinite | ManySeries | QueryError


class MetricSource(Protocol):
    """Answers one instant query evaluated at ``at``. Must not raise: errors are results."""

    def query(self, promql: str, at: datetime) -> QueryResult: ...


_DETAIL_MAX = 300


class PrometheusSource:
    """A MetricSource asking Prometheus' HTTP API through prometheus-api-client.

    Synchronous by design: each query blocks its thread for at most ``timeout_seconds``
    (connect and read each), and the operator calls ``run_check`` through
    ``asyncio.to_thread`` (or an executor) so the Kopf event loop never blocks on Prometheus.
    One source may be shared by many threads: each thread gets its own HTTP session.

    No retries: the next analysis interval is the retry, and a retry with back-off would
    delay the verdict past that interval. The same ``timeout`` is sent to Prometheus so it
    gives up on a slow query too.
    """

    def __init__(self, url: str, timeout_seconds: float = 5.0) -> None:
        if timeout_seconds <= 0:
            raise ValueError(f"timeout must be positive, got {timeout_seconds}")
        self.url = url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self._local = threading.local()
        self._lock = threading.Lock()
        self._clients: list[PrometheusConnect] = []

    def _client(self) -> PrometheusConnect:
        client: PrometheusConnect | None = getattr(self._local, "client", None)
        if client is None:
            # requests' own default (read=False keeps a read timeout a Timeout, not a
            # ConnectionError); the library's default would retry 3 times with back-off.
            retry = Retry(total=0, read=False, raise_on_status=False)
            client = PrometheusConnect(url=self.url, retry=retry)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    @classmethod
    def from_spec(cls, spec: PrometheusSpec) -> PrometheusSource:
        return cls(spec.url, parse_duration(spec.timeout))

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()

    def __enter__(self) -> PrometheusSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def query(self, promql: str, at: datetime) -> QueryResult:
        """The instant query at ``at`` (aware; a naive datetime is taken as UTC)."""
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        params = {"time": f"{at.timestamp():.3f}", "timeout": f"{self.timeout_seconds:g}"}
        try:
            # 0.7.2 annotates timeout as int; requests takes seconds as a float.
            answer: Any = self._client().custom_query(
                promql,
                params=params,
                timeout=self.timeout_seconds,  # type: ignore[arg-type]
            )
        except PrometheusApiClientException as exc:
            return _http_error(str(exc))
        except requests.exceptions.JSONDecodeError as exc:  # a 200 that is not the API's JSON
            return QueryError("http", f"malformed answer from {self.url}: {exc}"[:_DETAIL_MAX])
        except requests.Timeout:
            return QueryError(
                "unreachable", f"no answer from {self.url} within {self.timeout_seconds:g}s"
            )
        except requests.RequestException as exc:
            return QueryError("unreachable", f"cannot reach {self.url}: {_root_cause(exc)}")
        except (ValueError, KeyError, TypeError) as exc:  # JSON, but not the API's shape
            return QueryError("http", f"malformed answer from {self.url}: {exc}"[:_DETAIL_MAX])
        return classify(answer)


def classify(result: Any) -> QueryResult:
    """The typed result of the ``data.result`` of a successful /api/v1/query."""
    if not isinstance(result, list):
        return QueryError("http", f"unexpected answer: {result!r}"[:_DETAIL_MAX])
    if len(result) == 2 and not isinstance(result[0], dict):  # resultType scalar or string
        return _number(result[1])
    if not result:
        return NoData()
    if not all(isinstance(series, dict) and "value" in series for series in result):
        return QueryError(
            "bad-query", "a range vector (matrix) answer: the query must give one instant value"
        )
    if len(result) > 1:
        return ManySeries(len(result), _labels(result[0]))
    return _number(result[0]["value"][1])


def _number(text: Any) -> QueryResult:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return QueryError("http", f"value {text!r} is not a number"[:_DETAIL_MAX])
    return Value(value) if math.isfinite(value) else NotFinite(value)


def _labels(series: Any) -> str:
    metric = series.get("metric", {}) if isinstance(series, dict) else {}
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items())) + "}"


# prometheus-api-client 0.7.2 raises PrometheusApiClientException(
#   "HTTP Status Code {status} ({body!r})") for every status but 200.
_STATUS = re.compile(r"HTTP Status Code (\d+) \((.*)\)\Z", re.DOTALL)


def _http_error(message: str) -> QueryError:
    match = _STATUS.match(message)
    if match is None:
        return QueryError("http", message[:_DETAIL_MAX])
    status = int(match.group(1))
    detail = _api_error(match.group(2))
    # Prometheus answers 400 (bad_data) for a query it cannot parse and 422 (execution) for
    # one it cannot evaluate: the query's fault, not the server's.
    kind: ErrorKind = "bad-query" if status in (400, 422) else "http"
    return QueryError(kind, f"HTTP {status}: {detail}"[:_DETAIL_MAX])


def _api_error(body_repr: str) -> str:
    """The API's "errorType: error" from the body's repr, else the body as text."""
    try:
        body = ast.literal_eval(body_repr)
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    except (ValueError, SyntaxError):
        text = body_repr
    try:
        doc = json.loads(text)
    except ValueError:
        return text.strip() or "(empty body)"
    if isinstance(doc, dict) and "error" in doc:
        return f"{doc.get('errorType', 'error')}: {doc['error']}"
    return text.strip()


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\"\])]+)")


def _root_cause(exc: Exception) -> str:
    """ "Connection refused" rather than urllib3's page-long chain with the query in it."""
    found = _ERRNO.search(str(exc))
    return found.group(1).strip() if found else type(exc).__name__
