"""Fixtures and helpers for tests with real traffic (hack/dataplane).

The session fixture `dataplane` makes sure Traefik (the Gateway API data
plane), Alertmanager, Prometheus and the pod runner run in the cluster's network
namespace: hack/dataplane/up.sh is idempotent, so a data plane already up is
reused. It is left running, like the cluster (make cluster-down stops both).
The session fixture `alertmanager` is the data plane's Alertmanager, with a small
client for its API v2.

Import the fixtures into a test module:

    from .dataplane_fixtures import dataplane  # noqa: F401  (pytest fixture)
"""

from __future__ import annotations

import contextlib
import http.client
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiException

from .conftest import REPO_ROOT, Cluster, lib_path, wait_until
from .rollout_objects import ON_KWOK

DATAPLANE_DIR = REPO_ROOT / "hack" / "dataplane"
GATEWAY_PORT = 8000
TRAEFIK_API = "http://127.0.0.1:8080"
PROMETHEUS = "http://127.0.0.1:9090"
IMAGE_REPO = "kanary/gin-demo"
APP_PORT = 8080
GW_GROUP, GW_VERSION = "gateway.networking.k8s.io", "v1"

CREATE = "pod-create.stage.kwok.x-k8s.io"
READY = "pod-ready.stage.kwok.x-k8s.io"


def kwok_timing(create: str = "0s", ready: str = "1s") -> dict[str, str]:
    """kwok annotations: IP after `create`, Ready exactly `ready` later. The
    runner starts the process when the IP is there, so 1s lets it listen first."""
    return {
        f"{CREATE}/delay": create,
        f"{CREATE}/jitter-delay": create,
        f"{READY}/delay": ready,
        f"{READY}/jitter-delay": ready,
    }


NEVER_READY = kwok_timing(ready="876000h")


def _dataplane_var(name: str) -> str:
    out = subprocess.run(
        ["bash", "-c", f'source "$0" && printf %s "${name}"', str(DATAPLANE_DIR / "lib.sh")],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


@dataclass(frozen=True)
class Gateway:
    namespace: str
    name: str


@dataclass(frozen=True)
class DataPlane:
    cluster: Cluster
    gateway: Gateway
    state: Path  # $KANARY_STATE/dataplane
    pid_dir: Path  # $KANARY_STATE/pids

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.cluster.api)


def gateway_from_manifests() -> Gateway:
    for f in sorted((REPO_ROOT / "manifests" / "gateway").glob("*.y*ml")):
        for doc in yaml.safe_load_all(f.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Gateway":
                meta = doc["metadata"]
                return Gateway(namespace=meta.get("namespace", "default"), name=meta["name"])
    raise AssertionError("no Gateway in manifests/gateway/")


@pytest.fixture(scope="session")
def dataplane(cluster: Cluster) -> Iterator[DataPlane]:
    """Traefik, Prometheus and the pod runner, up (started if needed, with the
    binaries built if missing). Left running afterwards, like the cluster:
    another run may be using them; make cluster-down stops them."""
    # build.sh returns at once when the binaries are cached
    build = subprocess.run(
        [str(DATAPLANE_DIR / "build.sh")], capture_output=True, text=True, check=False
    )
    if build.returncode != 0:
        pytest.fail(f"hack/dataplane/build.sh failed:\n{build.stderr[-4000:]}", pytrace=False)
    up = subprocess.run([str(DATAPLANE_DIR / "up.sh")], capture_output=True, text=True, check=False)
    if up.returncode != 0:
        pytest.fail(
            f"hack/dataplane/up.sh failed ({up.returncode}):\n{up.stderr[-4000:]}", pytrace=False
        )
    yield DataPlane(
        cluster=cluster,
        gateway=gateway_from_manifests(),
        state=Path(_dataplane_var("DATAPLANE_STATE")),
        pid_dir=lib_path("PID_DIR"),
    )


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy


def http_json(
    url: str, method: str = "GET", body: Any = None, timeout: float = 5.0
) -> tuple[int, Any]:
    """One request (JSON body if given); (status, parsed JSON body or None). Any status is
    returned, not raised; connection errors are raised."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with _DIRECT.open(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, None


@dataclass(frozen=True)
class Alertmanager:
    """The data plane's Alertmanager (hack/dataplane/up.sh): Debian's package at the version
    hack/dataplane/lib.sh pins, one route to a receiver that sends nothing."""

    url: str  # http://127.0.0.1:9093, in the netns
    node_url: str  # http://10.243.0.1:9093, for pods on the real node
    version: str  # ALERTMANAGER_VERSION of lib.sh
    deb_version: str  # ALERTMANAGER_DEB_VERSION of lib.sh

    def status(self) -> dict[str, Any]:
        code, doc = http_json(f"{self.url}/api/v2/status")
        assert code == 200 and isinstance(doc, dict), (code, doc)
        return doc

    def post(self, alerts: list[dict[str, Any]]) -> None:
        """POST /api/v2/alerts (labels, annotations, startsAt/endsAt as RFC 3339)."""
        code, doc = http_json(f"{self.url}/api/v2/alerts", "POST", alerts)
        assert code == 200, f"POST /api/v2/alerts: HTTP {code} {doc}"

    def alerts(self, active: bool = True, **labels: str) -> list[dict[str, Any]]:
        """GET /api/v2/alerts: the alerts whose labels equal `labels` (active ones only, or
        all that Alertmanager lists)."""
        query = [("filter", f'{k}="{v}"') for k, v in sorted(labels.items())]
        if active:
            query += [("active", "true"), ("silenced", "false"), ("inhibited", "false")]
        code, doc = http_json(f"{self.url}/api/v2/alerts?{urlencode(query)}")
        assert code == 200 and isinstance(doc, list), (code, doc)
        return doc


@pytest.fixture(scope="session")
def alertmanager(dataplane: DataPlane) -> Alertmanager:
    """The data plane's Alertmanager, ready (up.sh waited for /-/ready)."""
    return Alertmanager(
        url=f"http://{_dataplane_var('ALERTMANAGER_ADDR')}",
        node_url=f"http://{_dataplane_var('ALERTMANAGER_NODE_ADDR')}",
        version=_dataplane_var("ALERTMANAGER_VERSION"),
        deb_version=_dataplane_var("ALERTMANAGER_DEB_VERSION"),
    )


# ------------------------------------------------------------- manifests ---
def gin_deployment(
    name: str,
    tag: str,
    replicas: int,
    labels: dict[str, str],
    env: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    grace_s: int = 10,
    kwok: bool = True,
) -> dict[str, Any]:
    """A Deployment of the Gin service (image kanary/gin-demo:<tag>), on a kwok node
    unless kwok=False (then on the real node: annotations do nothing there)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": annotations if annotations is not None else kwok_timing(),
                },
                "spec": {
                    "terminationGracePeriodSeconds": grace_s,
                    "containers": [
                        {
                            "name": "app",
                            "image": f"{IMAGE_REPO}:{tag}",
                            "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
                            "ports": [{"name": "http", "containerPort": APP_PORT}],
                        }
                    ],
                    **(ON_KWOK if kwok else {}),
                },
            },
        },
    }


def service(name: str, selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "selector": selector,
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }


def http_route(
    name: str, gateway: Gateway, hostname: str, backends: list[tuple[str, int]]
) -> dict[str, Any]:
    return {
        "apiVersion": f"{GW_GROUP}/{GW_VERSION}",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {
            "parentRefs": [{"name": gateway.name, "namespace": gateway.namespace}],
            "hostnames": [hostname],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [{"name": s, "port": 80, "weight": w} for s, w in backends],
                }
            ],
        },
    }


def get_route(dp: DataPlane, namespace: str, route: str) -> dict[str, Any]:
    obj = dp.custom.get_namespaced_custom_object(
        GW_GROUP, GW_VERSION, namespace, "httproutes", route
    )
    assert isinstance(obj, dict)
    return obj


def set_weights(dp: DataPlane, namespace: str, route: str, weights: list[int]) -> None:
    """Merge-patch the weights of the route's first rule (the way kanary does)."""
    obj = get_route(dp, namespace, route)
    refs = obj["spec"]["rules"][0]["backendRefs"]
    assert len(refs) == len(weights)
    patch = {
        "spec": {
            "rules": [
                {
                    **obj["spec"]["rules"][0],
                    "backendRefs": [{**r, "weight": w} for r, w in zip(refs, weights, strict=True)],
                }
            ]
        }
    }
    dp.custom.patch_namespaced_custom_object(
        GW_GROUP, GW_VERSION, namespace, "httproutes", route, patch
    )


# ---------------------------------------------------------------- waiting ---
def pods_of(core: client.CoreV1Api, namespace: str, selector: dict[str, str]) -> list[Any]:
    sel = ",".join(f"{k}={v}" for k, v in selector.items())
    return list(core.list_namespaced_pod(namespace, label_selector=sel).items)


def is_ready(pod: Any) -> bool:
    conds = (pod.status.conditions if pod.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conds)


def get_json(url: str, host: str | None = None, timeout: float = 2.0) -> tuple[int, Any]:
    """GET url (loopback or a pod IP inside the netns); (status, JSON body or None)."""
    from urllib.parse import urlsplit

    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname or "", u.port or 80, timeout=timeout)
    try:
        conn.request("GET", u.path or "/", headers={"Host": host} if host else {})
        resp = conn.getresponse()
        body = resp.read()
        try:
            return resp.status, json.loads(body)
        except ValueError:
            return resp.status, None
    finally:
        conn.close()


def process_answers(ip: str, port: int = APP_PORT) -> dict[str, Any] | None:
    """The JSON of GET / straight from the pod's process, or None if nothing listens."""
    try:
        status, doc = get_json(f"http://{ip}:{port}/", timeout=1.0)
    except OSError:
        return None
    return doc if status == 200 and isinstance(doc, dict) else None


def wait_ready_with_processes(
    core: client.CoreV1Api, namespace: str, selector: dict[str, str], n: int, timeout: float = 60
) -> list[Any]:
    """Wait until exactly n pods match, all Ready, each with a process answering
    on its pod IP as that pod."""

    def probe() -> list[Any] | None:
        pods = [p for p in pods_of(core, namespace, selector) if not p.metadata.deletion_timestamp]
        if len(pods) != n or not all(is_ready(p) and p.status.pod_ip for p in pods):
            return None
        for p in pods:
            doc = process_answers(p.status.pod_ip)
            if doc is None or doc.get("pod") != p.metadata.name:
                return None
        return pods

    return wait_until(f"{n} Ready pods with processes for {selector}", probe, timeout=timeout)


def wait_route_accepted(dp: DataPlane, namespace: str, route: str, timeout: float = 30) -> None:
    def probe() -> bool:
        obj = get_route(dp, namespace, route)
        for parent in (obj.get("status") or {}).get("parents") or []:
            conds = {c["type"]: c["status"] for c in parent.get("conditions") or []}
            if conds.get("Accepted") == "True" and conds.get("ResolvedRefs") == "True":
                return True
        return False

    wait_until(f"HTTPRoute {namespace}/{route} Accepted by Traefik", probe, timeout=timeout)


def sample(host: str, n: int, timeout: float = 2.0) -> tuple[Counter[str], Counter[str]]:
    """n sequential GETs through the Gateway: (versions, pods); errors count
    as version "status:<code>" / "error:<type>"."""
    versions: Counter[str] = Counter()
    pods: Counter[str] = Counter()
    conn = http.client.HTTPConnection("127.0.0.1", GATEWAY_PORT, timeout=timeout)
    try:
        for _ in range(n):
            try:
                conn.request("GET", "/", headers={"Host": host})
                resp = conn.getresponse()
                body = resp.read()
            except (OSError, http.client.HTTPException) as e:
                versions[f"error:{type(e).__name__}"] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", GATEWAY_PORT, timeout=timeout)
                continue
            if resp.status != 200:
                versions[f"status:{resp.status}"] += 1
                continue
            doc = json.loads(body)
            versions[str(doc["version"])] += 1
            pods[str(doc["pod"])] += 1
    finally:
        conn.close()
    return versions, pods


def wait_gateway_serves(
    host: str, expect: set[str], pods: set[str] | None = None, timeout: float = 30
) -> float:
    """Wait until the Gateway answers the host with exactly the versions in
    `expect` (200s only) and, if given, exactly the pods in `pods`, over 100
    requests; returns the seconds it took."""
    t0 = time.monotonic()

    def probe() -> bool:
        versions, seen = sample(host, 100)
        return set(versions) == expect and (pods is None or set(seen) == pods)

    wait_until(f"Gateway serving {sorted(expect)} for {host}", probe, timeout=timeout, interval=0.1)
    return time.monotonic() - t0


def run_load(host: str, count: int, rate: float, concurrency: int = 8) -> dict[str, Any]:
    """hack/dataplane/load.py through the Gateway; its JSON report."""
    out = subprocess.run(
        [
            sys.executable,
            str(DATAPLANE_DIR / "load.py"),
            "--host",
            host,
            "--count",
            str(count),
            "--rate",
            str(rate),
            "--duration",
            str(count / rate + 1),
            "--concurrency",
            str(concurrency),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=count / rate + 60,
    )
    report: dict[str, Any] = json.loads(out.stdout)
    return report


class BackgroundLoad:
    """hack/dataplane/load.py running in the background (see start_load)."""

    def __init__(self, proc: subprocess.Popen[str], timeout: float) -> None:
        self.proc = proc
        self.timeout = timeout

    def report(self) -> dict[str, Any]:
        out, err = self.proc.communicate(timeout=self.timeout)
        assert self.proc.returncode == 0, err
        rep: dict[str, Any] = json.loads(out)
        return rep


@contextlib.contextmanager
def start_load(host: str, rate: float, duration_s: float) -> Iterator[BackgroundLoad]:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(DATAPLANE_DIR / "load.py"),
            "--host",
            host,
            "--rate",
            str(rate),
            "--duration",
            str(duration_s),
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield BackgroundLoad(proc, timeout=duration_s + 60)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)


def process_request_count(ip: str, port: int = APP_PORT) -> int:
    """http_requests_total for GET / summed over codes, read from the process's /metrics."""
    conn = http.client.HTTPConnection(ip, port, timeout=2)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("http_requests_total{") and 'route="/"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def record(dp: DataPlane, key: str, value: Any) -> None:
    """Keep a measurement in $KANARY_STATE/dataplane/measurements.json (and print it)."""
    path = dp.state / "measurements.json"
    data: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text())
    data[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    print(f"[measured] {key} = {value}")


def delete_quietly(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except ApiException as e:
        if e.status != 404:
            raise
