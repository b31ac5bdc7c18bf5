"""Where metric values come from: a small protocol, and Prometheus behind it.

Every answer becomes one typed result, so the judgement cannot mistake a missing answer for a
good one: ``Value``, ``NoData``, ``NotFinite`` (NaN/Inf), ``ManySeries`` (one was expected) or
``QueryError`` (unreachable, an HTTP error, or a query Prometheus refused).

A ``QueryError``'s detail goes into the Rollout's status, which the Rollout's author reads, so
it never carries what the server answered beyond Prometheus' own error string: the API's
``errorType: error`` (bounded), else only the HTTP status line ("HTTP 502 Bad Gateway"), and
for a connection failure one short cause ("Connection refused").
"""

from __future__ import annotations

import ast
import json
import math
import re
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.client import RemoteDisconnected
from typing import Any, Literal, Protocol

import requests
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from urllib3.util.retry import Retry

from kanary.analysis.endpoints import PrometheusPolicy, shown
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

    def query_by(self, promql: str, at: datetime, label: str) -> dict[str, float] | QueryError:
        """An instant query's series by the value of ``label`` (finite values only)."""
        ...

    def query_range(
        self, promql: str, start: datetime, end: datetime, step_seconds: float
    ) -> Samples | QueryError:
        """One series' values from start to end by step (Samples(()): no series)."""
        ...


_API_ERROR_MAX = 200  # of Prometheus' "errorType: error"


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
    def from_spec(cls, spec: PrometheusSpec, policy: PrometheusPolicy) -> PrometheusSource:
        """The source for ``spec``: its URL as ``policy`` resolves it (PrometheusNotAllowed
        when the operator may not query it) and its timeout."""
        return cls(policy.resolve(spec.url), parse_duration(spec.timeout))

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
        answer = self._ask(promql, at)
        return answer if isinstance(answer, QueryError) else classify(answer)

    def query_by(self, promql: str, at: datetime, label: str) -> dict[str, float] | QueryError:
        answer = self._ask(promql, at)
        return answer if isinstance(answer, QueryError) else by_label(answer, label)

    def query_range(
        self, promql: str, start: datetime, end: datetime, step_seconds: float
    ) -> Samples | QueryError:
        """A range query's one series' values (NaN kept: the judge decides), start..end by
        step (whole seconds: the client rounds). No series: no samples; several: ManySeries."""
        timeout = self.timeout_seconds
        answer = self._call(
            lambda client: client.custom_query_range(
                promql,
                start_time=_aware(start),
                end_time=_aware(end),
                step=f"{step_seconds:g}s",
                params={"timeout": f"{timeout:g}"},
                timeout=timeout,  # type: ignore[arg-type]
            )
        )
        return answer if isinstance(answer, QueryError) else samples_of(answer)

    def _ask(self, promql: str, at: datetime) -> Any:
        """The instant query's data.result, or a QueryError."""
        params = {"time": f"{_aware(at).timestamp():.3f}", "timeout": f"{self.timeout_seconds:g}"}
        # 0.7.2 annotates timeout as int; requests takes seconds as a float.
        return self._call(
            lambda client: client.custom_query(
                promql,
                params=params,
                timeout=self.timeout_seconds,  # type: ignore[arg-type]
            )
        )

    def _call(self, send: Callable[[PrometheusConnect], Any]) -> Any:
        """What ``send`` got (the API's data.result), or a QueryError."""
        try:
            answer: Any = send(self._client())
        except PrometheusApiClientException as exc:
            return _http_error(str(exc))
        except requests.exceptions.JSONDecodeError:  # a 200 that is not the API's JSON
            return self._malformed()
        except requests.Timeout:
            return QueryError(
                "unreachable", f"no answer from {shown(self.url)} within {self.timeout_seconds:g}s"
            )
        except requests.RequestException as exc:
            return QueryError("unreachable", f"cannot reach {shown(self.url)}: {_root_cause(exc)}")
        except (ValueError, KeyError, TypeError, RecursionError):  # not the API's JSON shape
            return self._malformed()
        return answer

    def _malformed(self) -> QueryError:
        return QueryError(
            "http",
            f"malformed answer from {shown(self.url)}: HTTP 200 but not the query API's JSON",
        )


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Samples:
    """The values of a range query's series, oldest first (empty: no series)."""

    values: tuple[float, ...]


def samples_of(result: Any) -> Samples | QueryError:
    """The one series of a /api/v1/query_range answer (``data.result``, a matrix)."""
    if not isinstance(result, list) or not all(
        isinstance(s, dict) and isinstance(s.get("values"), list) for s in result
    ):
        return QueryError("bad-query", "not a range of series: the query must give one series")
    if len(result) > 1:
        return QueryError(
            "bad-query", f"{len(result)} series, e.g. {_labels(result[0])}: one was expected"
        )
    if not result:
        return Samples(())
    values: list[float] = []
    for point in result[0]["values"]:
        try:
            values.append(float(point[1]))
        except (TypeError, ValueError, IndexError):
            return QueryError("http", f"sample {repr(point)[:40]} is not a number")
    return Samples(tuple(values))


def classify(result: Any) -> QueryResult:
    """The typed result of the ``data.result`` of a successful /api/v1/query."""
    if not isinstance(result, list):
        return QueryError("http", f"unexpected answer: data.result is a {type(result).__name__}")
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


def by_label(result: Any, label: str) -> dict[str, float] | QueryError:
    """An instant vector's finite values by their ``label`` (a series without it: "")."""
    if not isinstance(result, list) or not all(
        isinstance(s, dict) and isinstance(s.get("value"), list) for s in result
    ):
        return QueryError("bad-query", "not an instant vector: the query must give series")
    out: dict[str, float] = {}
    for series in result:
        number = _number(series["value"][1] if len(series["value"]) == 2 else None)
        if isinstance(number, Value):
            out[str((series.get("metric") or {}).get(label, ""))] = number.value
    return out


def _number(text: Any) -> QueryResult:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return QueryError("http", f"value {repr(text)[:40]} is not a number")
    return Value(value) if math.isfinite(value) else NotFinite(value)


def _labels(series: Any) -> str:
    metric = series.get("metric", {}) if isinstance(series, dict) else {}
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items())) + "}"


# prometheus-api-client 0.7.2 raises PrometheusApiClientException(
#   "HTTP Status Code {status} ({body!r})") for every status but 200.
_STATUS = re.compile(r"HTTP Status Code (\d+) \((.*)\)\Z", re.DOTALL)


def _http_error(message: str) -> QueryError:
    match = _STATUS.match(message)
    if match is None:  # not the library's format: show nothing of it
        return QueryError("http", "HTTP error (no status code in the client's error)")
    status = int(match.group(1))
    detail = _api_error(match.group(2))
    # Prometheus answers 400 (bad_data) for a query it cannot parse and 422 (execution) for
    # one it cannot evaluate: the query's fault, not the server's.
    if detail is None:  # not Prometheus' error JSON (a proxy's page, anything): no body
        return QueryError("http", _status_line(status))
    kind: ErrorKind = "bad-query" if status in (400, 422) else "http"
    return QueryError(kind, f"HTTP {status}: {detail}")


def _status_line(status: int) -> str:
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def _api_error(body_repr: str) -> str | None:
    """The API's "errorType: error" (bounded) from the body's repr; None for any other body."""
    try:
        body = ast.literal_eval(body_repr)
        doc = json.loads(body)
    except (ValueError, TypeError, SyntaxError, RecursionError):
        return None
    if not (
        isinstance(doc, dict)
        and doc.get("status") == "error"
        and isinstance(doc.get("errorType"), str)
        and isinstance(doc.get("error"), str)
    ):
        return None
    text = " ".join(f"{doc['errorType'][:40]}: {doc['error']}".split())  # one line
    return text if len(text) <= _API_ERROR_MAX else text[: _API_ERROR_MAX - 3] + "..."


def _root_cause(exc: BaseException) -> str:
    """ "Connection refused" rather than urllib3's page-long chain with the query in it: the
    first OS-level cause in the chain, never text the server sent."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        cause = todo.pop(0)
        if cause is None or id(cause) in seen:
            continue
        seen.add(id(cause))
        if isinstance(cause, RemoteDisconnected):
            return "connection closed without an answer"
        if isinstance(cause, ssl.SSLError):
            return "TLS handshake failed"
        if isinstance(cause, ConnectionResetError):
            return "connection reset"
        if isinstance(cause, OSError) and isinstance(cause.strerror, str) and cause.strerror:
            return cause.strerror[:80]
        reason = getattr(cause, "reason", None)
        todo += [
            reason if isinstance(reason, BaseException) else None,
            cause.__cause__,
            cause.__context__,
        ]
        todo += [a for a in cause.args if isinstance(a, BaseException)]
    return "connection failed"
