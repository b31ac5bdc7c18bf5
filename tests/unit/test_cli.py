"""The CLI against fake API clients raising the kubernetes client's real exception types."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from urllib3 import HTTPSConnectionPool
from urllib3.connection import HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError

from kanary import cli
from kanary.statusview import render_status


def api_error(status: int, reason: str, message: str | None = None) -> ApiException:
    body = None if message is None else json.dumps({"kind": "Status", "message": message})
    return ApiException(status=status, reason=reason, body=body)


def refused() -> MaxRetryError:
    conn = HTTPSConnection("10.0.0.1", 6443)
    why = NewConnectionError(conn, "Failed to establish a new connection: [Errno 111] refused")
    return MaxRetryError(HTTPSConnectionPool("10.0.0.1", 6443), "/apis/x", why)


def rollout(name: str = "gin", namespace: str = "demo", **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace}, "spec": {}, "status": status}


class FakeCustom:
    """CustomObjectsApi: `get` is an exception to raise or a list of bodies, one per call."""

    def __init__(self, get: Any = None, items: Any = (), all_items: Any = ()) -> None:
        self.get, self.items, self.all_items = get, items, all_items
        self.patches: list[dict[str, Any]] = []
        self.patch_error: Exception | None = None

    def get_namespaced_custom_object(self, *args: Any) -> dict[str, Any]:
        if isinstance(self.get, Exception):
            raise self.get
        body = self.get[0] if len(self.get) == 1 else self.get.pop(0)
        return body(self) if callable(body) else dict(body)

    def list_namespaced_custom_object(self, *args: Any) -> dict[str, Any]:
        if isinstance(self.items, Exception):
            raise self.items
        return {"items": list(self.items)}

    def list_cluster_custom_object(self, *args: Any) -> dict[str, Any]:
        if isinstance(self.all_items, Exception):
            raise self.all_items
        return {"items": list(self.all_items)}

    def patch_namespaced_custom_object(self, *args: Any) -> None:
        if self.patch_error is not None:
            raise self.patch_error
        self.patches.append(args[-1])


class FakeCore:
    def __init__(self, namespaces: tuple[str, ...] = ("demo",), events: Any = ()) -> None:
        self.namespaces, self.events = namespaces, list(events)

    def read_namespace(self, name: str) -> object:
        if name not in self.namespaces:
            raise api_error(404, "Not Found", f'namespaces "{name}" not found')
        return object()

    def list_namespaced_event(self, namespace: str, field_selector: str) -> SimpleNamespace:
        return SimpleNamespace(items=self.events)


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    world = SimpleNamespace(custom=FakeCustom(get=[rollout()]), core=FakeCore())
    monkeypatch.setattr(cli, "_api", lambda: world.custom)
    monkeypatch.setattr(cli, "_core", lambda: world.core)
    return world


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kanary: error: "), err
    return lines[0]


# --- errors: one line, exit 1 ------------------------------------------------------------------


def test_unreachable_server_names_its_url(fakes: SimpleNamespace, capsys: Any) -> None:
    fakes.custom.get = refused()
    code, out, err = run(capsys, "status", "gin", "-n", "demo")
    line = one_error_line(err)
    assert code == 1 and out == ""
    assert "cannot reach the Kubernetes API server https://10.0.0.1:6443" in line
    assert line.endswith("[Errno 111] refused")


def test_timeout_is_unreachable_too(fakes: SimpleNamespace, capsys: Any) -> None:
    conn = HTTPSConnection("10.0.0.1", 6443)
    why = ConnectTimeoutError(conn, "Connection to 10.0.0.1 timed out. (connect timeout=5)")
    fakes.custom.items = MaxRetryError(HTTPSConnectionPool("10.0.0.1", 6443), "/apis", why)
    code, _, err = run(capsys, "list", "-n", "demo")
    line = one_error_line(err)
    assert code == 1
    assert line.endswith(
        "https://10.0.0.1:6443: Connection to 10.0.0.1 timed out. (connect timeout=5)"
    )


def test_missing_rollout_names_it_and_its_namespace(fakes: SimpleNamespace, capsys: Any) -> None:
    fakes.custom.get = api_error(404, "Not Found", 'rollouts.kanary.dev "nope" not found')
    code, _, err = run(capsys, "abort", "nope", "-n", "demo")
    assert code == 1
    assert one_error_line(err) == "kanary: error: rollout nope not found in namespace demo"


def test_missing_namespace_is_said_so(fakes: SimpleNamespace, capsys: Any) -> None:
    fakes.custom.get = api_error(404, "Not Found", 'rollouts.kanary.dev "gin" not found')
    code, _, err = run(capsys, "status", "gin", "-n", "typo")
    assert code == 1
    assert one_error_line(err) == "kanary: error: namespace typo not found"
    code, out, err = run(capsys, "list", "-n", "typo")
    assert code == 1 and out == ""
    assert one_error_line(err) == "kanary: error: namespace typo not found"


def test_forbidden_says_what(fakes: SimpleNamespace, capsys: Any) -> None:
    said = (
        'rollouts.kanary.dev "gin" is forbidden: User "alice" cannot patch resource "rollouts"'
        ' in API group "kanary.dev" in the namespace "demo"'
    )
    fakes.custom.get = [rollout(phase="Progressing")]
    fakes.custom.patch_error = api_error(403, "Forbidden", said)
    code, _, err = run(capsys, "abort", "gin", "-n", "demo")
    assert code == 1
    assert one_error_line(err) == f"kanary: error: {said}"
    assert cli.error_message(api_error(403, "Forbidden")) == "forbidden: 403 Forbidden"


def test_bugs_still_show_their_traceback(fakes: SimpleNamespace) -> None:
    fakes.custom.get = ZeroDivisionError("a bug")
    with pytest.raises(ZeroDivisionError):
        cli.main(["status", "gin", "-n", "demo"])


def test_bad_flags_exit_1_and_help_exits_0(capsys: Any) -> None:
    code, _, err = run(capsys, "status")
    assert code == 1 and "error: the following arguments are required: name" in err
    code, _, err = run(capsys, "status", "gin", "--bogus")
    assert code == 1 and "unrecognized arguments: --bogus" in err
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "usage: kanary" in out
    code, out, _ = run(capsys, "abort", "--help")
    assert code == 0 and "--wait" in out


def test_unreachable_cluster_end_to_end(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: x}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u, namespace: demo}}]\n"
    )
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    done = subprocess.run(
        [sys.executable, "-m", "kanary.cli", "status", "x"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    line = one_error_line(done.stderr)
    assert "https://127.0.0.1:1" in line and "refused" in line.lower()


# --- list ------------------------------------------------------------------------------------


def test_empty_namespace_says_so_and_points_at_the_others(
    fakes: SimpleNamespace, capsys: Any
) -> None:
    fakes.custom.all_items = [rollout(namespace=ns) for ns in ("a", "b", "c")]
    code, out, _ = run(capsys, "list", "-n", "demo")
    assert code == 0
    assert out == "No rollouts found in namespace demo. (3 in other namespaces: kanary list -A)\n"
    fakes.custom.all_items = api_error(403, "Forbidden")  # no cluster-wide list: no hint
    assert run(capsys, "list", "-n", "demo")[1] == "No rollouts found in namespace demo.\n"
    fakes.custom.all_items = []
    assert run(capsys, "list", "-n", "demo")[1] == "No rollouts found in namespace demo.\n"


def test_list_all_namespaces(fakes: SimpleNamespace, capsys: Any) -> None:
    fakes.custom.all_items = [rollout("gin", "a", phase="Healthy"), rollout("web", "b")]
    code, out, _ = run(capsys, "list", "-A")
    rows = [line.split()[:3] for line in out.splitlines()]
    assert code == 0
    assert rows == [
        ["NAMESPACE", "NAME", "PHASE"],
        ["a", "gin", "Healthy"],
        ["b", "web", "Pending"],
    ]
    fakes.custom.all_items = []
    assert run(capsys, "list", "-A")[1] == "No rollouts found.\n"


# --- status ----------------------------------------------------------------------------------


def event(reason: str, **times: datetime | None) -> SimpleNamespace:
    when = {k: times.get(k) for k in ("event_time", "last_timestamp", "first_timestamp")}
    meta = SimpleNamespace(creation_timestamp=times.get("created"))
    return SimpleNamespace(type="Normal", reason=reason, message=reason, metadata=meta, **when)


def test_events_oldest_first_by_their_best_timestamp(fakes: SimpleNamespace, capsys: Any) -> None:
    def at(minute: int) -> datetime:
        return datetime(2026, 1, 1, 12, minute, tzinfo=UTC)

    fakes.core.events = [
        event("Fourth", event_time=at(4), last_timestamp=at(0)),  # eventTime wins
        event("Second", last_timestamp=at(2), first_timestamp=at(9)),
        event("Third", first_timestamp=at(3)),
        event("First", created=at(1)),
    ]
    assert [e["reason"] for e in cli._events("demo", "gin")] == [
        "First",
        "Second",
        "Third",
        "Fourth",
    ]
    code, out, _ = run(capsys, "status", "gin", "-n", "demo")
    assert code == 0
    assert [line.split()[1] for line in out.split("Events:\n")[1].splitlines()] == [
        "First",
        "Second",
        "Third",
        "Fourth",
    ]


def metric_line(**metric: Any) -> str:
    body = rollout(analysis={"lastCheckAt": "2026-01-01T12:00:00Z", "metrics": [metric]})
    return render_status(body).splitlines()[-1].strip()


def test_metric_lines_show_the_bound_the_verdict_refers_to() -> None:
    fail = metric_line(name="error-rate", value=0.17857, max=0.01, verdict="Fail")
    assert fail == "error-rate 0.1786 > max 0.01 -> Fail"
    ok = metric_line(name="latency-p99", value=0.12, max=0.3, requests=640.0, verdict="Pass")
    assert ok == "latency-p99 0.12 <= max 0.3, 640 requests -> Pass"
    low = metric_line(name="throughput", value=2.0, min=5.0, max=100.0, verdict="Fail")
    assert low == "throughput 2 < min 5 -> Fail"
    both = metric_line(name="throughput", value=7.0, min=5.0, max=100.0, verdict="Pass")
    assert both == "throughput 7 <= max 100, >= min 5 -> Pass"
    inc = dict(name="error-rate", value=0.05, baseline=0.01, maxIncrease=0.02, verdict="Fail")
    assert metric_line(**inc) == (
        "error-rate 0.05 vs stable 0.01: +0.04 > maxIncrease 0.02 -> Fail"
    )
    ratio = dict(name="latency-p99", value=0.3, baseline=0.1, maxRatio=1.5, verdict="Fail")
    assert metric_line(**ratio) == "latency-p99 0.3 vs stable 0.1: 3.00x > maxRatio 1.5x -> Fail"
    zero = dict(name="error-rate", value=0.01, baseline=0.0, maxRatio=2.0, verdict="Fail")
    assert metric_line(**zero) == (
        "error-rate 0.01 vs stable 0: unbounded ratio > maxRatio 2x -> Fail"
    )


def test_inconclusive_and_error_metric_lines_show_the_reason() -> None:
    thin = metric_line(
        name="error-rate",
        value=0.0,
        max=0.01,
        requests=3.0,
        verdict="Inconclusive",
        reason="only 3 canary requests in 30s (need 20)",
    )
    assert (
        thin == "error-rate 0, 3 requests -> Inconclusive: only 3 canary requests in 30s (need 20)"
    )
    broken = metric_line(
        name="latency-p99", max=0.3, verdict="Error", reason="latency-p99: query failed: 503"
    )
    assert broken == "latency-p99 -> Error: query failed: 503"
    # +Inf is stored as no value; the reason says why it failed
    inf = metric_line(
        name="latency-p99", max=0.3, verdict="Fail", reason="latency-p99 +Inf > 300ms"
    )
    assert inf == "latency-p99 -> Fail: latency-p99 +Inf > 300ms"


# --- actions and --wait ----------------------------------------------------------------------


def test_wait_for_ack_polls_until_the_request_is_answered() -> None:
    now = [0.0]
    slept: list[float] = []
    answers = iter(
        [{}, {"lastAction": {"id": "old"}}, {"lastAction": {"id": "r1", "result": "Accepted"}}]
    )

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    ack = cli.wait_for_ack(lambda: {"status": next(answers)}, "r1", 60, lambda: now[0], sleep)
    assert ack == {"id": "r1", "result": "Accepted"} and slept == [0.5, 0.5]
    never = cli.wait_for_ack(lambda: {"status": {}}, "r1", 1.2, lambda: now[0], sleep)
    assert never is None and slept[2:] == [0.5, 0.5, pytest.approx(0.2)]


def answering(result: str, reason: str = "") -> Any:
    """A Rollout whose status.lastAction answers the request the CLI just patched in."""

    def body(custom: FakeCustom) -> dict[str, Any]:
        request = custom.patches[-1]["metadata"]["annotations"]["kanary.dev/action-id"]
        last = {"id": request, "action": "abort", "result": result, "reason": reason}
        return rollout(phase="Progressing", lastAction=last)

    return body


def test_action_wait_accepted_refused_and_unanswered(fakes: SimpleNamespace, capsys: Any) -> None:
    fakes.custom.get = [rollout(phase="Progressing"), answering("Accepted")]
    code, out, _ = run(capsys, "abort", "gin", "-n", "demo", "--wait")
    assert (code, out) == (0, "rollout demo/gin: abort accepted\n")

    fakes.custom.get = [rollout(phase="Progressing"), answering("Refused", "it is RolledBack")]
    code, out, err = run(capsys, "abort", "gin", "-n", "demo", "--wait")
    assert (code, out, err) == (1, "", "rollout demo/gin: abort refused: it is RolledBack\n")

    fakes.custom.get = [rollout(phase="Progressing")]
    code, _, err = run(capsys, "abort", "gin", "-n", "demo", "--wait", "--timeout", "0")
    assert code == 1
    assert one_error_line(err) == (
        "kanary: error: rollout demo/gin: the operator did not acknowledge abort within 0s"
        " (is it running?)"
    )


def test_action_without_wait_only_requests(fakes: SimpleNamespace, capsys: Any) -> None:
    fakes.custom.get = [rollout(phase="Paused")]
    code, out, _ = run(capsys, "promote", "gin", "-n", "demo", "--full")
    assert (code, out) == (0, "rollout demo/gin: promote-full requested\n")
    [patch] = fakes.custom.patches
    annotations = patch["metadata"]["annotations"]
    assert annotations["kanary.dev/action"] == "promote-full"
    assert len(annotations["kanary.dev/action-id"]) == 12


# --- run -------------------------------------------------------------------------------------


def test_run_prometheus_flags_become_the_environment() -> None:
    args = cli.parser().parse_args(
        [
            "run",
            "--prometheus-url",
            "http://prom:9090",
            "--allow-prometheus-url",
            "http://prom:9090",
            "--allow-prometheus-url",
            "http://other:9090",
        ]
    )
    assert cli.prometheus_env(args.prometheus_url, args.allow_prometheus_url) == {
        "KANARY_PROMETHEUS_DEFAULT_URL": "http://prom:9090",
        "KANARY_PROMETHEUS_ALLOWED_URLS": "http://prom:9090,http://other:9090",
    }
    plain = cli.parser().parse_args(["run"])
    assert cli.prometheus_env(plain.prometheus_url, plain.allow_prometheus_url) == {}


def test_status_says_where_the_metrics_were_measured() -> None:
    where = "gateway: traefik metrics of web/edge (GatewayClass traefik (traefik.io/x))"
    analysis = {"lastCheckAt": "2026-01-01T12:00:00Z", "source": where, "metrics": []}
    lines = [line.strip() for line in render_status(rollout(analysis=analysis)).splitlines()]
    assert f"measured at {where}" in lines
    judged = {**analysis, "verdict": "Fail", "score": 50.0}
    head = render_status(rollout(analysis=judged)).splitlines()
    assert any(line.endswith("errors 0), mannWhitney score 50") for line in head), head


def test_the_operator_log_is_not_one_line_per_watch_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before: Kopf's "Handler 'track_pod' succeeded." for every event of every owned pod,
    Deployment and Service (14 900 INFO lines in one 250-Rollout rollout)."""
    import logging

    objects = logging.getLogger("kopf.objects")
    monkeypatch.setattr(objects, "level", logging.NOTSET)
    monkeypatch.setattr(logging.getLogger(), "level", logging.INFO)
    cli.configure_logging(verbose=False)
    assert not objects.isEnabledFor(logging.INFO)
    assert objects.isEnabledFor(logging.WARNING)  # a failing handler is still told
    cli.configure_logging(verbose=True)
    assert objects.isEnabledFor(logging.DEBUG)
