"""Converge every tick: what others change in kanary's world is put back; nothing is lost.

Issue 10's "Must show", integration part. The operator runs as a real process under the
manifests' RBAC (operator_fixtures); the tests that need real traffic send it through the local
cluster's Traefik Gateway (dataplane_fixtures, e2e_fixtures.Traffic) to the Gin processes the
pod runner starts for kwok's pods.

1. An HTTPRoute re-applied by hand (kubectl apply, as GitOps would) is written back within two
   ticks, with a WeightRestored Warning; status.verifiedWeight is the canary weight.
2. The stable Deployment deleted by hand in each phase comes back with the *stable* revision's
   template (from ControllerRevision <name>-<revision>), with a StableMissing Warning.
3. A Service deleted or re-pointed by hand comes back (ServiceRestored).
4. A manual action written during a slow tick (a Prometheus that answers after 4 s) is applied
   and acknowledged in status.lastAction; `kanary ACTION --wait` reports Accepted / Refused.
5. A Prometheus URL the operator does not allow: phase Invalid, nothing fetched from it.
6. spec.selector is immutable (the API server refuses the edit).
7. A second route rule (a header match pinned to stable) is kept byte for byte through a
   promotion and a rollback, and requests that match it never fail.
8. Deleting a namespace with 50 Rollouts is about as fast as one with 50 plain Deployments.

Measurements are printed as "[measured] ..." (run pytest with -s to see them) and, where the data
plane is up, kept in $KANARY_STATE/dataplane/measurements.json.

    hack/cluster/exec.sh .venv/bin/python -m pytest -q -s tests/integration/test_converge.py
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiException

from tests.e2e.e2e_fixtures import APP_ENV, TRAFFIC_LAG_S, Traffic, failures, statuses
from tests.integration.conftest import REPO_ROOT, Cluster, wait_until
from tests.integration.dataplane_fixtures import (
    GATEWAY_PORT,
    DataPlane,
    dataplane,
    kwok_timing,
    record,
    wait_route_accepted,
)
from tests.integration.operator_fixtures import (
    ALLOWED_PROMETHEUS_URLS,
    OperatorProcess,
    kubectl,
    operator,
)
from tests.integration.rollout_objects import ON_KWOK, httproute, rollout_body
from tests.integration.test_operator import GW, Kit

__all__ = ["dataplane", "operator"]  # fixtures, imported for pytest

GROUP, VERSION, PLURAL = "kanary.dev", "v1alpha1", "rollouts"
V1, V2, V3 = "kanary/gin-demo:v1", "kanary/gin-demo:v2", "kanary/gin-demo:v3"
LABEL_REVISION = "kanary.dev/revision"
TICK_S = 1.0
# "within two ticks": two 1 s ticks, plus the watch delivering the change and the poll's step
RESTORE_BOUND_S = 3.0

MEASURED: dict[str, Any] = {}


def measured(key: str, value: Any, dp: DataPlane | None = None) -> None:
    MEASURED[key] = value
    if dp is not None:
        record(dp, f"converge_{key}", value)
    else:
        print(f"[measured] converge_{key} = {value}")


# ---------------------------------------------------------------------------- helpers ---
class ConvergeKit(Kit):
    """test_operator's Kit plus what these tests need: writes that cannot conflict, kubectl
    with its exit code, the owned rule's split in any rule position, Events by reason."""

    def set_image(
        self, name: str, image: str, pod_annotations: dict[str, str] | None = None
    ) -> None:
        """A JSON patch of the image only: no resourceVersion, so no 409 from a status write."""
        ops: list[dict[str, Any]] = [
            {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": image}
        ]
        if pod_annotations is not None:
            ops.append(
                {
                    "op": "replace",
                    "path": "/spec/template/metadata/annotations",
                    "value": pod_annotations,
                }
            )
        self.json_patch(name, ops)

    def json_patch(self, name: str, ops: list[dict[str, Any]]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            self.ns,
            PLURAL,
            name,
            ops,
            _content_type="application/json-patch+json",
        )

    def run_kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.cluster.kubectl), "--kubeconfig", str(self.cluster.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    def annotate_action(self, name: str, action: str, request_id: str) -> None:
        kubectl(
            self.cluster,
            "annotate",
            "-n",
            self.ns,
            f"rollout/{name}",
            f"kanary.dev/action={action}",
            f"kanary.dev/action-id={request_id}",
            "--overwrite",
        )

    def route(self, name: str) -> dict[str, Any]:
        return dict(self.custom.get_namespaced_custom_object(GW[0], GW[1], self.ns, GW[2], name))

    def split(self, name: str) -> tuple[int, int]:
        """(stable, canary) of the one rule that references both tracks."""
        return owned_split(self.route(name), name)

    def reasons(self, name: str, kind: str | None = None) -> list[str]:
        return [str(e.reason) for e in self.events(name) if kind is None or e.type == kind]

    def warning_messages(self, name: str, reason: str) -> list[str]:
        return [
            str(e.message) for e in self.events(name) if e.type == "Warning" and e.reason == reason
        ]

    def wait_warning(self, name: str, reason: str, contains: str = "", timeout: float = 15) -> str:
        def probe() -> str | None:
            for message in self.warning_messages(name, reason):
                if contains in message:
                    return message
            return None

        try:
            return wait_until(f"Warning {reason} ({contains!r}) on {name}", probe, timeout=timeout)
        except AssertionError as e:
            raise AssertionError(f"{e}; events: {self.event_list(name)}") from None

    def event_list(self, name: str) -> list[tuple[str, str, str]]:
        return [(str(e.type), str(e.reason), str(e.message)) for e in self.events(name)]

    def wait_step(self, name: str, index: int, phase: str, timeout: float = 60) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            st = self.status(name)
            ok = st.get("currentStepIndex") == index and st.get("phase") == phase
            return st if ok else None

        try:
            return wait_until(f"{name} at step {index} {phase}", probe, timeout=timeout)
        except AssertionError as e:
            raise AssertionError(f"{e}; last status: {self.status(name)}") from None

    def service(self, name: str) -> client.V1Service | None:
        try:
            return self.core.read_namespaced_service(name, self.ns)
        except ApiException as e:
            if e.status == 404:
                return None
            raise


def owned_split(route: dict[str, Any], name: str) -> tuple[int, int]:
    stable, canary = f"{name}-stable", f"{name}-canary"
    for rule in route["spec"]["rules"]:
        refs = {r["name"]: int(r.get("weight", 1)) for r in rule.get("backendRefs") or []}
        if stable in refs and canary in refs:
            return refs[stable], refs[canary]
    raise AssertionError(f"no rule of route {name} references {stable} and {canary}")


def poll_until(probe: Callable[[], bool], timeout: float, interval: float = 0.05) -> float | None:
    """Seconds (monotonic) when probe() first held, or None after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        if probe():
            return time.monotonic()
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def own_operator(operator: OperatorProcess) -> OperatorProcess:
    """The session's operator, still running: when another pytest session's operator holds the
    liveness and metrics ports in this netns, ours exits at once while the liveness probe is
    answered by the other one, and these tests would drive (and read the log of) the wrong one."""
    proc = operator.proc
    if proc is None or proc.poll() is not None:
        pytest.fail(
            "this session's operator is not running (another operator in the netns holds its "
            f"ports? `pgrep -af 'kanary.cli run'`):\n{operator.tail(15)}",
            pytrace=False,
        )
    return operator


@pytest.fixture
def kit(cluster: Cluster, namespace: str, operator: OperatorProcess) -> Iterator[ConvergeKit]:
    own_operator(operator)
    yield ConvergeKit(cluster, namespace)
    own_operator(operator)


def app_rollout(
    name: str,
    image: str,
    steps: list[dict[str, Any]],
    *,
    replicas: int = 1,
    strategy: dict[str, Any] | None = None,
    traffic: bool = False,
) -> dict[str, Any]:
    """rollout_body; with traffic=True the pods get kwok's 1 s readiness and the app's
    SHUTDOWN_DELAY (a terminating pod keeps serving while endpoints drop it), as in e2e."""
    body = rollout_body(
        name,
        image,
        steps,
        replicas=replicas,
        pod_annotations=kwok_timing() if traffic else None,
        strategy=strategy,
    )
    if traffic:
        body["spec"]["template"]["spec"]["containers"][0]["env"] = [
            {"name": k, "value": v} for k, v in APP_ENV.items()
        ]
    return body


# =========================================== 1. route re-applied by GitOps is corrected ===
PAUSE_STEPS = [{"setWeight": 25}, {"pause": {}}, {"setWeight": 100}]


def _route_file(tmp: Path, name: str, stable: int, canary: int) -> Path:
    route = httproute(name)
    refs = route["spec"]["rules"][0]["backendRefs"]
    refs[0]["weight"], refs[1]["weight"] = stable, canary
    path = tmp / f"route-{stable}-{canary}.yaml"
    path.write_text(yaml.safe_dump(route))
    return path


def _reapply_and_time(
    kit: ConvergeKit, name: str, path: Path, kanary_split: tuple[int, int], label: str
) -> float:
    """kubectl apply `path` (weights other than kanary's); seconds from the apply's return
    until the route holds kanary's split again."""
    generation = int(kit.route(name)["metadata"]["generation"])
    started = time.monotonic()
    out = kit.run_kubectl("apply", "-n", kit.ns, "-f", str(path))
    applied = time.monotonic()
    assert out.returncode == 0, out.stderr
    assert "configured" in out.stdout, f"the apply changed nothing: {out.stdout}"
    back = poll_until(lambda: kit.split(name) == kanary_split, timeout=15)
    assert back is not None, (
        f"{label}: route still {kit.split(name)} 15 s after kubectl apply, kanary's split is "
        f"{kanary_split}; status: {kit.status(name)}"
    )
    # two spec changes: the apply's weights, then kanary's (it did change the route)
    assert int(kit.route(name)["metadata"]["generation"]) >= generation + 2
    seconds = round(back - applied, 2)
    measured(f"route_restored_{label}_s", seconds)
    measured(f"route_restored_{label}_incl_kubectl_s", round(back - started, 2))
    assert seconds <= RESTORE_BOUND_S, (
        f"{label}: the route was written back {seconds}s after the apply (> two ticks)"
    )
    return seconds


def test_route_reapplied_by_gitops_is_written_back_within_two_ticks(
    kit: ConvergeKit, tmp_path: Path
) -> None:
    name = "gitops"
    original = _route_file(tmp_path, name, 100, 0)
    out = kit.run_kubectl("apply", "-n", kit.ns, "-f", str(original))
    assert out.returncode == 0, out.stderr
    kit.create(app_rollout(name, V1, PAUSE_STEPS))
    kit.wait_phase(name, "Healthy")
    kit.set_image(name, V2)
    kit.wait_phase(name, "Paused")
    assert kit.split(name) == (75, 25)

    # mid-rollout (the pause step): GitOps re-applies the original file, 100 / 0
    _reapply_and_time(kit, name, original, (75, 25), "paused")
    kit.wait_warning(name, "WeightRestored", "stable 100 / canary 0, kanary's split is 75 / 25")
    st = kit.status(name)
    assert st["phase"] == "Paused" and st["canaryWeight"] == 25, st
    assert wait_until(
        "verifiedWeight 25", lambda: kit.status(name).get("verifiedWeight") == 25, timeout=5
    )

    # after a rollback: a file with other weights
    kit.annotate(name, "abort")
    kit.wait_phase(name, "RolledBack")
    assert kit.split(name) == (100, 0)
    _reapply_and_time(kit, name, _route_file(tmp_path, name, 50, 50), (100, 0), "rolledback")
    kit.wait_warning(name, "WeightRestored", "stable 50 / canary 50, kanary's split is 100 / 0")
    st = kit.status(name)
    assert st["phase"] == "RolledBack" and st["canaryWeight"] == 0, st
    assert wait_until(
        "verifiedWeight 0", lambda: kit.status(name).get("verifiedWeight") == 0, timeout=5
    )

    # and mid-rollout again, after the rollback (retry): yet other weights
    kit.annotate(name, "retry")
    kit.wait_phase(name, "Paused")
    assert kit.split(name) == (75, 25)
    _reapply_and_time(kit, name, _route_file(tmp_path, name, 60, 40), (75, 25), "paused_again")
    kit.wait_warning(name, "WeightRestored", "stable 60 / canary 40, kanary's split is 75 / 25")
    assert kit.status(name)["phase"] == "Paused"
    assert wait_until(
        "verifiedWeight 25", lambda: kit.status(name).get("verifiedWeight") == 25, timeout=5
    )


# ========================================== 2. stable Deployment deleted in each phase ===
# A timed pause long enough to still run when the stable Deployment is deleted, then a
# pause until promote: Progressing at step 2, Paused at step 3, RolledBack after abort.
DELETE_STEPS = [
    {"setWeight": 25},
    {"pause": {"duration": "10m"}},
    {"pause": {}},
    {"setWeight": 100},
]


def _to_phase(kit: ConvergeKit, name: str, phase: str) -> None:
    if phase == "Healthy":
        return
    kit.set_image(name, V2, kwok_timing())
    kit.wait_step(name, 1, "Progressing")
    if phase == "Progressing":
        return
    kit.annotate(name, "promote")
    kit.wait_step(name, 2, "Paused")
    if phase == "Paused":
        return
    kit.annotate(name, "abort")
    kit.wait_phase(name, "RolledBack")


@pytest.mark.parametrize("phase", ["Progressing", "Paused", "RolledBack", "Healthy"])
def test_stable_deployment_deleted_comes_back_with_the_stable_template(
    kit: ConvergeKit, dataplane: DataPlane, phase: str
) -> None:
    name, replicas = "stb", 2
    host = f"{kit.ns}.converge.kanary.test"
    route = httproute(name)
    route["spec"]["hostnames"] = [host]
    kit.custom.create_namespaced_custom_object(GW[0], GW[1], kit.ns, GW[2], route)
    kit.create(app_rollout(name, V1, DELETE_STEPS, replicas=replicas, traffic=True))
    kit.wait_phase(name, "Healthy")
    wait_route_accepted(dataplane, kit.ns, name)
    _to_phase(kit, name, phase)
    before = kit.status(name)
    assert before["phase"] == phase, before
    stable_rev = before["stableRevision"]
    old = kit.deployment(f"{name}-stable")
    assert old is not None and old.spec.template.spec.containers[0].image == V1
    old_uid = old.metadata.uid
    canary_before = kit.deployment(f"{name}-canary")
    # the stable revision's template is kept where kanary recreates it from
    kit.apps.read_namespaced_controller_revision(f"{name}-{stable_rev}", kit.ns)

    with Traffic(host, rate=50, workers=8, max_seconds=120) as traffic:
        traffic.wait_only({"v1", "v2"} if phase in ("Progressing", "Paused") else {"v1"}, n=50)
        t_delete = time.monotonic()
        kubectl(kit.cluster, "delete", "deployment", f"{name}-stable", "-n", kit.ns, "--wait=false")
        t_deleted = time.monotonic()

        seen: dict[str, float] = {}

        def recreated_ready() -> bool:
            dep = kit.deployment(f"{name}-stable")
            if dep is None or dep.metadata.uid == old_uid:
                return False
            seen.setdefault("recreated", time.monotonic())
            st = dep.status
            return bool(
                st is not None
                and (st.ready_replicas or 0) == replicas
                and (st.updated_replicas or 0) == replicas
                and (st.replicas or 0) == replicas
            )

        t_ready = poll_until(recreated_ready, timeout=60, interval=0.05)
        assert t_ready is not None, f"stable not recreated and Ready; status {kit.status(name)}"
        # traffic is whole again once 50 answers in a row are 200s
        t_whole = traffic.wait_only({"v1", "v2"}, n=50, timeout=60)
        time.sleep(1)
    samples = traffic.samples(t_delete)
    bad = [s for s in samples if s.status != "200"]

    new = kit.deployment(f"{name}-stable")
    assert new is not None and new.metadata.uid != old_uid
    template = new.spec.template
    assert template.spec.containers[0].image == V1, (
        f"stable recreated in phase {phase} with {template.spec.containers[0].image}, "
        f"not the stable revision's {V1}"
    )
    assert template.metadata.labels[LABEL_REVISION] == stable_rev, template.metadata.labels
    assert new.metadata.labels[LABEL_REVISION] == stable_rev, new.metadata.labels
    assert new.spec.replicas == replicas
    owners = [(o.kind, o.name, o.controller) for o in new.metadata.owner_references or []]
    assert owners == [("Rollout", name, True)], owners
    kit.wait_warning(name, "StableMissing", "stable Deployment is gone")
    after = kit.status(name)
    assert after["phase"] == phase, after
    assert after["stableRevision"] == stable_rev
    assert after.get("currentStepIndex") == before.get("currentStepIndex")
    if canary_before is not None and phase in ("Progressing", "Paused"):
        canary_after = kit.deployment(f"{name}-canary")
        assert canary_after is not None
        assert canary_after.metadata.uid == canary_before.metadata.uid
        assert canary_after.metadata.generation == canary_before.metadata.generation
    # the recreated pods run the stable template
    pods = kit.core.list_namespaced_pod(
        kit.ns, label_selector=f"kanary.dev/rollout={name},kanary.dev/track=stable"
    ).items
    live = [p for p in pods if p.metadata.deletion_timestamp is None]
    assert len(live) == replicas, [p.metadata.name for p in live]
    assert {p.spec.containers[0].image for p in live} == {V1}
    assert {p.metadata.labels[LABEL_REVISION] for p in live} == {stable_rev}

    key = f"stable_deleted_{phase.lower()}"
    recreated_s = round(seen["recreated"] - t_deleted, 2)
    measured(f"{key}_recreated_s", recreated_s, dataplane)
    measured(f"{key}_pods_ready_s", round(t_ready - t_deleted, 2), dataplane)
    measured(f"{key}_traffic_whole_s", round(t_whole - t_delete, 2), dataplane)
    measured(f"{key}_requests", {"total": len(samples), **dict(statuses(samples))}, dataplane)
    if bad:
        window = [round(bad[0].at - t_delete, 2), round(bad[-1].at - t_delete, 2)]
        measured(f"{key}_failed_window_s", window, dataplane)
        measured(f"{key}_failures", dict(failures(bad)), dataplane)
    assert recreated_s <= RESTORE_BOUND_S, f"stable recreated only {recreated_s}s after deletion"
    # kanary adds no outage of its own: the last failure is within Traefik's reload lag of the
    # recreated pods being Ready (kwok makes them Ready 1 s after their IP)
    if bad:
        lag = bad[-1].at - t_ready
        assert lag <= TRAFFIC_LAG_S, f"requests failed until {lag:.1f}s after stable was Ready"


# ======================================================== 3. Services put back ===
@pytest.mark.parametrize(
    "track,change",
    [
        ("stable", "delete"),
        ("canary", "delete"),
        ("stable", "selector-value"),  # re-pointed at the canary pods
        ("canary", "selector-key"),  # a key added to the selector
    ],
)
def test_service_deleted_or_edited_by_hand_is_restored(
    kit: ConvergeKit, track: str, change: str
) -> None:
    name = "svc"
    svc_name = f"{name}-{track}"
    kit.create_route(name)
    kit.create(rollout_body(name, V1, PAUSE_STEPS, replicas=1))
    kit.wait_phase(name, "Healthy")
    original = kit.service(svc_name)
    assert original is not None
    wanted_selector = dict(original.spec.selector)
    assert wanted_selector["kanary.dev/track"] == track

    if change == "delete":
        kubectl(kit.cluster, "delete", "service", svc_name, "-n", kit.ns, "--wait=false")
    else:
        selector = (
            {"kanary.dev/track": "canary"} if change == "selector-value" else {"tier": "manual"}
        )
        out = kubectl(
            kit.cluster,
            "patch",
            "service",
            svc_name,
            "-n",
            kit.ns,
            "--type",
            "merge",
            "-p",
            json.dumps({"spec": {"selector": selector}}),
        )
        assert "patched" in out and "no change" not in out, out
    done = time.monotonic()

    def restored() -> bool:
        svc = kit.service(svc_name)
        if svc is None or dict(svc.spec.selector or {}) != wanted_selector:
            return False
        return change != "delete" or svc.metadata.uid != original.metadata.uid

    back = poll_until(restored, timeout=15)
    now = kit.service(svc_name)
    assert back is not None, (
        f"Service {svc_name} not restored 15 s after {change}: "
        f"{None if now is None else now.spec.selector}; status {kit.status(name)}"
    )
    measured(f"service_{track}_{change}_restored_s", round(back - done, 2))
    assert back - done <= RESTORE_BOUND_S + 2, f"restored only after {back - done:.1f}s"
    kit.wait_warning(name, "ServiceRestored", svc_name)
    assert now is not None
    ports = [(p.port, p.target_port) for p in now.spec.ports]
    assert ports == [(80, "http")], ports
    owners = [(o.kind, o.name) for o in now.metadata.owner_references or []]
    assert owners == [("Rollout", name)], owners
    # converged: no further writes to the Service (its resourceVersion stays)
    rv = now.metadata.resource_version
    time.sleep(3 * TICK_S)
    later = kit.service(svc_name)
    assert later is not None and later.metadata.resource_version == rv, (
        "kanary keeps rewriting the restored Service"
    )
    assert kit.status(name)["phase"] == "Healthy"


# ================================== 4. a manual action written during a slow tick ===
class SlowPrometheus:
    """Answers /api/v1/query with a one-sample vector of 0 after `delay` seconds, on one of the
    loopback URLs the operator fixture allows. Records each request's arrival and answer."""

    def __init__(self, delay: float = 4.0) -> None:
        self.delay = delay
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.server: ThreadingHTTPServer | None = None
        self.url = ""

    def __enter__(self) -> SlowPrometheus:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:
                entry = {"path": self.path, "arrived": time.monotonic(), "answered": None}
                with owner.lock:
                    owner.requests.append(entry)
                if not self.path.startswith("/api/v1/query"):
                    self.send_error(404)
                    return
                owner.stop.wait(owner.delay)
                body = json.dumps(
                    {
                        "status": "success",
                        "data": {
                            "resultType": "vector",
                            "result": [{"metric": {}, "value": [time.time(), "0"]}],
                        },
                    }
                ).encode()
                with contextlib.suppress(OSError):
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                with owner.lock:
                    entry["answered"] = time.monotonic()

            do_POST = do_GET

        for url in ALLOWED_PROMETHEUS_URLS:
            port = int(url.rsplit(":", 1)[1])
            try:
                self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
            except OSError:
                continue
            self.url = url
            break
        if self.server is None:
            pytest.fail(f"none of {ALLOWED_PROMETHEUS_URLS} is free", pytrace=False)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def in_flight(self) -> dict[str, Any] | None:
        with self.lock:
            pending = [r for r in self.requests if r["answered"] is None]
        return pending[0] if pending else None

    def count(self) -> int:
        with self.lock:
            return len(self.requests)


def _kanary_cli(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    """python -m kanary.cli with the admin kubeconfig."""
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    return subprocess.run(
        [sys.executable, "-m", "kanary.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=REPO_ROOT,
    )


def _last_action(kit: ConvergeKit, name: str, request_id: str, timeout: float) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        last = kit.status(name).get("lastAction") or {}
        return dict(last) if last.get("id") == request_id else None

    try:
        return wait_until(f"status.lastAction for {request_id}", probe, timeout=timeout)
    except AssertionError as e:
        raise AssertionError(f"{e}; status {kit.status(name)}") from None


def _wait_check_in_flight(prom: SlowPrometheus, kit: ConvergeKit, name: str) -> dict[str, Any]:
    try:
        return wait_until("an analysis query in flight", prom.in_flight, timeout=60, interval=0.05)
    except AssertionError as e:
        raise AssertionError(f"{e}; status {kit.status(name)}") from None


def test_manual_action_written_during_a_slow_tick_is_applied(
    kit: ConvergeKit, operator: OperatorProcess
) -> None:
    name = "slow"
    kit.create_route(name)
    with SlowPrometheus(delay=4.0) as prom:
        analysis = {
            "interval": "1s",
            # a long window keeps step 1 (setWeight 25) running: a promote there is refused
            "window": "10m",
            "prometheus": {"url": prom.url, "timeout": "10s"},
            "minRequests": 0,
            "failureLimit": 2,
            "errorLimit": 3,
            "metrics": [{"name": "error-rate", "max": 0.01}],
        }
        kit.create(app_rollout(name, V1, PAUSE_STEPS, strategy={"analysis": analysis}))
        kit.wait_phase(name, "Healthy")
        assert prom.count() == 0, "no check while nothing is rolled out"
        kit.set_image(name, V2)
        wait_until("weight 25", lambda: kit.split(name) == (75, 25), timeout=60)

        # abort, annotated while a check (4 s per query) is in flight
        pending = _wait_check_in_flight(prom, kit, name)
        abort_id = f"abort-{uuid.uuid4().hex[:8]}"
        kit.annotate_action(name, "abort", abort_id)
        with prom.lock:
            still_pending = pending["answered"] is None
        assert still_pending, "the query answered before the annotation was written"
        t_annotated = time.monotonic()
        kit.wait_phase(name, "RolledBack", timeout=60)
        measured("slow_tick_abort_to_rolledback_s", round(time.monotonic() - t_annotated, 1))
        last = _last_action(kit, name, abort_id, timeout=5)
        assert {k: last[k] for k in ("id", "action", "result")} == {
            "id": abort_id,
            "action": "abort",
            "result": "Accepted",
        }, last
        # consumed right after the status that answers it is written (never before: a status
        # write refused with 409 must not lose the request), so a reader may see both briefly
        wait_until(
            "the abort annotation consumed",
            lambda: (
                "kanary.dev/action" not in (kit.rollout(name)["metadata"].get("annotations") or {})
            ),
            timeout=5,
        )
        assert kit.split(name) == (100, 0)
        assert kit.status(name)["history"][-1]["reason"] == "aborted by user"

        # the CLI: retry --wait is accepted
        out = _kanary_cli(kit.cluster, "retry", name, "-n", kit.ns, "--wait", "--timeout", "60")
        assert out.returncode == 0, (out.stdout, out.stderr)
        assert "retry accepted" in out.stdout, out.stdout
        wait_until("weight 25 again", lambda: kit.split(name) == (75, 25), timeout=60)
        assert kit.status(name)["phase"] == "Progressing"

        # retry on a Progressing rollout: the CLI refuses by itself ...
        out = _kanary_cli(kit.cluster, "retry", name, "-n", kit.ns, "--wait")
        assert out.returncode == 1 and "cannot retry" in out.stderr, (out.stdout, out.stderr)
        # ... and the operator refuses it when annotated directly, during a slow tick
        _wait_check_in_flight(prom, kit, name)
        retry_id = f"retry-{uuid.uuid4().hex[:8]}"
        kit.annotate_action(name, "retry", retry_id)
        last = _last_action(kit, name, retry_id, timeout=60)
        assert {k: last[k] for k in ("id", "action", "result")} == {
            "id": retry_id,
            "action": "retry",
            "result": "Refused",
        }, last
        assert "nothing to retry" in last["reason"], last
        kit.wait_warning(name, "ManualActionRefused", "retry: nothing to retry")
        assert kit.status(name)["phase"] == "Progressing"

        # a request the CLI allows and the operator refuses: --wait reports it, exit 1
        out = _kanary_cli(kit.cluster, "promote", name, "-n", kit.ns, "--wait", "--timeout", "60")
        assert out.returncode == 1, (out.stdout, out.stderr)
        assert "promote refused" in out.stderr and "not a pause" in out.stderr, out.stderr

        # abort --wait, during a slow tick: exit 0
        _wait_check_in_flight(prom, kit, name)
        t_cli = time.monotonic()
        out = _kanary_cli(kit.cluster, "abort", name, "-n", kit.ns, "--wait", "--timeout", "60")
        assert out.returncode == 0, (out.stdout, out.stderr)
        assert "abort accepted" in out.stdout, out.stdout
        measured("slow_tick_cli_abort_wait_s", round(time.monotonic() - t_cli, 1))
        kit.wait_phase(name, "RolledBack", timeout=30)
        assert kit.split(name) == (100, 0)


# ============================================ 5. a Prometheus URL not allowed ===
class Listener:
    """Accepts TCP connections on 127.0.0.1:port and counts them (answers nothing)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
        self.sock.close()


def test_prometheus_url_not_allowed_is_invalid_and_never_fetched(kit: ConvergeKit) -> None:
    bad_url = "http://127.0.0.1:19999"
    listener = Listener(19999)
    try:
        analysis = {
            "interval": "1s",
            "window": "5s",
            "prometheus": {"url": bad_url, "timeout": "2s"},
            "minRequests": 0,
            "metrics": [{"name": "error-rate", "max": 0.01}],
        }
        # a new Rollout naming it
        kit.create_route("bad")
        kit.create(app_rollout("bad", V1, PAUSE_STEPS, strategy={"analysis": analysis}))
        st = kit.wait_phase("bad", "Invalid", timeout=30)
        assert "spec.strategy.analysis.prometheus.url" in st["message"], st["message"]
        assert bad_url in st["message"], st["message"]
        kit.wait_warning("bad", "Invalid", "spec.strategy.analysis.prometheus.url")
        assert kit.deployment("bad-stable") is None, "an Invalid Rollout created a Deployment"

        # a Healthy Rollout whose next template comes with it
        kit.create_route("later")
        kit.create(app_rollout("later", V1, PAUSE_STEPS))
        kit.wait_phase("later", "Healthy")
        stable = kit.deployment("later-stable")
        assert stable is not None
        kit.json_patch(
            "later",
            [
                {"op": "add", "path": "/spec/strategy/analysis", "value": analysis},
                {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": V2},
            ],
        )
        st = kit.wait_phase("later", "Invalid", timeout=30)
        assert "spec.strategy.analysis.prometheus.url" in st["message"], st["message"]
        time.sleep(4 * TICK_S)  # ticks that would have started the rollout and its checks
        assert kit.status("later")["phase"] == "Invalid"
        assert kit.deployment("later-canary") is None, "a canary was created while Invalid"
        again = kit.deployment("later-stable")
        assert again is not None and again.metadata.generation == stable.metadata.generation
        assert kit.split("later") == (100, 0)
        assert listener.connections == 0, f"{listener.connections} connections to {bad_url}"
    finally:
        listener.close()


# ================================================= 6. spec.selector is immutable ===
def test_selector_edit_is_refused_by_the_api_server(kit: ConvergeKit, tmp_path: Path) -> None:
    name = "sel"
    body = rollout_body(name, V1, PAUSE_STEPS, gateway=False)
    body["spec"]["template"]["metadata"]["labels"] = {"app": name, "tier": "web"}
    body["spec"]["selector"] = {"matchLabels": {"app": name}}
    path = tmp_path / "rollout.yaml"
    path.write_text(yaml.safe_dump(body))
    out = kit.run_kubectl("apply", "-n", kit.ns, "-f", str(path))
    assert out.returncode == 0, out.stderr

    refusals: dict[str, subprocess.CompletedProcess[str]] = {}
    # kubectl apply of the file with a selector that still matches the template's labels
    body["spec"]["selector"] = {"matchLabels": {"app": name, "tier": "web"}}
    path.write_text(yaml.safe_dump(body))
    refusals["apply"] = kit.run_kubectl("apply", "-n", kit.ns, "-f", str(path))
    refusals["patch-merge"] = kit.run_kubectl(
        "patch",
        "rollout",
        name,
        "-n",
        kit.ns,
        "--type",
        "merge",
        "-p",
        json.dumps({"spec": {"selector": {"matchLabels": {"tier": "web"}}}}),
    )
    refusals["patch-remove"] = kit.run_kubectl(
        "patch",
        "rollout",
        name,
        "-n",
        kit.ns,
        "--type",
        "json",
        "-p",
        json.dumps([{"op": "remove", "path": "/spec/selector"}]),
    )
    # a Rollout created without a selector cannot get one either
    plain = rollout_body("nosel", V1, PAUSE_STEPS, gateway=False)
    kit.create(plain)
    refusals["patch-add"] = kit.run_kubectl(
        "patch",
        "rollout",
        "nosel",
        "-n",
        kit.ns,
        "--type",
        "merge",
        "-p",
        json.dumps({"spec": {"selector": {"matchLabels": {"app": "nosel"}}}}),
    )
    for how, result in refusals.items():
        assert result.returncode != 0, f"{how}: accepted: {result.stdout}"
        assert "spec.selector is immutable" in result.stderr, f"{how}: {result.stderr}"
    stored = kit.rollout(name)["spec"]["selector"]
    assert stored == {"matchLabels": {"app": name}}, stored
    assert "selector" not in kit.rollout("nosel")["spec"]
    # the rule refuses only the selector: another edit through the same file is applied
    body["spec"]["selector"] = {"matchLabels": {"app": name}}
    body["spec"]["replicas"] = 3
    path.write_text(yaml.safe_dump(body))
    out = kit.run_kubectl("apply", "-n", kit.ns, "-f", str(path))
    assert out.returncode == 0, out.stderr
    assert kit.rollout(name)["spec"]["replicas"] == 3
    print("[measured] converge_selector_refusal =", refusals["apply"].stderr.strip())


# ============================= 7. a header rule pinned to stable is never touched ===
class PinnedConnection(http.client.HTTPConnection):
    """Every request carries x-pin: stable."""

    def request(  # type: ignore[override]
        self, method: str, url: str, body: Any = None, headers: Any = None, **kw: Any
    ) -> None:
        super().request(method, url, body, {**(headers or {}), "x-pin": "stable"}, **kw)


class PinnedTraffic(Traffic):
    def _connection(self) -> http.client.HTTPConnection:
        return PinnedConnection("127.0.0.1", GATEWAY_PORT, timeout=self.timeout_s)


class RuleRecorder:
    """Polls the route; keeps every distinct JSON of rule `index` and the splits seen."""

    def __init__(self, kit: ConvergeKit, name: str, index: int) -> None:
        self.kit, self.name, self.index = kit, name, index
        self.rules: list[str] = []
        self.splits: list[tuple[int, int]] = []
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 600
        while not self._stop.is_set() and time.monotonic() < deadline:
            route = self.kit.route(self.name)
            text = json.dumps(route["spec"]["rules"][self.index])
            if not self.rules or self.rules[-1] != text:
                self.rules.append(text)
            split = owned_split(route, self.name)
            if not self.splits or self.splits[-1] != split:
                self.splits.append(split)
            self.polls += 1
            time.sleep(0.05)

    def __enter__(self) -> RuleRecorder:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def test_header_rule_pinned_to_stable_is_kept_byte_for_byte(
    kit: ConvergeKit, dataplane: DataPlane
) -> None:
    name = "pin"
    host = f"{kit.ns}.converge.kanary.test"
    route = httproute(name)
    owned = route["spec"]["rules"][0]
    owned["matches"] = [{"path": {"type": "PathPrefix", "value": "/"}}]
    pinned = {
        "matches": [{"headers": [{"type": "Exact", "name": "x-pin", "value": "stable"}]}],
        "backendRefs": [{"name": f"{name}-stable", "port": 80}],
    }
    # the pinned rule first, so kanary's rule is not rule 0
    route["spec"]["rules"] = [pinned, owned]
    route["spec"]["hostnames"] = [host]
    kit.custom.create_namespaced_custom_object(GW[0], GW[1], kit.ns, GW[2], route)
    stored_rule = json.dumps(kit.route(name)["spec"]["rules"][0])
    steps = [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]
    kit.create(app_rollout(name, V1, steps, replicas=2, traffic=True))
    kit.wait_phase(name, "Healthy")
    wait_route_accepted(dataplane, kit.ns, name)

    with (
        RuleRecorder(kit, name, 0) as rec,
        PinnedTraffic(host, rate=40, workers=8, max_seconds=300) as pinned_traffic,
        Traffic(host, rate=40, workers=8, max_seconds=300) as plain_traffic,
    ):
        pinned_traffic.wait_only({"v1"}, n=40)
        plain_traffic.wait_only({"v1"}, n=40)
        t0 = time.monotonic()
        # a promotion: v2 through 50 %, the pause, promote, 100 %, stable re-templated
        kit.set_image(name, V2, kwok_timing())
        kit.wait_phase(name, "Paused")
        assert kit.split(name) == (50, 50)
        kit.annotate(name, "promote")
        kit.wait_promoted(name, V2)
        pinned_traffic.wait_only({"v2"}, n=40)
        t_promoted = time.monotonic()
        # a rollback: v3 to 50 %, then abort
        kit.set_image(name, V3, kwok_timing())
        kit.wait_phase(name, "Paused")
        plain_traffic.wait_seen("v3", n=10)
        kit.annotate(name, "abort")
        kit.wait_phase(name, "RolledBack")
        plain_traffic.wait_only({"v2"}, n=40)
        time.sleep(1)
        t_end = time.monotonic()

    assert rec.polls > 50
    assert rec.rules == [stored_rule], (
        f"the pinned rule changed {len(rec.rules) - 1} times: {rec.rules}"
    )
    assert (0, 100) in rec.splits and rec.splits[-1] == (100, 0), rec.splits
    pinned_all = pinned_traffic.samples(t0, t_end)
    plain_all = plain_traffic.samples(t0, t_end)
    pinned_promotion = pinned_traffic.samples(t0, t_promoted)
    pinned_rollback = pinned_traffic.samples(t_promoted, t_end)
    measured("pinned_requests", {"total": len(pinned_all), **dict(statuses(pinned_all))}, dataplane)
    measured("pinned_versions_in_rollback", sorted({s.version for s in pinned_rollback}), dataplane)
    measured("unpinned_requests", {"total": len(plain_all), **dict(statuses(plain_all))}, dataplane)
    assert not failures(pinned_all), (
        f"{sum(failures(pinned_all).values())} of {len(pinned_all)} x-pin: stable requests "
        f"failed: {dict(failures(pinned_all))}"
    )
    # the header rule reaches only the stable track: v3 (the rolled-back canary) never answers
    assert {s.version for s in pinned_rollback} == {"v2"}, {s.version for s in pinned_rollback}
    assert {s.version for s in pinned_promotion} <= {"v1", "v2"}
    assert not failures(plain_all), dict(failures(plain_all))


# ================================== 8. deleting a namespace with 50 Rollouts ===
NS_OBJECTS = 50
IDLE_IMAGE = "kanary/idle:v1"  # no process: the pod runner maps only kanary/gin-demo
# Both kinds get the same pod spec. Grace 0: with the default 30 s the namespace controller waits
# out the pods' grace period in both cases, and that wait would hide what the Rollouts add.
IDLE_POD_SPEC: dict[str, Any] = {
    "terminationGracePeriodSeconds": 0,
    "containers": [{"name": "app", "image": IDLE_IMAGE}],
    **ON_KWOK,
}


def _plain_deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": dict(IDLE_POD_SPEC),
            },
        },
    }


def _create_namespace(core: client.CoreV1Api, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def _delete_namespace_and_time(core: client.CoreV1Api, name: str) -> float:
    started = time.monotonic()
    core.delete_namespace(name)

    def gone() -> bool:
        try:
            core.read_namespace(name)
        except ApiException as e:
            if e.status == 404:
                return True
            raise
        return False

    done = poll_until(gone, timeout=300, interval=0.2)
    assert done is not None, f"namespace {name} still there 300 s after its deletion"
    return done - started


@dataclass(frozen=True)
class NamespaceDeletions:
    plain_s: float  # seconds to delete a namespace with 50 Deployments
    rollouts_s: float  # ... with 50 Healthy Rollouts
    rollout_ns: str
    log: str  # what the operator logged from the deletion until 5 s after the namespace was gone
    finalizers: list[str]


@pytest.fixture(scope="module")
def namespace_deletions(
    cluster: Cluster, core: client.CoreV1Api, operator: OperatorProcess
) -> Iterator[NamespaceDeletions]:
    """Deletes a namespace with 50 plain Deployments, then one with 50 Healthy Rollouts (same
    pod spec, replicas 1, no analysis), timing both; keeps the operator's log of the second."""
    own_operator(operator)
    apps = client.AppsV1Api(cluster.api)
    custom = client.CustomObjectsApi(cluster.api)
    created: list[str] = []
    try:
        plain_ns = _create_namespace(core, "t-nsdel-plain")
        created.append(plain_ns)
        wait_until("default SA", lambda: _has_default_sa(core, plain_ns), timeout=30)
        for i in range(NS_OBJECTS):
            apps.create_namespaced_deployment(plain_ns, _plain_deployment(f"d{i}"))

        def plain_ready() -> bool:
            items = apps.list_namespaced_deployment(plain_ns).items
            return len(items) == NS_OBJECTS and all(
                (d.status.ready_replicas or 0) == 1 for d in items
            )

        wait_until("50 Deployments Ready", plain_ready, timeout=180, interval=1)
        plain_s = _delete_namespace_and_time(core, plain_ns)
        created.remove(plain_ns)

        rollout_ns = _create_namespace(core, "t-nsdel-rollouts")
        created.append(rollout_ns)
        wait_until("default SA", lambda: _has_default_sa(core, rollout_ns), timeout=30)
        for i in range(NS_OBJECTS):
            body = rollout_body(f"r{i}", IDLE_IMAGE, [{"setWeight": 50}], gateway=False, replicas=1)
            body["spec"]["template"]["spec"] = dict(IDLE_POD_SPEC)
            custom.create_namespaced_custom_object(GROUP, VERSION, rollout_ns, PLURAL, body)

        def rollouts_healthy() -> bool:
            items = custom.list_namespaced_custom_object(GROUP, VERSION, rollout_ns, PLURAL)
            phases = [(i.get("status") or {}).get("phase") for i in items["items"]]
            return len(phases) == NS_OBJECTS and all(p == "Healthy" for p in phases)

        wait_until("50 Rollouts Healthy", rollouts_healthy, timeout=240, interval=1)
        items = custom.list_namespaced_custom_object(GROUP, VERSION, rollout_ns, PLURAL)["items"]
        finalizers = sorted({f for i in items for f in i["metadata"].get("finalizers") or []})
        time.sleep(2 * TICK_S)  # converged: nothing left to write
        log_offset = operator.log_path.stat().st_size
        rollouts_s = _delete_namespace_and_time(core, rollout_ns)
        created.remove(rollout_ns)
        time.sleep(5)  # what the operator logs right after (Event retries, say)
        own_operator(operator)  # the log read below is the one of the operator that acted
        with operator.log_path.open("rb") as f:
            f.seek(log_offset)
            log = f.read().decode(errors="replace")
    finally:
        for ns in created:
            with contextlib.suppress(ApiException):
                core.delete_namespace(ns)
    measured("namespace_delete_50_deployments_s", round(plain_s, 1))
    measured("namespace_delete_50_rollouts_s", round(rollouts_s, 1))
    measured("namespace_delete_rollout_finalizers", finalizers)
    yield NamespaceDeletions(plain_s, rollouts_s, rollout_ns, log, finalizers)


def test_namespace_with_50_rollouts_deletes_about_as_fast_as_with_50_deployments(
    namespace_deletions: NamespaceDeletions,
) -> None:
    d = namespace_deletions
    lines = d.log.splitlines()
    tracebacks = [n for n, line in enumerate(lines) if "Traceback" in line]
    assert not tracebacks, "\n".join(lines[max(0, tracebacks[0] - 5) : tracebacks[0] + 25])
    assert d.rollouts_s < 2 * d.plain_s + 10, (
        f"50 Rollouts: {d.rollouts_s:.1f}s, 50 Deployments: {d.plain_s:.1f}s"
    )


def test_namespace_deletion_is_left_alone_quietly(
    namespace_deletions: NamespaceDeletions,
) -> None:
    """handlers.py: "a Rollout whose namespace is being deleted is left alone quietly". The
    namespace controller deletes the owned Deployments, Services and ControllerRevisions before
    (or while) it deletes the Rollouts: kanary must not announce that it recreates them (Warning
    Events such as StableMissing that cannot be posted in a terminating namespace, and that the
    Event poster retries and logs at ERROR level)."""
    d = namespace_deletions
    mine = [line for line in d.log.splitlines() if d.rollout_ns in line]
    errors = [line for line in mine if line.startswith(("ERROR", "WARNING"))]
    announced = sorted(
        {line.split("reason=")[1].split(",")[0].strip("'") for line in errors if "reason=" in line}
    )
    recreations = [
        line for line in mine if '" 403 ' in line and ("PATCH" in line or "POST" in line)
    ]
    measured("namespace_delete_operator_error_or_warning_lines", len(errors))
    measured("namespace_delete_events_that_failed", announced)
    measured("namespace_delete_writes_refused_403", len(recreations))
    assert not errors, (
        f"{len(errors)} ERROR/WARNING lines about namespace {d.rollout_ns} during its deletion "
        f"(Events {announced}); first: {errors[0][:400]}"
    )


def _has_default_sa(core: client.CoreV1Api, namespace: str) -> bool:
    try:
        core.read_namespaced_service_account("default", namespace)
    except ApiException as e:
        if e.status == 404:
            return False
        raise
    return True
