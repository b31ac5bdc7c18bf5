"""Fixtures and helpers for the end-to-end tests: the operator, real traffic and Prometheus.

Everything real: the operator runs as a process with its ServiceAccount's token
(tests/integration/operator_fixtures.py), traffic goes through Traefik's Gateway on
127.0.0.1:8000 to the Gin processes the pod runner starts for kwok's pods
(tests/integration/dataplane_fixtures.py), and the analysis asks the Prometheus of the data
plane (127.0.0.1:9090, 1s scrapes). Helpers that the integration tests already have (Kit,
WeightRecorder, rollout_body, httproute, the data-plane waits) are imported, not copied.

The tests run inside the cluster's network namespace:

    hack/cluster/exec.sh .venv/bin/python -m pytest -q tests/e2e
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes.client import ApiException

from tests.integration.conftest import REPO_ROOT, Cluster, lib_path, wait_until
from tests.integration.dataplane_fixtures import (
    DATAPLANE_DIR,
    GATEWAY_PORT,
    PROMETHEUS,
    DataPlane,
    kwok_timing,
    wait_route_accepted,
)
from tests.integration.operator_fixtures import (
    OperatorProcess,
    install_operator_manifests,
    running_operator,
    service_account_kubeconfig,
)
from tests.integration.test_operator import GW, Kit, WeightRecorder, httproute, rollout_body

KANARY_CLI = REPO_ROOT / ".venv" / "bin" / "kanary"
# As manifests/examples recommend: a terminating pod keeps serving 3s while endpoints drop it.
APP_ENV = {"SHUTDOWN_DELAY": "3s"}


def _env(extra: dict[str, str] | None) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in {**APP_ENV, **(extra or {})}.items()]


IMAGE = "kanary/gin-demo"
# On the real node: the app's own /readyz, probed every second (as the example, faster).
REAL_READINESS_PROBE: dict[str, Any] = {
    "httpGet": {"path": "/readyz", "port": "http"},
    "periodSeconds": 1,
    "failureThreshold": 1,
}
# Traefik applies a new configuration at most every 2s (providersThrottleDuration) after the
# watch brings it: traffic follows a weight change within about this long.
TRAFFIC_LAG_S = 3.0


# ------------------------------------------------------------------ the operator ---
def _operator_in_this_process() -> OperatorProcess | None:
    """The integration tests' operator, when this pytest session already runs one.

    `make test` runs tests/integration and tests/e2e in one session; the operator runs
    --standalone (no Kopf peering), so a second one would fight the first over every Rollout.
    The `operator` fixture of tests/integration registers the one it started.
    """
    running = running_operator()
    if running is not None and running.proc is not None and running.proc.poll() is None:
        return running
    return None


def _operator_of_operator_up() -> int | None:
    """The pid of an operator started by hack/operator-up.sh (make demo), if it runs."""
    pid_file = lib_path("PID_DIR") / "kanary-operator.pid"
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"kanary" in cmdline else None


@pytest.fixture(scope="module")
def e2e_operator(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The operator as a real process (its own ServiceAccount): the one this session already
    runs, else one started here and stopped after this module's tests."""
    other = _operator_of_operator_up()
    if other is not None:
        pytest.fail(
            f"an operator started by hack/operator-up.sh runs in this cluster (pid {other}); "
            "two operators would both drive every Rollout: stop it first",
            pytrace=False,
        )
    running = _operator_in_this_process()
    if running is not None:
        yield running
        return
    install_operator_manifests(cluster)
    workdir = tmp_path_factory.mktemp("e2e-operator")
    proc = OperatorProcess(
        kubeconfig=service_account_kubeconfig(cluster, workdir / "kubeconfig"),
        log_path=workdir / "operator.log",
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.kill(signal.SIGTERM)
        print(f"\n--- e2e operator log ({proc.log_path}) tail ---\n{proc.tail(40)}")


# ---------------------------------------------------------------------- traffic ---
@dataclass(frozen=True)
class Sample:
    at: float  # time.monotonic() when the request was sent
    status: str  # "200", "500", ... or "error:<exception type>" (no HTTP answer)
    version: str  # the Gin JSON's "version"; "?" when the body was not the Gin JSON


class Traffic:
    """GETs through the Gateway at a steady rate from background threads, each answer kept
    with its send time: which version answered when, and every failure.

    Bounded: at most `rate` requests a second, for at most `max_seconds`; requests are sent
    at fixed instants from `workers` keep-alive connections (a late one is sent at once,
    never a burst to catch up). Loopback only (the Gateway inside the netns).
    """

    def __init__(
        self,
        host: str,
        rate: float = 80.0,
        workers: int = 16,
        max_seconds: float = 480.0,
        timeout_s: float = 5.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.host = host
        self.headers = {"Host": host, **(headers or {})}
        self.rate = min(max(rate, 1.0), 400.0)
        self.max_seconds = min(max_seconds, 600.0)
        self.timeout_s = timeout_s
        self._samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._next = 0
        self._t0 = 0.0
        self._threads = [
            threading.Thread(target=self._worker, name=f"traffic-{n}", daemon=True)
            for n in range(max(1, min(workers, 32)))
        ]

    def __enter__(self) -> Traffic:
        self._t0 = time.monotonic()
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.timeout_s + 2)

    def _connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", GATEWAY_PORT, timeout=self.timeout_s)

    def _worker(self) -> None:
        conn: http.client.HTTPConnection | None = None
        end = self._t0 + self.max_seconds
        while not self._stop.is_set():
            with self._lock:
                i = self._next
                self._next += 1
            due = self._t0 + i / self.rate
            if due > end:
                break
            delay = due - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            conn = c = conn or self._connection()
            sent = time.monotonic()
            status, version = "", "?"
            try:
                c.request("GET", "/", headers=self.headers)
                resp = c.getresponse()
                body = resp.read()
                status = str(resp.status)
                with contextlib.suppress(ValueError):
                    doc = json.loads(body)
                    if isinstance(doc, dict):
                        version = str(doc.get("version", "?"))
                if resp.getheader("Connection", "").lower() == "close":
                    c.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                status = f"error:{type(e).__name__}"
                c.close()
                conn = None
            with self._lock:
                self._samples.append(Sample(sent, status, version))
        if conn is not None:
            conn.close()

    # ---- reading what was answered ----
    def samples(self, start: float | None = None, end: float | None = None) -> list[Sample]:
        """The answers to requests sent in [start, end) (monotonic times), in send order."""
        with self._lock:
            got = list(self._samples)
        got.sort(key=lambda s: s.at)
        return [s for s in got if (start is None or s.at >= start) and (end is None or s.at < end)]

    def wait_only(self, versions: set[str], n: int = 100, timeout: float = 60) -> float:
        """Wait until `n` consecutive requests sent from now on were all answered 200 by
        `versions`; returns the monotonic send time of the first of them."""
        since = time.monotonic()

        def probe() -> float | None:
            run: list[Sample] = []
            for s in self.samples(since):
                ok = s.status == "200" and s.version in versions
                run = [*run, s] if ok else []
                if len(run) >= n:
                    return run[0].at
            return None

        return wait_until(f"{n} answers from {sorted(versions)} only", probe, timeout=timeout)

    def wait_seen(self, version: str, n: int = 10, timeout: float = 60) -> float:
        """Wait until `n` requests sent from now on were answered by `version`."""
        since = time.monotonic()

        def probe() -> float | None:
            hits = [s.at for s in self.samples(since) if s.version == version]
            return hits[n - 1] if len(hits) >= n else None

        return wait_until(f"{n} answers from {version}", probe, timeout=timeout)


def statuses(samples: Iterable[Sample]) -> Counter[str]:
    return Counter(s.status for s in samples)


def versions(samples: Iterable[Sample]) -> Counter[str]:
    return Counter(s.version for s in samples)


def failures(samples: Iterable[Sample]) -> Counter[str]:
    """Every answer that was not a 200, by "<version> <status>"."""
    return Counter(f"{s.version} {s.status}" for s in samples if s.status != "200")


def share_within(count: int, n: int, percent: int) -> bool:
    """`count` of `n` answers is the `percent` share a weight asks for, within 4 standard
    deviations of a binomial draw plus 2 points (Traefik's weighted round robin is closer)."""
    p = percent / 100
    slack = 4 * math.sqrt(p * (1 - p) / n) + 0.02
    return abs(count / n - p) <= slack


# ------------------------------------------------------------------ the weights ---
class _TimedPairs(list[tuple[int, int]]):
    """A list that stamps every append with time.monotonic()."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def append(self, pair: tuple[int, int]) -> None:
        self.times.append(time.monotonic())
        super().append(pair)


class TimedWeightRecorder(WeightRecorder):
    """test_operator's WeightRecorder (every distinct (stable, canary) pair of the HTTPRoute,
    polled every 50ms), with the time each pair was first seen."""

    def __init__(self, kit: Kit, name: str) -> None:
        super().__init__(kit, name)
        self.timed = _TimedPairs()
        self.seen = self.timed

    def __enter__(self) -> TimedWeightRecorder:
        super().__enter__()
        return self

    def periods(self) -> list[tuple[tuple[int, int], float, float]]:
        """((stable, canary), from, to) for each pair seen; the last one lasts until now."""
        ends = [*self.timed.times[1:], time.monotonic()]
        return list(zip(self.timed, self.timed.times, ends, strict=True))

    def first_time(self, canary: int, after: float = 0.0) -> float:
        for (_, c), t in zip(self.timed, self.timed.times, strict=True):
            if c == canary and t >= after:
                return t
        raise AssertionError(f"canary weight {canary} never seen after {after}: {self.seen}")


# ------------------------------------------------------------------ one scenario ---
def analysis_spec(*metrics: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """spec.strategy.analysis against the data plane's Prometheus, sized for tests: a check
    every 3s over 12s of 1s scrapes, 20 canary requests at least."""
    spec: dict[str, Any] = {
        "interval": "3s",
        "window": "12s",
        "prometheus": {"url": PROMETHEUS, "timeout": "2s"},
        "minRequests": 20,
        "failureLimit": 2,
        "inconclusiveLimit": 40,  # thin traffic right after a weight change holds, not pauses
        "onInconclusive": "pause",
        "errorLimit": 2,
        "metrics": list(metrics)
        or [{"name": "error-rate", "max": 0.01}, {"name": "latency-p99", "max": 0.3}],
    }
    spec.update(overrides)
    return spec


STEPS: list[dict[str, Any]] = [
    {"setWeight": 5},
    {"pause": {"duration": "2s"}},
    {"setWeight": 25},
    {"pause": {"duration": "2s"}},
    {"setWeight": 50},
    {"pause": {"duration": "2s"}},
    {"setWeight": 100},
]


@dataclass
class Scenario:
    """One Rollout named `name` behind its own HTTPRoute (hostname `host`) in one namespace."""

    kit: Kit
    dp: DataPlane
    operator: OperatorProcess
    name: str = "gin"
    started: float = field(default_factory=time.monotonic)
    # False: the pods run on the real node (real containers, Ready by their own /readyz probe);
    # True: on kwok nodes, Ready by kwok's annotations, processes from the pod runner.
    kwok: bool = False

    @property
    def host(self) -> str:
        return f"{self.kit.ns}.e2e.kanary.test"

    @property
    def ns(self) -> str:
        return self.kit.ns

    def image(self, tag: str) -> str:
        return f"{IMAGE}:{tag}"

    def start_v1(
        self,
        steps: list[dict[str, Any]] | None = None,
        analysis: dict[str, Any] | None = None,
        readiness_probe: dict[str, Any] | None = None,
        notifications: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        **strategy: Any,
    ) -> dict[str, Any]:
        """HTTPRoute (stable 100 / canary 0) + Rollout of v1; returns once v1 is Healthy and
        the Gateway serves it. `strategy` adds strategy fields (readiness, deadlines, gates);
        `notifications` is spec.notifications; `env` adds to the app's environment."""
        route = httproute(self.name)
        route["spec"]["hostnames"] = [self.host]
        self.kit.custom.create_namespaced_custom_object(GW[0], GW[1], self.ns, GW[2], route)
        body = rollout_body(
            self.name,
            self.image("v1"),
            steps or STEPS,
            kwok=self.kwok,
            pod_annotations=kwok_timing() if self.kwok else None,
            strategy={
                "analysis": analysis or analysis_spec(),
                "progressDeadlineSeconds": 120,
                # time for Traefik to apply weight 0 before the canary pods stop
                "abortScaleDownDelaySeconds": 8,
                **strategy,
            },
        )
        body["spec"]["template"]["spec"]["containers"][0]["env"] = _env(env)
        if "blueGreen" in strategy:
            del body["spec"]["strategy"]["steps"]
        if notifications is not None:
            body["spec"]["notifications"] = notifications
        if readiness_probe is None and not self.kwok:
            readiness_probe = REAL_READINESS_PROBE
        if readiness_probe is not None:
            body["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = readiness_probe
        self.kit.create(body)
        status = self.kit.wait_phase(self.name, "Healthy", timeout=90)
        wait_route_accepted(self.dp, self.ns, self.name)
        assert self.kit.weights(self.name) == (100, 0)
        return status

    def set_version(
        self,
        tag: str,
        env: dict[str, str] | None = None,
        pod_annotations: dict[str, str] | None = None,
    ) -> None:
        """A new template: image kanary/gin-demo:<tag> (the runner makes it APP_VERSION),
        the env given, kwok's 1s readiness unless other annotations are given."""
        for _ in range(5):  # read-modify-write: retried if the operator wrote in between
            body = self.kit.rollout(self.name)
            template = body["spec"]["template"]
            container = template["spec"]["containers"][0]
            container["image"] = self.image(tag)
            container["env"] = _env(env)
            if pod_annotations is None:
                pod_annotations = kwok_timing() if self.kwok else {}
            template["metadata"]["annotations"] = pod_annotations
            try:
                self.kit.custom.replace_namespaced_custom_object(
                    "kanary.dev", "v1alpha1", self.ns, "rollouts", self.name, body
                )
                return
            except ApiException as e:
                if e.status != 409:
                    raise
        raise AssertionError(f"rollout {self.name}: 5 conflicts in a row writing the template")

    def stable_image(self) -> str | None:
        dep = self.kit.deployment(f"{self.name}-stable")
        pod = dep.spec.template.spec if dep is not None and dep.spec is not None else None
        return None if pod is None else str(pod.containers[0].image)

    def events(self) -> list[tuple[str, str, str]]:
        """(type, reason, message) of the Rollout's Events, oldest first."""
        items = sorted(
            self.kit.events(self.name),
            key=lambda e: str(e.last_timestamp or e.event_time or e.metadata.creation_timestamp),
        )
        return [(str(e.type), str(e.reason), str(e.message)) for e in items]

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.events()]

    def condition(self, status: dict[str, Any], kind: str) -> dict[str, Any]:
        for c in status.get("conditions") or []:
            if c["type"] == kind:
                return cast(dict[str, Any], c)
        raise AssertionError(f"no condition {kind} in {status.get('conditions')}")

    def kanary(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The real CLI (.venv/bin/kanary) with the admin kubeconfig."""
        env = {**os.environ, "KUBECONFIG": str(self.kit.cluster.kubeconfig)}
        return subprocess.run(
            [str(KANARY_CLI), *args, "-n", self.ns],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    def describe(self) -> str:
        """What to read when a wait fails: status, Events, the operator log's tail."""
        return (
            f"status: {json.dumps(self.kit.status(self.name), default=str)[:3000]}\n"
            f"events: {self.events()}\n"
            f"operator log:\n{self.operator.tail(30)}"
        )


@pytest.fixture
def scenario(
    cluster: Cluster, namespace: str, dataplane: DataPlane, e2e_operator: OperatorProcess
) -> Iterator[Scenario]:
    sc = Scenario(kit=Kit(cluster, namespace), dp=dataplane, operator=e2e_operator, kwok=False)
    yield sc
    if e2e_operator.proc is None:  # a test that stopped the operator and failed before restart
        e2e_operator.start()


@pytest.fixture
def kwok_scenario(
    cluster: Cluster, namespace: str, dataplane: DataPlane, e2e_operator: OperatorProcess
) -> Scenario:
    """A Scenario whose pods are kwok's (Ready by annotations, processes from the pod runner)."""
    return Scenario(kit=Kit(cluster, namespace), dp=dataplane, operator=e2e_operator, kwok=True)


# ---------------------------------------------------------------- Prometheus ---
def prometheus_ready() -> bool:
    try:
        with urllib.request.urlopen(f"{PROMETHEUS}/-/ready", timeout=1) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def stop_prometheus() -> None:
    """Stop the data plane's Prometheus (its lifecycle API: --web.enable-lifecycle)."""
    req = urllib.request.Request(f"{PROMETHEUS}/-/quit", method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200, resp.status
    wait_until("Prometheus stopped", lambda: not prometheus_ready(), timeout=30)


def start_prometheus() -> None:
    """hack/dataplane/up.sh starts what is not running (Prometheus, same TSDB) and waits."""
    up = subprocess.run(
        [str(DATAPLANE_DIR / "up.sh")], capture_output=True, text=True, check=False, timeout=180
    )
    assert up.returncode == 0, f"hack/dataplane/up.sh failed:\n{up.stderr[-3000:]}"
    wait_until("Prometheus ready", prometheus_ready, timeout=60)
