"""Real traffic in the local cluster (hack/dataplane): Traefik splits requests by
HTTPRoute weights across real Gin processes that the pod runner starts behind
kwok's pods, only to Ready endpoints, and Prometheus discovers and scrapes the
pods with the project's scrape config.

Measurements are printed ("[measured] ...") and kept in
$KANARY_STATE/dataplane/measurements.json."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.parse
import urllib.request
from collections import Counter
from typing import Any, cast

import pytest
from kubernetes import client

from .conftest import lib_path, wait_until
from .dataplane_fixtures import (
    APP_PORT,
    NEVER_READY,
    PROMETHEUS,
    DataPlane,
    dataplane,  # noqa: F401  (pytest fixture)
    get_json,
    gin_deployment,
    http_route,
    kwok_timing,
    pods_of,
    process_answers,
    process_request_count,
    record,
    run_load,
    sample,
    service,
    set_weights,
    start_load,
    wait_gateway_serves,
    wait_ready_with_processes,
    wait_route_accepted,
)

pytestmark = pytest.mark.integration


def _create(
    apps: client.AppsV1Api, core: client.CoreV1Api, namespace: str, *objs: dict[str, Any]
) -> None:
    for obj in objs:
        if obj["kind"] == "Deployment":
            apps.create_namespaced_deployment(namespace, cast(Any, obj))
        elif obj["kind"] == "Service":
            core.create_namespaced_service(namespace, cast(Any, obj))
        elif obj["kind"] == "Pod":
            core.create_namespaced_pod(namespace, cast(Any, obj))
        else:
            raise AssertionError(obj["kind"])


def _route(dp: DataPlane, namespace: str, obj: dict[str, Any]) -> None:
    dp.custom.create_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", obj
    )
    wait_route_accepted(dp, namespace, obj["metadata"]["name"])


def _names(pods: list[Any]) -> set[str]:
    return {p.metadata.name for p in pods}


def test_weighted_split_and_weight_change(
    dataplane: DataPlane,  # noqa: F811
    namespace: str,
    apps: client.AppsV1Api,
    core: client.CoreV1Api,
) -> None:
    dp = dataplane
    host = f"{namespace}.kanary.test"
    v1 = {"app": "gin", "version": "v1"}
    v2 = {"app": "gin", "version": "v2"}
    _create(
        apps,
        core,
        namespace,
        gin_deployment("gin-v1", "v1", 2, v1),
        gin_deployment("gin-v2", "v2", 1, v2),
        service("gin-v1", v1),
        service("gin-v2", v2),
    )
    pods1 = wait_ready_with_processes(core, namespace, v1, 2)
    pods2 = wait_ready_with_processes(core, namespace, v2, 1)
    # APP_VERSION comes from the image tag: each process says its own version.
    for p in pods1:
        assert (process_answers(p.status.pod_ip) or {}).get("version") == "v1"
    for p in pods2:
        assert (process_answers(p.status.pod_ip) or {}).get("version") == "v2"

    _route(dp, namespace, http_route("gin", dp.gateway, host, [("gin-v1", 90), ("gin-v2", 10)]))
    wait_gateway_serves(host, {"v1", "v2"}, _names(pods1) | _names(pods2))

    before = {p.metadata.name: process_request_count(p.status.pod_ip) for p in pods1 + pods2}
    rep = run_load(host, count=2000, rate=400)
    after = {p.metadata.name: process_request_count(p.status.pod_ip) for p in pods1 + pods2}

    assert rep["sent"] == 2000, rep
    assert rep["status"] == {"200": 2000}, rep
    assert set(rep["version"]) == {"v1", "v2"}, rep
    share = 100.0 * rep["version"]["v2"] / 2000
    record(dp, "split_90_10_v2_percent", round(share, 2))
    assert abs(share - 10.0) <= 3.0, rep
    # The responses' pods are exactly the Deployments' pods, each version from
    # its own Deployment, and every process counted the requests it answered.
    assert set(rep["pod"]) <= _names(pods1) | _names(pods2), rep
    assert rep["version_status"]["v2 200"] == sum(rep["pod"].get(n, 0) for n in _names(pods2))
    for name in before:
        assert after[name] - before[name] == rep["pod"].get(name, 0), (name, before, after, rep)

    # 90/10 -> 50/50: time until the traffic shows it (a 50-request batch with
    # >= 30% v2; at 10% that has probability ~1e-4).
    t0 = time.monotonic()
    set_weights(dp, namespace, "gin", [50, 50])
    applied = None
    deadline = t0 + 60
    while time.monotonic() < deadline:
        versions, _ = sample(host, 50)
        if versions.get("v2", 0) >= 15:
            applied = time.monotonic() - t0
            break
    assert applied is not None, "weights 50/50 not in effect after 60s"
    record(dp, "weight_change_90_10_to_50_50_seconds", round(applied, 2))
    rep = run_load(host, count=1000, rate=400)
    assert rep["status"] == {"200": 1000}, rep
    share = 100.0 * rep["version"].get("v2", 0) / 1000
    record(dp, "split_50_50_v2_percent", round(share, 2))
    assert abs(share - 50.0) <= 5.0, rep


def test_scaled_down_pods_stop_getting_traffic(
    dataplane: DataPlane,  # noqa: F811
    namespace: str,
    apps: client.AppsV1Api,
    core: client.CoreV1Api,
) -> None:
    dp = dataplane
    host = f"{namespace}.kanary.test"
    sel = {"app": "gin"}
    # SHUTDOWN_DELAY: a stopping process keeps serving (readyz 503) while the
    # endpoint is removed, as apps do on a real cluster with a preStop sleep.
    _create(
        apps,
        core,
        namespace,
        gin_deployment("gin", "v1", 3, sel, env={"SHUTDOWN_DELAY": "3s"}),
        service("gin", sel),
    )
    pods = wait_ready_with_processes(core, namespace, sel, 3)
    _route(dp, namespace, http_route("gin", dp.gateway, host, [("gin", 100)]))
    wait_gateway_serves(host, {"v1"}, _names(pods))
    rep = run_load(host, count=300, rate=300)
    assert rep["status"] == {"200": 300}, rep
    assert set(rep["pod"]) == _names(pods), rep

    t0 = time.monotonic()
    apps.patch_namespaced_deployment_scale("gin", namespace, {"spec": {"replicas": 1}})
    seen: Counter[str] = Counter()
    errors: Counter[str] = Counter()

    def only_one_pod() -> bool:
        versions, pods_hit = sample(host, 60)
        seen.update(pods_hit)
        errors.update({k: v for k, v in versions.items() if k != "v1"})
        return len(pods_hit) == 1

    wait_until("traffic on one pod only", only_one_pod, timeout=60, interval=0.05)
    record(dp, "scale_down_3_to_1_seconds", round(time.monotonic() - t0, 2))
    record(dp, "scale_down_errors_during_transition", dict(errors))

    remaining = wait_ready_with_processes(core, namespace, sel, 1)
    gone = _names(pods) - _names(remaining)
    assert len(gone) == 2
    rep = run_load(host, count=300, rate=300)
    assert rep["status"] == {"200": 300}, rep
    assert set(rep["pod"]) == _names(remaining), rep
    # the scaled-down pods' processes are stopped
    old_ips = [p.status.pod_ip for p in pods if p.metadata.name in gone]
    wait_until(
        "processes of deleted pods stopped",
        lambda: all(process_answers(ip) is None for ip in old_ips),
        timeout=30,
    )


def test_not_ready_pod_gets_no_traffic(
    dataplane: DataPlane,  # noqa: F811
    namespace: str,
    apps: client.AppsV1Api,
    core: client.CoreV1Api,
) -> None:
    dp = dataplane
    host = f"{namespace}.kanary.test"
    sel = {"app": "gin"}
    _create(apps, core, namespace, gin_deployment("gin", "v1", 2, sel), service("gin", sel))
    # A bare pod the Service selects, that kwok never makes Ready: its process
    # runs (the runner starts it once the pod has its IP) and answers directly.
    tmpl = gin_deployment("x", "v1-unready", 1, sel, annotations=NEVER_READY)["spec"]["template"]
    pod_obj = {"apiVersion": "v1", "kind": "Pod", **tmpl}
    pod_obj["metadata"] = {**tmpl["metadata"], "name": "unready"}
    _create(apps, core, namespace, pod_obj)

    def unready_process() -> str | None:
        pod = core.read_namespaced_pod("unready", namespace)
        ip = pod.status.pod_ip if pod.status else None
        doc = process_answers(ip) if ip else None
        return ip if doc is not None and doc.get("version") == "v1-unready" else None

    ip = wait_until("the never-Ready pod's process answering", unready_process, timeout=60)
    pod = core.read_namespaced_pod("unready", namespace)
    conditions = (pod.status.conditions if pod.status else None) or []
    assert not any(c.type == "Ready" and c.status == "True" for c in conditions)

    def ready_pods() -> list[Any] | None:
        ps = [p for p in pods_of(core, namespace, sel) if p.metadata.name != "unready"]
        ok = [p for p in ps if p.status.pod_ip and process_answers(p.status.pod_ip)]
        return ps if len(ps) == 2 and len(ok) == 2 else None

    ready_list = wait_until("2 Deployment pods with processes", ready_pods, timeout=60)

    # The EndpointSlice lists the unready pod, not ready.
    discovery = client.DiscoveryV1Api(dp.cluster.api)

    def endpoint_states() -> dict[str, bool] | None:
        slices = discovery.list_namespaced_endpoint_slice(
            namespace, label_selector="kubernetes.io/service-name=gin"
        ).items
        states = {
            ep.addresses[0]: bool(ep.conditions and ep.conditions.ready)
            for s in slices
            for ep in s.endpoints or []
        }
        return states if len(states) == 3 else None

    states = wait_until("EndpointSlice with 3 endpoints", endpoint_states, timeout=30)
    assert states[ip] is False, states

    _route(dp, namespace, http_route("gin", dp.gateway, host, [("gin", 100)]))
    wait_gateway_serves(host, {"v1"}, _names(ready_list))
    before_unready = process_request_count(ip)  # our direct probes count too
    rep = run_load(host, count=500, rate=300)
    assert rep["status"] == {"200": 500}, rep
    assert rep["version"] == {"v1": 500}, rep
    assert "unready" not in rep["pod"], rep
    assert set(rep["pod"]) == _names(ready_list), rep
    assert process_request_count(ip) == before_unready, "the unready pod answered via the Gateway"


PROBE_ANNOTATION = "kanary.dev/readiness-probe"


def _ready_condition(pod: Any) -> str | None:
    for c in (pod.status.conditions if pod.status else None) or []:
        if c.type == "Ready":
            return str(c.status)
    return None


def _readyz(ip: str) -> int | None:
    """The status code of the process's own /readyz, None if nothing answers."""
    try:
        return get_json(f"http://{ip}:{APP_PORT}/readyz", timeout=1.0)[0]
    except OSError:
        return None


def test_pod_turns_not_ready_when_its_readiness_probe_fails(
    dataplane: DataPlane,  # noqa: F811
    namespace: str,
    apps: client.AppsV1Api,
    core: client.CoreV1Api,
) -> None:
    """UNREADY_AFTER=3s: kwok makes the pod Ready (1s), its process's /readyz
    turns 503 at 3s, the runner's probe (periodSeconds 1, failureThreshold 3
    by default) fails 3 times in a row: the pod turns NotReady in the API,
    its EndpointSlice endpoint not ready, the Deployment's readyReplicas 0,
    the Gateway sends everything to the other pod. A restarted process
    (ready again for 3s) makes the pod Ready again."""
    dp = dataplane
    runner_log = lib_path("LOG_DIR") / "pod-runner.log"
    if "readiness probes" not in runner_log.read_text(errors="replace"):
        pytest.fail(
            "the running pod runner predates readiness probes: restart it"
            " (hack/dataplane/down.sh && hack/dataplane/up.sh)",
            pytrace=False,
        )
    stages = lib_path("CONF_DIR") / "kwok-stages.yaml"
    assert "kanary-pod-readiness-probe-failed" in stages.read_text(), "run hack/cluster/up.sh"

    host = f"{namespace}.kanary.test"
    period_s, failure_threshold = 1, 3  # failureThreshold: Kubernetes' default
    good_sel, bad_sel = {"app": "gin", "track": "good"}, {"app": "gin", "track": "bad"}
    good = gin_deployment("good", "v1", 1, good_sel)
    bad = gin_deployment("bad", "v2", 1, bad_sel, env={"UNREADY_AFTER": "3s"})
    for dep in (good, bad):
        dep["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = {
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": period_s,
        }
    _create(apps, core, namespace, good, bad, service("gin", {"app": "gin"}))

    def bad_pod() -> Any:
        ps = [p for p in pods_of(core, namespace, bad_sel) if not p.metadata.deletion_timestamp]
        return ps[0] if len(ps) == 1 and ps[0].status and ps[0].status.pod_ip else None

    def bad_ready() -> Any:
        p = bad_pod()
        return p if p is not None and _ready_condition(p) == "True" else None

    pod: Any = wait_until("the UNREADY_AFTER pod Ready (kwok)", bad_ready, timeout=60, interval=0.1)
    name, ip = pod.metadata.name, pod.status.pod_ip
    (good_pod,) = wait_ready_with_processes(core, namespace, good_sel, 1)

    # the process turns unready on its own clock; then the API follows
    wait_until(
        "the process's /readyz at 503", lambda: _readyz(ip) == 503, timeout=30, interval=0.05
    )
    t_unready = time.monotonic()

    def not_ready() -> Any:
        p = core.read_namespaced_pod(name, namespace)
        return p if _ready_condition(p) == "False" else None

    bound = period_s * failure_threshold + 3
    pod = wait_until("the pod NotReady in the API", not_ready, timeout=bound + 30, interval=0.1)
    took = time.monotonic() - t_unready
    record(dp, "readiness_probe_failure_to_not_ready_s", round(took, 2))
    assert took <= bound, f"NotReady {took:.1f}s after /readyz turned 503 (bound {bound}s)"
    assert pod.status.phase == "Running"
    assert [cs.ready for cs in pod.status.container_statuses] == [False]
    assert (pod.metadata.annotations or {}).get(PROBE_ANNOTATION) == "failure"
    assert process_answers(ip) is not None  # the process still serves: only its traffic goes

    discovery = client.DiscoveryV1Api(dp.cluster.api)

    def endpoint_states() -> dict[str, bool] | None:
        slices = discovery.list_namespaced_endpoint_slice(
            namespace, label_selector="kubernetes.io/service-name=gin"
        ).items
        states = {
            ep.addresses[0]: bool(ep.conditions and ep.conditions.ready)
            for s in slices
            for ep in s.endpoints or []
        }
        return states if states.get(ip) is False else None

    states = wait_until("the pod's endpoint not ready", endpoint_states, timeout=10)
    assert states[good_pod.status.pod_ip] is True, states

    def no_ready_replicas() -> bool:
        st = apps.read_namespaced_deployment_status("bad", namespace).status
        return st is not None and not st.ready_replicas

    wait_until("Deployment bad: readyReplicas 0", no_ready_replicas, timeout=10)
    _route(dp, namespace, http_route("gin", dp.gateway, host, [("gin", 100)]))
    wait_gateway_serves(host, {"v1"}, {good_pod.metadata.name})

    # Recovery: a new process (the old one killed; the runner restarts it) is
    # ready for 3s again: the probe succeeds, the pod turns Ready again.
    pid_file = dp.pid_dir / "pods" / f"{namespace}_{name}_app.pid"
    old_pid = int(pid_file.read_text())
    os.kill(old_pid, signal.SIGKILL)  # this test's own pod process
    t_kill = time.monotonic()

    def ready_again() -> bool:
        p: Any = core.read_namespaced_pod(name, namespace)
        return _ready_condition(p) == "True" and bool(p.status.container_statuses[0].ready)

    wait_until("the pod Ready again after the restart", ready_again, timeout=15, interval=0.1)
    record(dp, "readiness_probe_restart_to_ready_s", round(time.monotonic() - t_kill, 2))
    assert int(pid_file.read_text()) != old_pid
    pod = core.read_namespaced_pod(name, namespace)
    assert (pod.metadata.annotations or {}).get(PROBE_ANNOTATION) == "success"
    # ... and NotReady again once the new process's 3s are over
    wait_until("the pod NotReady again", lambda: not_ready() is not None, timeout=bound + 10)


def _prom(path: str, **params: str) -> Any:
    url = f"{PROMETHEUS}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=5) as resp:  # loopback in the netns
        doc = json.loads(resp.read())
    assert doc["status"] == "success", doc
    return doc["data"]


def test_prometheus_discovers_and_scrapes_pods(
    dataplane: DataPlane,  # noqa: F811
    namespace: str,
    apps: client.AppsV1Api,
    core: client.CoreV1Api,
) -> None:
    dp = dataplane
    host = f"{namespace}.kanary.test"
    tracks = {"stable": ("v1", "rev1", 2), "canary": ("v2", "rev2", 1)}
    all_pods: dict[str, tuple[str, str]] = {}  # pod -> (track, revision)
    for track, (tag, rev, n) in tracks.items():
        labels = {
            "app": "gin",
            "kanary.dev/rollout": "demo",
            "kanary.dev/track": track,
            "kanary.dev/revision": rev,
        }
        selector = {k: v for k, v in labels.items() if k != "kanary.dev/revision"}
        dep = gin_deployment(f"demo-{track}", tag, n, selector, annotations=kwok_timing())
        dep["spec"]["template"]["metadata"]["labels"] = labels
        _create(apps, core, namespace, dep, service(f"demo-{track}", selector))
        for p in wait_ready_with_processes(core, namespace, selector, n):
            all_pods[p.metadata.name] = (track, rev)

    _route(
        dp,
        namespace,
        http_route("demo", dp.gateway, host, [("demo-stable", 80), ("demo-canary", 20)]),
    )
    wait_gateway_serves(host, {"v1", "v2"}, set(all_pods))

    def targets() -> dict[str, dict[str, str]] | None:
        data = _prom("/api/v1/targets", state="active")
        found = {
            t["labels"].get("pod", ""): t["labels"]
            for t in data["activeTargets"]
            if t["labels"].get("namespace") == namespace and t.get("health") == "up"
        }
        return found if set(found) >= set(all_pods) else None

    t0 = time.monotonic()
    found = wait_until("Prometheus targets up for every pod", targets, timeout=60, interval=0.5)
    record(dp, "prometheus_targets_up_seconds", round(time.monotonic() - t0, 2))
    for pod, (track, rev) in all_pods.items():
        labels = found[pod]
        assert labels.get("rollout") == "demo", labels
        assert labels.get("track") == track, labels
        assert labels.get("revision") == rev, labels

    query = (
        f'sum by (pod, track, revision) (rate(http_requests_total{{namespace="{namespace}"}}[5s]))'
    )

    def rates() -> dict[str, float] | None:
        result = _prom("/api/v1/query", query=query)["result"]
        r = {s["metric"]["pod"]: float(s["value"][1]) for s in result}
        # all pods seen, and the 5s window filled with load (~100/s in all)
        full = set(r) >= set(all_pods) and sum(r.values()) >= 80
        return r if full and all(v > 0 for v in r.values()) else None

    # Load in the background (100/s for 20 s) while Prometheus is asked.
    with start_load(host, rate=100, duration_s=20) as load:
        time.sleep(5)  # the rate window (5s) must lie inside the load
        got = wait_until("request rates for every pod", rates, timeout=14, interval=0.5)
        rep = load.report()
    record(dp, "prometheus_pod_rates_per_s", {k: round(v, 1) for k, v in sorted(got.items())})
    assert rep["status"] == {"200": rep["sent"]}, json.dumps(rep)
    # stable 80 / canary 20: the per-track rates follow the weights
    by_track: dict[str, float] = {"stable": 0.0, "canary": 0.0}
    for pod, r in got.items():
        by_track[all_pods[pod][0]] += r
    canary_share = by_track["canary"] / (by_track["canary"] + by_track["stable"])
    record(dp, "prometheus_canary_rate_share", round(canary_share, 3))
    assert 0.10 <= canary_share <= 0.30, got


def test_prometheus_scrapes_traefiks_requests_per_backend(
    dataplane: DataPlane,  # noqa: F811
    namespace: str,
    apps: client.AppsV1Api,
    core: client.CoreV1Api,
) -> None:
    """Traefik's own metrics, per backend Service, in the data plane's Prometheus (job
    traefik): what the gateway metrics source (operator/kanary/analysis/gateway.py) reads. The
    v2 backend runs with METRICS=false, so it has no /metrics of its own at all."""
    from kanary.analysis.gateway import traefik_service_name

    dp = dataplane
    host = f"{namespace}.kanary.test"
    v1 = {"app": "gin", "version": "v1"}
    v2 = {"app": "gin", "version": "v2"}
    _create(
        apps,
        core,
        namespace,
        gin_deployment("gin-v1", "v1", 1, v1),
        gin_deployment("gin-v2", "v2", 1, v2, env={"METRICS": "false", "ERROR_RATE": "0.5"}),
        service("gin-v1", v1),
        service("gin-v2", v2),
    )
    pods = wait_ready_with_processes(core, namespace, v1, 1)
    pods += wait_ready_with_processes(core, namespace, v2, 1)
    no_metrics = next(p for p in pods if p.metadata.labels.get("version") == "v2")
    assert get_json(f"http://{no_metrics.status.pod_ip}:{APP_PORT}/metrics")[0] == 404
    _route(dp, namespace, http_route("gin", dp.gateway, host, [("gin-v1", 50), ("gin-v2", 50)]))
    # v2 answers 500 half the time, so "serves" means both versions answered 200s
    wait_until("both backends answer", lambda: {"v1", "v2"} <= set(sample(host, 50)[0]), 30)
    rep = run_load(host, count=400, rate=200)
    answered = Counter(rep["version_status"])

    names = {
        v: traefik_service_name(namespace, f"gin-{v}", 80) + "@kubernetesgateway"
        for v in ("v1", "v2")
    }
    last: dict[tuple[str, str], float] = {}

    def short(got: dict[tuple[str, str], float]) -> list[str]:
        # Traefik counts what it answered; the warm-up requests count too (at least). A sum over
        # all backends can reach `sent` early (the warm-ups), so each backend and code is waited
        # for: one CI run read the counters one scrape before v2's last 200s were in (93 < 96).
        return [
            f"{v} {code}: {got.get((names[v], code), 0)} < {answered.get(f'{v} {code}', 0)}"
            for v in ("v1", "v2")
            for code in ("200", "500")
            if got.get((names[v], code), 0) < answered.get(f"{v} {code}", 0)
        ]

    def counts() -> dict[tuple[str, str], float] | None:
        query = (
            f'sum by (service, code) (traefik_service_requests_total{{service=~"{namespace}-.*"}})'
        )
        got = {
            (s["metric"]["service"], s["metric"]["code"]): float(s["value"][1])
            for s in _prom("/api/v1/query", query=query)["result"]
        }
        last.clear()
        last.update(got)
        return None if short(got) else got

    try:
        got = wait_until("Traefik's counters for both backends", counts, timeout=30, interval=0.5)
    except AssertionError as err:
        raise AssertionError(f"{err}: {short(last)}; {last}; {rep}") from None
    v2_errors = traefik_service_name(namespace, "gin-v2", 80) + "@kubernetesgateway"
    assert got.get((v2_errors, "500"), 0) > 0 and not any(
        k[1] == "500" and not k[0].startswith(f"{namespace}-gin-v2-") for k in got
    ), got
