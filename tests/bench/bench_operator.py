"""The operator's API writes per step, and its memory and CPU idle and with 100 Rollouts in flight.

    hack/cluster/exec.sh .venv/bin/python tests/bench/bench_operator.py --out /tmp/bench.json

Runs inside the cluster's network namespace against the local cluster (hack/cluster; `up.sh` is
called, it is idempotent). The operator is a real process authenticated as its ServiceAccount
(CRD, namespace and RBAC from crds/ and manifests/, as in the integration tests), started through
a counting wrapper: this same file with the hidden sub-command ``operator``, which hooks, inside
the operator's process and before kanary is imported,

- urllib3's ``HTTPConnectionPool.urlopen`` (kanary's own calls: the official client),
- aiohttp's ``ClientSession._request`` (Kopf's calls: watches, status patches, Events, ...),
- ``handlers._reconcile_one`` (the duration of every tick of every Rollout),

and writes one JSON line per request and per tick, plus an event-loop lag probe (a 100 ms sleep's
overshoot) and kanary's own ``Kube.writes`` counter once a second, to a log the bench then reads.

Parts (``--parts``, default idle,writes,load):

- idle:   the plain operator (``python -m kanary.cli run``, no wrapper), 0 Rollouts: VmRSS and
          CPU over ``--idle-seconds``; then the same for the wrapped operator, for its overhead.
- writes: one full rollout (v1 -> v2) of a 7-step plan (5, pause 1s, 25, pause 1s, 50, pause 1s,
          100) in gateway mode (with an HTTPRoute) and in replica-ratio mode, each in its own
          namespace: every request the operator made for that namespace, by kind, per step (a
          request counts for the tick that made it, a tick for the step it started in; see
          segment_requests), then the namespace's deletion.
- load:   a fresh wrapped operator; idle; ``--rollouts`` Rollouts (replicas 1, gateway mode,
          steps [setWeight 50, pause {}]) created at once, Healthy, rolled out to the pause (all in
          flight), held ``--hold`` seconds, promoted, deleted: VmRSS, CPU, threads, requests,
          tick period and duration, loop lag per phase.
- load-plain: the same with the plain operator (VmRSS and CPU only), for the wrapper's cost.

VmRSS and CPU (utime+stime, % of one core) come from /proc/<pid>/status and /proc/<pid>/stat of
the operator process, sampled every second.

Numbers, not asserts. Every wait is bounded; a timeout is recorded in the results and the bench
goes on. All traffic stays on the loopback of the cluster's network namespace.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import functools
import itertools
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.integration.rollout_objects import httproute  # noqa: E402
from tests.integration.rollout_objects import rollout_body as shared_rollout_body  # noqa: E402

from kanary.status_write import COALESCE_SECONDS  # noqa: E402

GROUP, VERSION, PLURAL = "kanary.dev", "v1alpha1", "rollouts"
GW = ("gateway.networking.k8s.io", "v1", "httproutes")
LIVENESS_PORT, METRICS_PORT = 18090, 18091
LEAD_TIMEOUT = 45.0  # a Lease left by a killed run expires within 15 s (leader.Timings)
OPERATOR_ENV = {"PYTHONMALLOC": "malloc", "MALLOC_ARENA_MAX": "2"}  # as the image sets them
POD_ANNOTATIONS = {  # kwok: an IP at once, Ready exactly 1s later (hack/cluster/README.md)
    "pod-create.stage.kwok.x-k8s.io/delay": "0s",
    "pod-create.stage.kwok.x-k8s.io/jitter-delay": "0s",
    "pod-ready.stage.kwok.x-k8s.io/delay": "1s",
    "pod-ready.stage.kwok.x-k8s.io/jitter-delay": "1s",
    # No bench Rollout has an analysis: nothing needs their metrics. Scraped (the local
    # Prometheus scrapes every 1 s), 400 pods cost about a core of Gin and Prometheus CPU
    # that plain Deployments (no kanary.dev/rollout label, never scraped) do not pay.
    "prometheus.io/scrape": "false",
}
STEPS: list[dict[str, Any]] = [
    {"setWeight": 5},
    {"pause": {"duration": "1s"}},
    {"setWeight": 25},
    {"pause": {"duration": "1s"}},
    {"setWeight": 50},
    {"pause": {"duration": "1s"}},
    {"setWeight": 100},
]
LOAD_STEPS: list[dict[str, Any]] = [{"setWeight": 50}, {"pause": {}}]
MIB = 1024.0

T = TypeVar("T")


# ==== operator side: the counting wrapper, in the operator's own process =====================


class JsonLog:
    """One JSON object per line, thread-safe, line-buffered (a killed operator loses nothing)."""

    def __init__(self, path: Path) -> None:
        self._file: IO[str] = path.open("a", buffering=1)
        self._lock = threading.Lock()
        self._seq = itertools.count()

    def write(self, record: dict[str, Any]) -> None:
        with self._lock:
            record["seq"] = next(self._seq)
            self._file.write(json.dumps(record, default=str) + "\n")


def _body_of(path: str, body: Any) -> Any:
    """Keep the bodies the analysis reads (the Rollout's patches, Events); the size of others."""
    if body is None:
        return None
    if isinstance(body, bytes | str):
        text = body.decode(errors="replace") if isinstance(body, bytes) else body
        try:
            parsed = json.loads(text)
        except ValueError:
            return {"size": len(text)}
    else:
        parsed = body
    if "/rollouts/" in path or path.split("?")[0].endswith("/events"):
        return parsed
    return {"size": len(json.dumps(parsed, default=str))}


def _install_urllib3_hook(log: JsonLog) -> None:
    from urllib3 import connectionpool

    original = connectionpool.HTTPConnectionPool.urlopen
    local = threading.local()

    def urlopen(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if getattr(local, "inside", False):  # a redirect or retry: counted once, as one call
            return original(self, method, url, *args, **kwargs)
        local.inside = True
        started, status = time.time(), None
        try:
            response = original(self, method, url, *args, **kwargs)
            status = response.status
            return response
        finally:
            local.inside = False
            headers = kwargs.get("headers") or {}
            log.write(
                {
                    "type": "request",
                    "client": "kubernetes",
                    "t": started,
                    "dur": time.time() - started,
                    "method": method.upper(),
                    "path": url,
                    "status": status,
                    "ctype": headers.get("Content-Type"),
                    "body": _body_of(url, kwargs.get("body")),
                }
            )

    connectionpool.HTTPConnectionPool.urlopen = urlopen  # type: ignore[method-assign]


def _install_aiohttp_hook(log: JsonLog) -> None:
    import aiohttp
    import yarl

    original = aiohttp.ClientSession._request

    async def _request(self: Any, method: str, str_or_url: Any, **kwargs: Any) -> Any:
        started, status = time.time(), None
        try:
            response = await original(self, method, str_or_url, **kwargs)
            status = response.status
            return response
        finally:
            path = yarl.URL(str(str_or_url)).path_qs
            headers = kwargs.get("headers") or {}
            log.write(
                {
                    "type": "request",
                    "client": "kopf",
                    "t": started,
                    "dur": time.time() - started,
                    "method": method.upper(),
                    "path": path,
                    "status": status,
                    "ctype": headers.get("Content-Type"),
                    "body": _body_of(path, kwargs.get("json")),
                }
            )

    aiohttp.ClientSession._request = _request  # type: ignore[method-assign]


def _install_tick_timer(log: JsonLog) -> None:
    """Wrap kanary's tick of one Rollout (handlers._reconcile_one) to log its start and
    duration."""
    from kanary import handlers

    original = handlers._reconcile_one

    @functools.wraps(original)
    async def timed(key: tuple[str, str]) -> float:
        started, t0 = time.time(), time.perf_counter()
        error = None
        try:
            return await original(key)
        except BaseException as e:
            error = f"{type(e).__name__} {getattr(e, 'status', '') or ''}".strip()
            raise
        finally:
            log.write(
                {
                    "type": "tick",
                    "t": started,
                    "dur": time.perf_counter() - t0,
                    "ns": key[0],
                    "name": key[1],
                    "error": error,
                }
            )

    handlers._reconcile_one = timed  # type: ignore[assignment]


_probe_tasks: set[asyncio.Task[None]] = set()


async def _probe(log: JsonLog) -> None:
    """Event-loop lag (how late a 100 ms sleep wakes up) and kanary's Kube.writes, each second."""
    from kanary import handlers

    lags: list[float] = []
    next_report = time.monotonic() + 1.0
    while True:
        t0 = time.monotonic()
        await asyncio.sleep(0.1)
        lags.append(max(0.0, time.monotonic() - t0 - 0.1))
        if time.monotonic() >= next_report:
            log.write(
                {
                    "type": "probe",
                    "t": time.time(),
                    "lag_max": max(lags),
                    "lag_mean": statistics.fmean(lags),
                    "kube_writes": handlers.runtime().kube.writes,
                }
            )
            lags.clear()
            next_report += 1.0


def _install_probe(log: JsonLog) -> None:
    import kopf

    @kopf.on.startup(id="bench-probe")
    async def start_probe(**_: Any) -> None:
        task = asyncio.get_running_loop().create_task(_probe(log))
        _probe_tasks.add(task)


def operator_main(log_path: Path, kanary_args: Sequence[str]) -> int:
    """The wrapped operator: hooks first, then exactly `kanary run ...`."""
    log = JsonLog(log_path)
    _install_urllib3_hook(log)
    _install_aiohttp_hook(log)
    _install_tick_timer(log)
    _install_probe(log)
    from kanary.cli import main as kanary_main

    return kanary_main(["run", *kanary_args])


# ==== bench side: the cluster, the operator process, the sampler ==============================


def in_netns() -> bool:
    name = os.environ.get("KANARY_NETNS", "kanary")
    try:
        ours, theirs = os.stat("/proc/self/ns/net"), os.stat(f"/run/netns/{name}")
    except OSError:
        return False
    return (ours.st_dev, ours.st_ino) == (theirs.st_dev, theirs.st_ino)


def poll(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.5) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class OperatorRun:
    """One operator process (plain or wrapped), its output and request log in workdir."""

    kubeconfig: Path
    workdir: Path
    label: str
    wrapped: bool
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    readiness: str = ""  # its last /readyz answer

    @property
    def requests_path(self) -> Path:
        return self.workdir / f"{self.label}.requests.jsonl"

    @property
    def output_path(self) -> Path:
        return self.workdir / f"{self.label}.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        kanary_args = [
            "--liveness",
            f"http://127.0.0.1:{LIVENESS_PORT}/healthz",
            "--metrics-port",
            str(METRICS_PORT),
            "--prometheus-url",
            "http://127.0.0.1:9090",  # the local cluster's Prometheus (hack/dataplane)
        ]
        if self.wrapped:
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "operator",
                "--requests-log",
                str(self.requests_path),
                "--",
                *kanary_args,
            ]
        else:
            cmd = [sys.executable, "-m", "kanary.cli", "run", *kanary_args]
        # the allocator the image runs (Dockerfile, operator/kanary/memtrim.py)
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), **OPERATOR_ENV}
        out = self.output_path.open("ab")
        self.started_at = time.time()
        self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        out.close()
        poll("operator liveness", self._alive, timeout=60, interval=0.2)
        try:
            poll("the operator to lead", self._leading, timeout=LEAD_TIMEOUT, interval=0.5)
        except TimeoutError:
            self.stop()
            raise SystemExit(
                f"the bench's operator did not take the Lease kanary-system/kanary-leader in "
                f"{LEAD_TIMEOUT:.0f}s (its /readyz: {self.readiness or 'no answer'!r}): another "
                "operator holds it. Stop that one first (after `make demo`: hack/cluster/exec.sh "
                "kubectl -n kanary-system delete deployment kanary)."
            ) from None

    def _leading(self) -> bool:
        """Its /readyz says "leader": a standby measures nothing (another operator, such as
        the one `make demo` installs in kanary-system, does the work and the writes)."""
        self._alive()
        try:
            url = f"http://127.0.0.1:{METRICS_PORT}/readyz"
            with urllib.request.urlopen(url, timeout=1) as resp:
                said = str(resp.read().decode(errors="replace"))
        except OSError:
            return False
        self.readiness = said
        return said.startswith("leader")

    def _alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.output_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"operator exited with {self.proc.returncode}:\n{tail}")
        try:
            url = f"http://127.0.0.1:{LIVENESS_PORT}/healthz"
            with urllib.request.urlopen(url, timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def records(self) -> list[dict[str, Any]]:
        if not self.requests_path.exists():
            return []
        with self.requests_path.open() as f:
            return [json.loads(line) for line in f if line.strip()]


@dataclass(frozen=True)
class Sample:
    t: float
    phase: str
    rss_kib: int
    cpu_seconds: float
    threads: int


CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_sample(pid: int, phase: str) -> Sample | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rest = stat.rsplit(")", 1)[1].split()  # fields 3.. (comm may hold spaces)
    utime, stime = int(rest[11]), int(rest[12])
    return Sample(
        t=time.time(),
        phase=phase,
        rss_kib=int(fields["VmRSS"].split()[0]),
        cpu_seconds=(utime + stime) / CLK_TCK,
        threads=int(fields["Threads"].strip()),
    )


class Sampler:
    """VmRSS, CPU time and threads of one pid every `interval` seconds, tagged with a phase."""

    def __init__(self, pid: int, interval: float = 1.0) -> None:
        self.pid = pid
        self.interval = interval
        self.phase = "start"
        self.samples: list[Sample] = []
        self.marks: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def set_phase(self, phase: str) -> None:
        self.sample_now()
        self.phase = phase
        self.marks.append((time.time(), phase))
        print(f"[bench {time.strftime('%H:%M:%S')}] {phase}", flush=True)
        self.sample_now()

    def sample_now(self) -> None:
        s = proc_sample(self.pid, self.phase)
        if s is not None:
            self.samples.append(s)

    def _run(self) -> None:
        deadline = time.monotonic() + 4 * 3600  # bounded, whatever happens
        while not self._stop.wait(self.interval) and time.monotonic() < deadline:
            self.sample_now()

    def __enter__(self) -> Sampler:
        self.sample_now()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample_now()

    def phases(self) -> list[tuple[str, float, float]]:
        """(phase, start, end) in order."""
        out = []
        for i, (t, name) in enumerate(self.marks):
            end = self.marks[i + 1][0] if i + 1 < len(self.marks) else time.time()
            out.append((name, t, end))
        return out


def pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def r3(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def samples_summary(samples: Sequence[Sample]) -> dict[str, Any]:
    if not samples:
        return {}
    rss = [s.rss_kib / MIB for s in samples]
    wall = samples[-1].t - samples[0].t
    cpu = samples[-1].cpu_seconds - samples[0].cpu_seconds
    per_sample = [
        100 * (b.cpu_seconds - a.cpu_seconds) / (b.t - a.t)
        for a, b in itertools.pairwise(samples)
        if b.t - a.t >= 0.5
    ]
    return {
        "seconds": round(wall, 1),
        "rss_mib_first": round(rss[0], 1),
        "rss_mib_median": round(statistics.median(rss), 1),
        "rss_mib_max": round(max(rss), 1),
        "rss_mib_last": round(rss[-1], 1),
        "cpu_pct_mean": round(100 * cpu / wall, 1) if wall > 0 else None,
        "cpu_pct_max_1s": round(max(per_sample), 1) if per_sample else None,
        "threads_max": max(s.threads for s in samples),
    }


# ==== classifying the requests ================================================================

RESOURCE_RE = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[^/]+)/[^/]+)"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?$"
)
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
WRITE_KINDS = (
    "status patch",
    "deployment apply",
    "deployment scale",
    "service apply",
    "revision apply",
    "route patch",
    "event",
    "annotation removal",
    "finalizer",
    "rollout metadata",
    "other write",
)
READ_KINDS = ("route get", "get", "list", "watch")


@dataclass(frozen=True)
class Request:
    t: float
    end: float
    client: str
    method: str
    path: str
    status: int | None
    kind: str
    write: bool
    namespace: str | None
    name: str | None
    body: Any

    @property
    def failed(self) -> bool:
        return self.status is None or self.status >= 400


def _rollout_patch_kind(body: Any) -> str:
    if isinstance(body, list):  # JSON patches: Kopf's finalizer, kanary's action consumption
        paths = [str(op.get("path", "")) for op in body if isinstance(op, dict)]
        if any("finalizers" in p for p in paths):
            return "finalizer"
        if any("kanary.dev~1action" in p for p in paths):
            return "annotation removal"
        return "rollout metadata"
    meta = body.get("metadata", {}) if isinstance(body, dict) else {}
    if "finalizers" in meta:
        return "finalizer"
    annotations = meta.get("annotations") or {}
    if any(k.startswith("kanary.dev/action") and v is None for k, v in annotations.items()):
        return "annotation removal"
    return "rollout metadata"


def classify(rec: dict[str, Any]) -> Request:
    method = str(rec["method"])
    path, _, query = str(rec["path"]).partition("?")
    m = RESOURCE_RE.match(path)
    plural = m.group("plural") if m else ""
    name = m.group("name") if m else None
    sub = m.group("sub") if m else None
    ctype = str(rec.get("ctype") or "")
    body = rec.get("body")
    kind: str
    if method not in MUTATING:
        if "watch=true" in query or "watch=1" in query:
            kind = "watch"
        elif plural == "httproutes" and name:
            kind = "route get"
        else:
            kind = "get" if name else "list"
    elif method == "POST" and plural == "events":
        kind = "event"
    elif method == "PATCH" and plural == "rollouts" and sub == "status":
        kind = "status patch"
    elif method == "PATCH" and plural == "rollouts":
        kind = _rollout_patch_kind(body)
    elif method == "PATCH" and plural == "deployments":
        kind = "deployment apply" if "apply-patch" in ctype else "deployment scale"
    elif method == "PATCH" and plural == "services":
        kind = "service apply"
    elif method == "PATCH" and plural == "controllerrevisions":
        kind = "revision apply"
    elif method == "PATCH" and plural == "httproutes":
        kind = "route patch"
    else:
        kind = "other write"
    return Request(
        t=float(rec["t"]),
        end=float(rec["t"]) + float(rec.get("dur") or 0.0),
        client=str(rec.get("client")),
        method=method,
        path=str(rec["path"]),
        status=rec.get("status"),
        kind=kind,
        write=method in MUTATING,
        namespace=m.group("ns") if m else None,
        name=name,
        body=body,
    )


def kind_counts(requests: Iterable[Request]) -> dict[str, int]:
    counts = Counter(r.kind for r in requests)
    return {k: counts[k] for k in (*WRITE_KINDS, *READ_KINDS) if counts[k]}


def write_count(requests: Iterable[Request]) -> int:
    return sum(1 for r in requests if r.write)


# ==== the Kubernetes objects ==================================================================


def rollout_body(
    name: str,
    image: str,
    steps: list[dict[str, Any]],
    *,
    gateway: bool,
    replicas: int,
) -> dict[str, Any]:
    """The integration tests' Rollout, with the bench's kwok timing and the default 30s
    scale-down delay after promotion."""
    return shared_rollout_body(
        name,
        image,
        steps,
        gateway=gateway,
        replicas=replicas,
        pod_annotations=dict(POD_ANNOTATIONS),
        strategy={"scaleDownDelaySeconds": 30},
    )


class Kit:
    """The bench's own client (admin kubeconfig): creates, edits and watches Rollouts."""

    def __init__(self, api: Any) -> None:
        from kubernetes import client

        self.client = client
        self.custom = client.CustomObjectsApi(api)
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)

    def namespace(self, prefix: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:5]}"
        self.core.create_namespace(self.client.V1Namespace(metadata={"name": name}))
        poll(
            f"ServiceAccount {name}/default",
            lambda: self._exists(
                lambda: self.core.read_namespaced_service_account("default", name)
            ),
            timeout=30,
        )
        return name

    def delete_namespace(self, name: str) -> None:
        try:
            self.core.delete_namespace(name, propagation_policy="Background")
        except self.client.ApiException as e:
            if e.status != 404:
                raise

    def namespace_gone(self, name: str) -> bool:
        return not self._exists(lambda: self.core.read_namespace(name))

    def _exists(self, read: Callable[[], object]) -> bool:
        try:
            read()
        except self.client.ApiException as e:
            if e.status == 404:
                return False
            raise
        return True

    def create_rollout(self, ns: str, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)

    def create_route(self, ns: str, name: str) -> None:
        self.custom.create_namespaced_custom_object(GW[0], GW[1], ns, GW[2], httproute(name))

    def rollouts(self, ns: str) -> dict[str, dict[str, Any]]:
        listed: Any = self.custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)
        items = listed["items"]
        return {str(i["metadata"]["name"]): dict(i) for i in items}

    def status(self, ns: str, name: str) -> dict[str, Any]:
        body: Any = self.custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
        return dict(body.get("status") or {})

    def set_image(self, ns: str, name: str, image: str) -> None:
        ops = [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": image}]
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, name, ops, _content_type="application/json-patch+json"
        )

    def promote(self, ns: str, name: str) -> None:
        annotations = {
            "kanary.dev/action": "promote",
            "kanary.dev/action-id": uuid.uuid4().hex[:12],
        }
        self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            ns,
            PLURAL,
            name,
            {"metadata": {"annotations": annotations}},
            _content_type="application/merge-patch+json",
        )

    def terminating_pods(self, ns: str) -> int:
        pods = self.core.list_namespaced_pod(ns, label_selector="kanary.dev/rollout").items
        return sum(1 for p in pods if p.metadata.deletion_timestamp is not None)

    def deployment_replicas(self, ns: str, name: str) -> int | None:
        try:
            dep = self.apps.read_namespaced_deployment(name, ns)
        except self.client.ApiException as e:
            if e.status == 404:
                return None
            raise
        return None if dep.spec is None else dep.spec.replicas

    def stable_image(self, ns: str, name: str) -> str | None:
        try:
            dep = self.apps.read_namespaced_deployment(f"{name}-stable", ns)
        except self.client.ApiException as e:
            if e.status == 404:
                return None
            raise
        if dep.spec is None or dep.spec.template.spec is None:
            return None
        return dep.spec.template.spec.containers[0].image


def count_phases(rollouts: dict[str, dict[str, Any]]) -> Counter[str]:
    return Counter(str((r.get("status") or {}).get("phase")) for r in rollouts.values())


# ==== part: idle ==============================================================================


def idle_part(kubeconfig: Path, workdir: Path, seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, wrapped in (("idle-plain", False), ("idle-wrapped", True)):
        op = OperatorRun(kubeconfig, workdir, label, wrapped)
        op.start()
        try:
            with Sampler(op.pid) as sampler:
                sampler.set_phase(f"{label}: 0 Rollouts")
                time.sleep(seconds)
            last = sampler.samples[-1]
            requests = [classify(r) for r in op.records() if r["type"] == "request"]
            out[label] = {
                "after_seconds": round(last.t - op.started_at, 1),
                "rss_mib": round(last.rss_kib / MIB, 1),
                **samples_summary(sampler.samples),
                "requests": kind_counts(requests) if wrapped else None,
                "writes": write_count(requests) if wrapped else None,
            }
        finally:
            op.stop()
    return out


# ==== part: writes per step ===================================================================


def _segment_label(stage: str | None, index: int | None, steps: Sequence[dict[str, Any]]) -> str:
    if stage == "Stepping" and index is not None:
        step = steps[min(index, len(steps) - 1)]
        if "setWeight" in step:
            what = f"setWeight {step['setWeight']}"
        else:
            duration = (step.get("pause") or {}).get("duration")
            what = f"pause {duration}" if duration else "pause {}"
        return f"step {index + 1}/{len(steps)} {what}"
    if stage == "Promoting":
        return "promoting"
    if stage == "Steady":
        return "steady after"
    return str(stage)


def segment_requests(
    requests: Sequence[Request],
    ticks: Sequence[dict[str, Any]],
    steps: Sequence[dict[str, Any]],
    t_change: float,
    t_end: float,
) -> list[dict[str, Any]]:
    """One rollout's requests from the template change to t_end, by the tick that made them.

    A request belongs to the last tick of this Rollout that started before it (Kopf posts Events
    and the status patch right after the handler, well before the next tick). A tick belongs to
    the step (or stage) the Rollout was in when the tick started, as the status patches wrote it;
    so a step's writes include the tick that leaves it (its weight, its Events, the status that
    enters the next step, and the canary scale the next step needs)."""
    stage: str | None = "Steady"
    index: int | None = None
    own_ticks = sorted(float(tk["t"]) for tk in ticks if t_change <= tk["t"] <= t_end)
    pending = sorted((r for r in requests if t_change <= r.t <= t_end), key=lambda r: r.t)
    patches = [r for r in pending if r.kind == "status patch" and not r.failed]
    order: list[str] = []
    rows: dict[str, dict[str, Any]] = {}
    reqs_of: dict[str, list[Request]] = defaultdict(list)
    label_of_tick: list[str] = []
    applied = 0
    started = False
    for tick_start in own_ticks:
        while applied < len(patches) and patches[applied].end <= tick_start:
            body = patches[applied].body
            st = (body.get("status") or {}) if isinstance(body, dict) else {}
            stage = st.get("stage", stage)
            index = st.get("currentStepIndex", index)
            applied += 1
        label = _segment_label(stage, index, steps)
        started = started or stage != "Steady"
        if not started:
            label = "steady, until a tick sees the new template"
        label_of_tick.append(label)
        if label not in rows:
            order.append(label)
            rows[label] = {"segment": label, "start": tick_start, "ticks": 0}
        rows[label]["ticks"] += 1
        rows[label]["end"] = tick_start
    for req in pending:
        i = max(0, bisect.bisect_right(own_ticks, req.t) - 1)
        label = label_of_tick[i] if label_of_tick else "no tick"
        if label not in rows:
            order.append(label)
            rows[label] = {"segment": label, "start": req.t, "ticks": 0, "end": req.t}
        reqs_of[label].append(req)
    out = []
    for n, label in enumerate(order):
        row = rows[label]
        nxt = rows[order[n + 1]]["start"] if n + 1 < len(order) else t_end
        reqs = reqs_of[label]
        out.append(
            {
                "segment": label,
                "seconds": round(nxt - row["start"], 2),
                "ticks": row["ticks"],
                "writes": write_count(reqs),
                "reads": sum(1 for r in reqs if not r.write),
                "by_kind": kind_counts(reqs),
                "failed": sum(1 for r in reqs if r.failed),
            }
        )
    return out


def one_rollout(
    kit: Kit,
    op: OperatorRun,
    *,
    gateway: bool,
    replicas: int,
    settle: float,
) -> dict[str, Any]:
    mode = "gateway" if gateway else "ratio"
    ns = kit.namespace(f"bench-{mode}")
    name = "web"
    result: dict[str, Any] = {"mode": mode, "namespace": ns, "replicas": replicas, "steps": STEPS}
    try:
        t_create = time.time()
        if gateway:
            kit.create_route(ns, name)
        kit.create_rollout(
            ns, rollout_body(name, "kanary/gin-demo:v1", STEPS, gateway=gateway, replicas=replicas)
        )
        poll(f"{ns}/{name} Healthy", lambda: kit.status(ns, name).get("phase") == "Healthy", 120)
        time.sleep(settle)
        t_change = time.time()
        kit.set_image(ns, name, "kanary/gin-demo:v2")

        def promoted() -> bool:
            return (
                kit.status(ns, name).get("phase") == "Healthy"
                and kit.stable_image(ns, name) == "kanary/gin-demo:v2"
                and kit.deployment_replicas(ns, f"{name}-canary") == 0
            )

        poll(f"{ns}/{name} promoted, canary at 0", promoted, 240, interval=0.2)
        t_done = time.time()
        time.sleep(settle)
        t_end = time.time()
    except TimeoutError as e:
        result["error"] = str(e)
        result["deletion"] = delete_and_wait(kit, op, ns)
        return result
    time.sleep(0.5)  # the last request lines
    result["deletion"] = delete_and_wait(kit, op, ns)
    records = op.records()
    ours = [
        classify(r) for r in records if r["type"] == "request" and f"/namespaces/{ns}/" in r["path"]
    ]
    ticks = [r for r in records if r["type"] == "tick" and r.get("ns") == ns]
    creation = [r for r in ours if t_create <= r.t < t_change]
    rollout = [r for r in ours if t_change <= r.t <= t_end]
    segments = segment_requests(rollout, ticks, STEPS, t_change, t_end)
    total_writes = write_count(rollout)
    result.update(
        {
            "rollout_seconds": round(t_done - t_change, 1),
            "creation": {
                "seconds": round(t_change - t_create, 1),
                "writes": write_count(creation),
                "by_kind": kind_counts(creation),
                "note": f"create v1 until Healthy, then {settle:g}s idle",
            },
            "segments": segments,
            "total": {
                "writes": total_writes,
                "reads": sum(1 for r in rollout if not r.write),
                "by_kind": kind_counts(rollout),
                "writes_per_step": round(total_writes / len(STEPS), 2),
                "ticks": sum(1 for tk in ticks if t_change <= tk["t"] <= t_end),
                "failed": sum(1 for r in rollout if r.failed),
            },
            "idle_after_seconds": settle,
        }
    )
    return result


def delete_and_wait(kit: Kit, op: OperatorRun, ns: str, timeout: float = 240) -> dict[str, Any]:
    """Delete the namespace, wait (bounded) until it is gone: how long, and what the operator
    wrote for it meanwhile (it should write nothing but its finalizer removal)."""
    started = time.time()
    kit.delete_namespace(ns)
    try:
        poll(f"namespace {ns} gone", lambda: kit.namespace_gone(ns), timeout, interval=1.0)
        seconds: float | None = round(time.time() - started, 1)
    except TimeoutError:
        seconds = None
    if not op.wrapped:
        return {"seconds": seconds}
    time.sleep(0.5)
    records = op.records()
    reqs = [
        classify(r)
        for r in records
        if r["type"] == "request" and f"/namespaces/{ns}/" in r["path"] and r["t"] >= started
    ]
    errors = Counter(
        str(r["error"])
        for r in records
        if r["type"] == "tick" and r.get("ns") == ns and r["t"] >= started and r.get("error")
    )
    return {
        "seconds": seconds,
        "writes": write_count(reqs),
        "by_kind": kind_counts(reqs),
        "failed_by_status": dict(Counter(str(r.status) for r in reqs if r.failed)),
        "tick_errors": dict(errors),
    }


def writes_part(
    kit: Kit, kubeconfig: Path, workdir: Path, replicas: int, settle: float
) -> dict[str, Any]:
    op = OperatorRun(kubeconfig, workdir, "writes", wrapped=True)
    op.start()
    try:
        out = {}
        for gateway in (True, False):
            res = one_rollout(kit, op, gateway=gateway, replicas=replicas, settle=settle)
            out[res["mode"]] = res
        probes = [r for r in op.records() if r["type"] == "probe"]
        kanary_writes = probes[-1]["kube_writes"] if probes else None
        everything = [classify(r) for r in op.records() if r["type"] == "request"]
        by_client = Counter(r.client for r in everything if r.write)
        out["process"] = {
            "seconds": round(time.time() - op.started_at, 1),
            "by_kind": kind_counts(everything),
            "cluster_wide": kind_counts(r for r in everything if r.namespace is None),
        }
        out["cross_check"] = {
            "kube_writes_counter": kanary_writes,
            "writes_through_kubernetes_client": by_client.get("kubernetes", 0),
            "writes_through_kopf": by_client.get("kopf", 0),
        }
        return out
    finally:
        op.stop()


# ==== part: load ==============================================================================


def load_part(
    kit: Kit,
    kubeconfig: Path,
    workdir: Path,
    rollouts: int,
    hold: float,
    idle_seconds: float,
    wrapped: bool = True,
    namespaces: int = 1,
    mode: str = "gateway",
    rolling: int | None = None,
) -> dict[str, Any]:
    """The load run; with wrapped=False the plain operator (RSS and CPU only, no request log).
    `rollouts` Rollouts spread over `namespaces` namespaces; `rolling` of them (default all)
    get v2, are held at the pause and promoted."""
    op = OperatorRun(kubeconfig, workdir, "load" if wrapped else "load-plain", wrapped=wrapped)
    op.start()
    gateway = mode == "gateway"
    rolling = rollouts if rolling is None else min(rolling, rollouts)
    timeouts: list[str] = []
    spaces: list[str] = []
    placed: list[tuple[str, str]] = []  # (namespace, name)
    timeline: dict[str, float] = {}
    deletion: dict[str, Any] = {}

    def listed() -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for ns in spaces:
            out.update({f"{ns}/{n}": r for n, r in kit.rollouts(ns).items()})
        return out

    def wait_all(
        what: str, probe: Callable[[dict[str, dict[str, Any]]], bool], limit: float
    ) -> None:
        started = time.time()

        def check() -> bool:
            return probe(listed())

        try:
            poll(what, check, limit, interval=2.0)
            timeline[what] = round(time.time() - started, 1)
        except TimeoutError as e:
            timeouts.append(f"{e}; phases {dict(count_phases(listed()))}")
            timeline[what] = -1

    def promoted(r: dict[str, Any]) -> bool:
        st = r.get("status") or {}
        return bool(
            st.get("phase") == "Healthy"
            and st.get("stableRevision") == (st.get("history") or [{}])[-1].get("revision")
        )

    moving = [f"{ns}/{n}" for ns, n in placed]  # filled below
    try:
        with Sampler(op.pid) as sampler:
            sampler.set_phase("idle, 0 Rollouts")
            time.sleep(idle_seconds)
            spaces.extend(kit.namespace("bench-load") for _ in range(namespaces))
            placed.extend((spaces[i % namespaces], f"r{i:04d}") for i in range(rollouts))
            moving = [f"{ns}/{n}" for ns, n in placed[:rolling]]
            sampler.set_phase(f"create {rollouts} (v1) until all Healthy")
            for ns, n in placed:
                if gateway:
                    kit.create_route(ns, n)
                kit.create_rollout(
                    ns,
                    rollout_body(n, "kanary/gin-demo:v1", LOAD_STEPS, gateway=gateway, replicas=1),
                )
            wait_all(
                f"{rollouts} Healthy",
                lambda rs: len(rs) == rollouts and count_phases(rs)["Healthy"] == rollouts,
                max(420, rollouts * 1.5),
            )
            sampler.set_phase(f"{rollouts} Healthy, steady")
            time.sleep(hold / 2)
            sampler.set_phase(f"v2 on {rolling} until all Paused")
            for ns, n in placed[:rolling]:
                kit.set_image(ns, n, "kanary/gin-demo:v2")
            wait_all(
                f"{rolling} Paused",
                lambda rs: (
                    sum(1 for k in moving if (rs[k].get("status") or {}).get("phase") == "Paused")
                    == rolling
                ),
                max(420, rolling * 1.5),
            )
            # replica-ratio: the stable pods scaled to 0 at the weight step still terminate
            # (their grace period); the Deployments' status changes are written meanwhile
            sampler.set_phase(f"{rolling} Paused, old stable pods terminating")
            poll(
                "no terminating pods",
                lambda: not any(kit.terminating_pods(ns) for ns in spaces) or None,
                timeout=180,
                interval=1.0,
            )
            time.sleep(2 * COALESCE_SECONDS)  # an observation's status write is at most this late
            sampler.set_phase(f"{rolling} in flight (Paused at pause {{}})")
            time.sleep(hold)
            sampler.set_phase(f"promote {rolling} until all Healthy")
            for ns, n in placed[:rolling]:
                kit.promote(ns, n)
            wait_all(
                f"{rolling} promoted",
                lambda rs: all(promoted(rs[k]) for k in moving),
                max(420, rolling * 1.5),
            )
            sampler.set_phase(f"{rollouts} Healthy after promotion, steady")
            time.sleep(hold / 2)
            sampler.set_phase("namespaces deleted, until gone")
            started = time.time()
            for ns in spaces:
                kit.delete_namespace(ns)
            for ns in spaces:
                deletion = delete_and_wait(kit, op, ns, timeout=max(300, rollouts * 0.5))
                if deletion["seconds"] is None:
                    timeouts.append(f"namespace {ns} not gone")
            deletion["seconds_all"] = round(time.time() - started, 1)
            spaces.clear()
            sampler.set_phase("idle again, 0 Rollouts")
            time.sleep(idle_seconds)
    finally:
        for ns in spaces:
            kit.delete_namespace(ns)
        op.stop()
    records = op.records()
    requests = [classify(r) for r in records if r["type"] == "request"]
    ticks = [r for r in records if r["type"] == "tick"]
    probes = [r for r in records if r["type"] == "probe"]
    phases = []
    for name, start, end in sampler.phases():
        samples = [s for s in sampler.samples if start <= s.t <= end]
        reqs = [r for r in requests if start <= r.t < end]
        tks = [tk for tk in ticks if start <= tk["t"] < end]
        lags = [p["lag_max"] for p in probes if start <= p["t"] < end]
        seconds = max(end - start, 1e-9)
        traffic: dict[str, Any] = {
            "writes": write_count(reqs),
            "writes_per_s": round(write_count(reqs) / seconds, 2),
            "reads": sum(1 for r in reqs if not r.write),
            "by_kind": kind_counts(reqs),
            "failed": sum(1 for r in reqs if r.failed),
            "failed_by_status": dict(Counter(str(r.status) for r in reqs if r.failed)),
            "tick_errors": sum(1 for tk in tks if tk.get("error")),
            "ticks": len(tks),
            "ticks_per_s": round(len(tks) / seconds, 1),
            **tick_figures(ticks, start, end),
            "loop_lag_max_s_p50": r3(pct(lags, 0.5)),
            "loop_lag_max_s_max": r3(max(lags) if lags else None),
        }
        if len(samples) >= 2 and tks:
            cpu = samples[-1].cpu_seconds - samples[0].cpu_seconds
            traffic["cpu_ms_per_tick"] = round(1000 * cpu / len(tks), 2)
        if not wrapped:
            traffic = {k: None for k in traffic}
        phases.append({"phase": name, **samples_summary(samples), **traffic})
    return {
        "rollouts": rollouts,
        "namespaces": namespaces,
        "rolling": rolling,
        "operator": "wrapped" if wrapped else "plain (no request log: requests and ticks unknown)",
        "steps": LOAD_STEPS,
        "replicas": 1,
        "mode": mode,
        "hold_seconds": hold,
        "wait_seconds": timeline,
        "timeouts": timeouts,
        "deletion": deletion,
        "phases": phases,
    }


def tick_figures(ticks: Sequence[dict[str, Any]], start: float, end: float) -> dict[str, Any]:
    """Tick duration (the handler) and tick period (start to start, per Rollout) in a phase."""
    by_rollout: dict[tuple[str, str], list[float]] = defaultdict(list)
    durations = []
    for tk in ticks:
        by_rollout[(str(tk["ns"]), str(tk["name"]))].append(float(tk["t"]))
        if start <= tk["t"] < end:
            durations.append(float(tk["dur"]))
    periods = [
        b - a
        for starts in by_rollout.values()
        for a, b in itertools.pairwise(sorted(starts))
        if start <= b < end and b - a < 60  # not across a Rollout's gap
    ]
    return {
        "tick_s_p50": r3(pct(durations, 0.5)),
        "tick_s_p95": r3(pct(durations, 0.95)),
        "tick_s_max": r3(max(durations) if durations else None),
        "period_s_p50": r3(pct(periods, 0.5)),
        "period_s_p95": r3(pct(periods, 0.95)),
        "period_s_max": r3(max(periods) if periods else None),
    }


# ==== the report ==============================================================================


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


SHORT = {
    "status patch": "status",
    "deployment apply": "deploy-apply",
    "deployment scale": "deploy-scale",
    "service apply": "svc-apply",
    "revision apply": "rev-apply",
    "route patch": "route-patch",
    "event": "event",
    "annotation removal": "annot-rm",
    "finalizer": "finalizer",
    "rollout metadata": "rollout-meta",
    "other write": "other-w",
    "route get": "route-GET",
    "get": "GET",
    "list": "LIST",
    "watch": "WATCH",
}


def kind_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    present = {k for r in rows for k in r.get("by_kind", {})}
    return [k for k in (*WRITE_KINDS, *READ_KINDS) if k in present]


def report(results: dict[str, Any]) -> str:
    out: list[str] = []
    idle = results.get("idle")
    if idle:
        out.append("== operator idle, 0 Rollouts ==")
        rows = [
            (
                label,
                v["after_seconds"],
                v["rss_mib"],
                v["rss_mib_max"],
                v["cpu_pct_mean"],
                v["threads_max"],
                v["writes"],
                v["requests"],
            )
            for label, v in idle.items()
        ]
        out.append(
            table(
                ("process", "after s", "RSS MiB", "max", "CPU %", "threads", "writes", "requests"),
                rows,
            )
        )
    writes = results.get("writes")
    if writes:
        for mode in ("gateway", "ratio"):
            res = writes.get(mode)
            if not res:
                continue
            out.append(
                f"\n== API requests for one rollout v1 -> v2, {mode} mode, "
                f"replicas {res['replicas']}, 7 steps =="
            )
            if "error" in res:
                out.append(f"ERROR: {res['error']}; namespace deletion: {res.get('deletion')}")
                continue
            segs = res["segments"]
            cols = kind_columns([*segs, res["total"], res["creation"]])
            rows2: list[list[object]] = []
            for s in segs:
                rows2.append(
                    [s["segment"], s["seconds"], s["ticks"], s["writes"]]
                    + [s["by_kind"].get(k, "") for k in cols]
                )
            tot = res["total"]
            rows2.append(
                [
                    "TOTAL (change .. idle after)",
                    res["rollout_seconds"],
                    tot["ticks"],
                    tot["writes"],
                ]
                + [tot["by_kind"].get(k, "") for k in cols]
            )
            cr = res["creation"]
            rows2.append(
                ["(creation of v1, not in total)", cr["seconds"], "", cr["writes"]]
                + [cr["by_kind"].get(k, "") for k in cols]
            )
            out.append(table(["segment", "s", "ticks", "writes", *[SHORT[k] for k in cols]], rows2))
            out.append(
                f"writes per step: {tot['writes_per_step']} ({tot['writes']} writes / 7 steps); "
                f"reads {tot['reads']}; failed requests {tot['failed']}"
            )
            out.append(f"then namespace deletion: {res.get('deletion')}")
        cc = writes.get("cross_check")
        if cc:
            out.append(f"cross-check: {cc}")
        if writes.get("process"):
            out.append(f"the whole operator process: {writes['process']}")
    for key in ("load", "load_plain"):
        if results.get(key):
            out.extend(load_report(results[key]))
    return "\n".join(out)


def load_report(load: dict[str, Any]) -> list[str]:
    out: list[str] = []
    if load:
        out.append(
            f"\n== {load['rollouts']} Rollouts in {load.get('namespaces', 1)} namespace(s), "
            f"{load.get('rolling', load['rollouts'])} rolling (replicas 1, {load['mode']}, "
            f"[setWeight 50, pause {{}}]), operator {load['operator']} =="
        )
        rows3 = [
            (
                p["phase"],
                p.get("seconds"),
                p.get("rss_mib_median"),
                p.get("rss_mib_max"),
                p.get("cpu_pct_mean"),
                p.get("cpu_pct_max_1s"),
                p.get("threads_max"),
                p["writes"],
                p["writes_per_s"],
                p["reads"],
                p["failed"],
                p["tick_errors"],
                p["ticks_per_s"],
                p["tick_s_p50"],
                p["tick_s_p95"],
                p["period_s_p50"],
                p["period_s_p95"],
                p["period_s_max"],
                p["loop_lag_max_s_max"],
            )
            for p in load["phases"]
        ]
        out.append(
            table(
                (
                    "phase",
                    "s",
                    "RSS med",
                    "RSS max",
                    "CPU%",
                    "CPU% max",
                    "thr",
                    "writes",
                    "w/s",
                    "reads",
                    "failed",
                    "tick err",
                    "ticks/s",
                    "tick p50",
                    "tick p95",
                    "period p50",
                    "p95",
                    "max",
                    "lag max",
                ),
                rows3,
            )
        )
        out.append("writes by kind per phase:")
        for p in load["phases"]:
            if p["by_kind"] is not None:
                per_tick = p.get("cpu_ms_per_tick")
                cpu = f" (CPU {per_tick} ms per tick)" if per_tick is not None else ""
                out.append(f"  {p['phase']}: {p['by_kind']}{cpu}")
        out.append(f"waits (s): {load['wait_seconds']}")
        out.append(f"namespace deletion: {load['deletion']}")
        if load["timeouts"]:
            out.append(f"TIMEOUTS: {load['timeouts']}")
    return out


# ==== main ====================================================================================


def cluster_setup(workdir: Path) -> tuple[Path, Any]:
    from kubernetes import config
    from tests.integration.conftest import Cluster, lib_path
    from tests.integration.operator_fixtures import (
        install_operator_manifests,
        service_account_kubeconfig,
    )

    up = subprocess.run(
        [str(REPO / "hack" / "cluster" / "up.sh")], capture_output=True, text=True, check=False
    )
    if up.returncode != 0:
        raise SystemExit(f"hack/cluster/up.sh failed:\n{up.stderr[-4000:]}")
    kubeconfig = lib_path("KUBECONFIG_PATH")
    api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    cluster = Cluster(kubeconfig=kubeconfig, kubectl=lib_path("KUBECTL"), api=api)
    install_operator_manifests(cluster)
    return service_account_kubeconfig(cluster, workdir / "operator.kubeconfig"), api


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    p.add_argument(
        "--parts",
        default="idle,writes,load",
        help="comma-separated: idle,writes,load,load-plain (load with the unwrapped operator)",
    )
    p.add_argument("--idle-seconds", type=float, default=30.0)
    p.add_argument("--replicas", type=int, default=4, help="replicas of the 7-step rollouts")
    p.add_argument("--settle", type=float, default=5.0, help="idle seconds before/after a rollout")
    p.add_argument("--rollouts", type=int, default=100)
    p.add_argument("--hold", type=float, default=60.0, help="seconds with all Rollouts in flight")
    p.add_argument("--namespaces", type=int, default=1, help="load: spread the Rollouts over N")
    p.add_argument("--mode", choices=("gateway", "ratio"), default="gateway", help="load's mode")
    p.add_argument("--rolling", type=int, default=None, help="load: how many get v2 (all)")
    p.add_argument("--workdir", type=Path, help="logs and request logs (default: a temp dir)")
    return p.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["operator"]:
        sub = argparse.ArgumentParser(prog="bench_operator.py operator")
        sub.add_argument("--requests-log", type=Path, required=True)
        sub.add_argument("kanary_args", nargs=argparse.REMAINDER)
        a = sub.parse_args(argv[1:])
        rest = [x for x in a.kanary_args if x != "--"]
        return operator_main(a.requests_log, rest)
    args = parse_args(argv)
    if not in_netns():
        raise SystemExit(
            "run inside the cluster's network namespace: "
            "hack/cluster/exec.sh .venv/bin/python tests/bench/bench_operator.py"
        )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="kanary-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    parts = set(args.parts.split(","))
    kubeconfig, api = cluster_setup(workdir)
    kit = Kit(api)
    results: dict[str, Any] = {
        "meta": {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "cpus": os.cpu_count(),
            "loadavg_start": os.getloadavg(),
            "workdir": str(workdir),
            "netns": os.environ.get("KANARY_NETNS", "kanary"),
            "args": {k: str(v) for k, v in vars(args).items()},
        }
    }
    try:
        if "idle" in parts:
            results["idle"] = idle_part(kubeconfig, workdir, args.idle_seconds)
        if "writes" in parts:
            results["writes"] = writes_part(kit, kubeconfig, workdir, args.replicas, args.settle)
        spread = {"namespaces": args.namespaces, "mode": args.mode, "rolling": args.rolling}
        if "load" in parts:
            results["load"] = load_part(
                kit, kubeconfig, workdir, args.rollouts, args.hold, args.idle_seconds, **spread
            )
        if "load-plain" in parts:
            results["load_plain"] = load_part(
                kit,
                kubeconfig,
                workdir,
                args.rollouts,
                args.hold,
                args.idle_seconds,
                False,
                **spread,
            )
    finally:
        results["meta"]["loadavg_end"] = os.getloadavg()
        if args.out:
            args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print()
    print(report(results))
    if args.out:
        print(f"\nresults: {args.out}; logs: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
