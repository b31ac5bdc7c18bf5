"""The local cluster's real node (hack/cluster/node-up.sh): kubelet v1.34 on containerd + runc,
the bridge CNI, kube-proxy and CoreDNS, in the cluster's network namespace. Pods here are real
containers from the images hack/images/build.sh built and node-up.sh imported; their Ready
condition is their own readinessProbe's answer, not a kwok timer.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from .conftest import lib_path, wait_until
from .rollout_objects import example_security_context

NODE = "kanary-node"
GIN = "kanary/gin-demo:v1"
EXAMPLE_SECURITY = example_security_context()


def gin_pod(name: str, env: dict[str, str], period: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "app",
                    "image": GIN,
                    "imagePullPolicy": "Never",
                    "env": [{"name": k, "value": v} for k, v in env.items()],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "readinessProbe": {
                        "httpGet": {"path": "/readyz", "port": "http"},
                        "periodSeconds": period,
                        "failureThreshold": 1,
                    },
                    "securityContext": EXAMPLE_SECURITY,
                }
            ],
        },
    }


def create(core: client.CoreV1Api, namespace: str, body: dict[str, Any]) -> None:
    core.create_namespaced_pod(namespace, body)


def pod(core: client.CoreV1Api, namespace: str, name: str) -> Any:
    return core.read_namespaced_pod(name, namespace)


def ready_condition(p: Any) -> Any:
    return next((c for c in p.status.conditions or [] if c.type == "Ready"), None)


def is_ready(p: Any) -> bool:
    c = ready_condition(p)
    return c is not None and c.status == "True"


def started_at(p: Any) -> datetime | None:
    for cs in p.status.container_statuses or []:
        if cs.state and cs.state.running and cs.state.running.started_at:
            return cs.state.running.started_at  # type: ignore[no-any-return]
    return None


def ctr(*args: str) -> str:
    sock = lib_path("CONTAINERD_SOCK")
    out = subprocess.run(
        ["ctr", "--address", str(sock), "--namespace", "k8s.io", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return out.stdout


def container_pid(p: Any) -> int:
    cid = p.status.container_statuses[0].container_id.removeprefix("containerd://")
    for line in ctr("tasks", "ls").splitlines()[1:]:
        task, pid, _status = line.split()
        if task == cid:
            return int(pid)
    raise AssertionError(f"no containerd task for {cid}")


def test_real_node_is_ready_with_its_versions(core: client.CoreV1Api) -> None:
    node = core.read_node(NODE)
    info = node.status.node_info
    assert info.kubelet_version == "v1.34.4"
    assert info.container_runtime_version.startswith("containerd://1.6.")
    assert is_ready(node), node.status.conditions
    assert not node.spec.taints, "ordinary pods go to the real node"
    assert node.metadata.labels.get("type") == "real"


def test_the_images_are_imported_not_pulled() -> None:
    images = set(ctr("images", "ls", "-q").split())
    for ref in (
        "registry.k8s.io/pause:3.10.1",
        "docker.io/kanary/gin-demo:v1",
        "docker.io/kanary/gin-demo:v2",
        "docker.io/kanary/operator:0.1.0",
        "docker.io/library/traefik:v3.6",
        "quay.io/prometheus/prometheus:v2.42.0",
    ):
        assert ref in images, f"{ref} not in containerd: {sorted(images)}"


def test_readyz_gates_ready(core: client.CoreV1Api, namespace: str) -> None:
    """STARTUP_DELAY=3s: the app answers /readyz 503 for 3 s after it started, so the kubelet's
    probe cannot make the pod Ready earlier. The control pod (no delay) is Ready sooner, so the
    3 s come from the app, not from the node."""
    create(core, namespace, gin_pod("slow", {"STARTUP_DELAY": "3s"}))
    create(core, namespace, gin_pod("quick", {}))
    slow = wait_until(
        "pod slow Ready",
        lambda: (p := pod(core, namespace, "slow")) and is_ready(p) and p,
        timeout=90,
    )
    quick = wait_until(
        "pod quick Ready",
        lambda: (p := pod(core, namespace, "quick")) and is_ready(p) and p,
        timeout=90,
    )
    assert slow.spec.node_name == NODE and quick.spec.node_name == NODE
    # Both timestamps are whole seconds, rounded down: ready >= started + 3 holds for them too.
    slow_started, quick_started = started_at(slow), started_at(quick)
    assert slow_started is not None and quick_started is not None
    slow_gap = (ready_condition(slow).last_transition_time - slow_started).total_seconds()
    quick_gap = (ready_condition(quick).last_transition_time - quick_started).total_seconds()
    assert slow_gap >= 3, f"Ready {slow_gap}s after the container started"
    assert quick_gap < 3, f"the control pod took {quick_gap}s"


@pytest.mark.skipif(os.geteuid() != 0, reason="reads /proc of another user's process")
def test_the_examples_security_context_is_enforced(core: client.CoreV1Api, namespace: str) -> None:
    """runc applies what the kubelet asks: uid/gid 65532, no capabilities, no new privileges,
    the RuntimeDefault seccomp filter, a read-only root filesystem."""
    create(core, namespace, gin_pod("locked", {}))
    p = wait_until(
        "pod locked Ready",
        lambda: (q := pod(core, namespace, "locked")) and is_ready(q) and q,
        timeout=90,
    )
    pid = container_pid(p)
    proc = Path(f"/proc/{pid}")
    status = dict(line.split(":", 1) for line in proc.joinpath("status").read_text().splitlines())
    assert status["Uid"].split() == ["65532"] * 4
    assert status["CapEff"].strip() == "0000000000000000"
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"  # a filter
    root = next(
        line.split()
        for line in proc.joinpath("mountinfo").read_text().splitlines()
        if line.split()[4] == "/"
    )
    assert "ro" in root[5].split(","), root


def test_a_crashing_container_is_reported_by_the_kubelet(
    core: client.CoreV1Api, namespace: str
) -> None:
    """A bad knob makes the app exit 2 at start: the kubelet restarts it (CrashLoopBackOff)
    and never reports the pod Ready."""
    create(core, namespace, gin_pod("crash", {"LATENCY": "soon"}))

    def crashed() -> Any:
        p = pod(core, namespace, "crash")
        for cs in p.status.container_statuses or []:
            last = cs.last_state.terminated if cs.last_state else None
            if last is not None and cs.restart_count >= 1:
                return p, last
        return None

    p, last = wait_until("the container restarted after exiting", crashed, timeout=90)
    assert last.exit_code == 2
    assert not is_ready(p)


def test_a_pod_goes_unready_after_it_was_ready(core: client.CoreV1Api, namespace: str) -> None:
    """UNREADY_AFTER=4s: /readyz turns 503 four seconds after start; the probe takes Ready away."""
    create(core, namespace, gin_pod("fading", {"UNREADY_AFTER": "4s"}))
    wait_until("pod fading Ready", lambda: is_ready(pod(core, namespace, "fading")), timeout=90)
    p = wait_until(
        "pod fading not Ready again",
        lambda: (q := pod(core, namespace, "fading")) and not is_ready(q) and q,
        timeout=30,
    )
    assert p.status.phase == "Running"  # the process lives on: only readiness changed


def _dns_a(name: str, server: str) -> list[str]:
    """One A query over UDP (RFC 1035), enough to check the cluster DNS without a resolver."""
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    query = struct.pack(">HHHHHH", 0x4B1D, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(query, (server, 53))
        reply, _ = s.recvfrom(2048)
    answers = struct.unpack(">H", reply[6:8])[0]
    at = 12 + len(qname) + 4
    out = []
    for _ in range(answers):
        at += 2 if reply[at] & 0xC0 == 0xC0 else len(qname)
        rtype, _cls, _ttl, size = struct.unpack(">HHIH", reply[at : at + 10])
        at += 10
        if rtype == 1:
            out.append(socket.inet_ntoa(reply[at : at + size]))
        at += size
    return out


def test_cluster_dns_and_a_cluster_ip_reach_a_real_pod(
    core: client.CoreV1Api, namespace: str
) -> None:
    """kube-dns (CoreDNS) answers for Services; kube-proxy's rules take a ClusterIP to the pod."""
    dns = str(lib_path("CLUSTER_DNS"))
    assert _dns_a("kubernetes.default.svc.cluster.local", dns) == ["10.96.0.1"]
    create(core, namespace, gin_pod("web", {"APP_VERSION": "v-dns"}))
    core.create_namespaced_service(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]},
        },
    )
    wait_until("pod web Ready", lambda: is_ready(pod(core, namespace, "web")), timeout=90)
    ip = wait_until(
        "web.<ns>.svc resolves",
        lambda: _dns_a(f"web.{namespace}.svc.cluster.local", dns),
        timeout=30,
    )[0]
    assert ip == core.read_namespaced_service("web", namespace).spec.cluster_ip

    def get() -> Any:
        try:
            with urllib.request.urlopen(f"http://{ip}/", timeout=2) as r:
                return json.loads(r.read())
        except OSError:
            return None

    assert wait_until("GET http://web/ through kube-proxy", get, timeout=30)["version"] == "v-dns"


def test_kubelet_serves_logs_to_the_api_server(core: client.CoreV1Api, namespace: str) -> None:
    """The API server reaches the kubelet (its client certificate, the kubelet's serving one)."""
    create(core, namespace, gin_pod("talk", {"APP_VERSION": "v-logs"}))
    wait_until("pod talk Ready", lambda: is_ready(pod(core, namespace, "talk")), timeout=90)
    logs = core.read_namespaced_pod_log("talk", namespace)
    assert "msg=listening" in logs and "v-logs" in logs, logs
