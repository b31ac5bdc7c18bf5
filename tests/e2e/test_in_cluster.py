"""The install path users take, for real: kanary, Traefik and Prometheus as pods from manifests/
on the real node (hack/cluster/install.sh, what `make demo` and README's kind section do), in a
cluster of its own (netns kanary-ic), since the other tests run the operator and the data
plane as processes on the default one.

It checks the operator pod runs as its ServiceAccount and its liveness probe passes (the
kubelet's probe counters), Prometheus (a pod) scrapes the operator and the Gin pods through
Kubernetes SD with in-cluster credentials and DNS, and a Rollout of the shipped examples goes
v1 -> v2 through the Gateway's hostPort, driven by the operator pod.

    hack/cluster/exec.sh .venv/bin/python -m pytest -q tests/e2e/test_in_cluster.py
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import CLUSTER_DIR, REPO_ROOT, lib_path, wait_until

pytestmark = pytest.mark.e2e

NETNS = "kanary-ic"
STATE = Path(os.environ.get("KANARY_CACHE", Path.home() / ".cache/kanary")) / "cluster-ic"
ENV = {**os.environ, "KANARY_NETNS": NETNS, "KANARY_STATE": str(STATE)}
ENV.pop("KUBECONFIG", None)
ENV.pop("KUBECACHEDIR", None)
NS = "demo"


def run(*argv: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    """A command in the kanary-ic cluster's netns (exec.sh: its kubeconfig, kubectl on PATH)."""
    return subprocess.run(
        [str(CLUSTER_DIR / "exec.sh"), *argv],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


def kubectl_json(*args: str) -> Any:
    return json.loads(run("kubectl", *args, "-o", "json").stdout)


def raw(path: str) -> str:
    return run("kubectl", "get", "--raw", path).stdout


@pytest.fixture(scope="module")
def in_cluster() -> Iterator[None]:
    for script in ("up.sh", "node-up.sh", "install.sh"):
        done = subprocess.run(
            [str(CLUSTER_DIR / script)],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"hack/cluster/{script} failed:\n{done.stderr[-3000:]}", pytrace=False)
    netns_before = set(Path("/run/netns").iterdir())
    try:
        yield
    finally:
        down = subprocess.run(
            [str(CLUSTER_DIR / "down.sh")],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert down.returncode == 0, down.stderr[-3000:]
        # nothing of the node is left: processes, mounts, the pods' network namespaces
        assert "WARNING" not in down.stderr, down.stderr[-3000:]
        mounts = Path("/proc/self/mountinfo").read_text()
        assert str(STATE) not in mounts and "kanary-containerd-ic" not in mounts
        assert not Path(f"/sys/fs/cgroup/pids/{NETNS}").exists()
        assert (
            NETNS
            not in subprocess.run(
                ["ip", "netns", "list"], capture_output=True, text=True, check=True
            ).stdout
        )
        assert set(Path("/run/netns").iterdir()) <= netns_before, "pod network namespaces left"


def _operator_pods() -> list[dict[str, Any]]:
    return list(
        kubectl_json("-n", "kanary-system", "get", "pods", "-l", "app.kubernetes.io/name=kanary")[
            "items"
        ]
    )


def test_two_operator_pods_run_as_its_service_account_one_leads_and_both_stay_live(
    in_cluster: None,
) -> None:
    pods = _operator_pods()
    assert len(pods) == 2, [p["metadata"]["name"] for p in pods]
    for pod in pods:
        assert pod["spec"]["serviceAccountName"] == "kanary"
        assert pod["spec"]["nodeName"] == "kanary-node"
        (cs,) = pod["status"]["containerStatuses"]
        assert cs["ready"] and cs["imageID"], cs  # the imported image, by digest
    names = sorted(p["metadata"]["name"] for p in pods)

    def liveness_passed() -> bool:
        passed = set()
        for line in raw("/api/v1/nodes/kanary-node/proxy/metrics/probes").splitlines():
            if (
                line.startswith("prober_probe_total{")
                and 'container="operator"' in line
                and 'probe_type="Liveness"' in line
                and 'result="successful"' in line
                and float(line.rsplit(" ", 1)[1]) >= 1
            ):
                passed |= {n for n in names if f'pod="{n}"' in line}
        return passed == set(names)

    # initialDelaySeconds 10, periodSeconds 10
    wait_until("the kubelet's liveness probes of both operators passed", liveness_passed, 60)

    def readyz(pod: str) -> str:
        return raw(f"/api/v1/namespaces/kanary-system/pods/{pod}:8081/proxy/readyz").strip()

    def one_leader() -> list[str] | None:
        lines = sorted(readyz(n) for n in names)
        leaders = [line for line in lines if line.startswith("leader ")]
        return lines if len(leaders) == 1 else None

    lines = wait_until("exactly one operator pod leads", one_leader, timeout=60)
    leader = next(line.split()[1] for line in lines if line.startswith("leader "))
    assert leader in names, lines
    assert any(line == f"standby (leader: {leader})" for line in lines), lines
    lease = kubectl_json("-n", "kanary-system", "get", "lease", "kanary-leader")
    assert lease["spec"]["holderIdentity"] == leader
    for pod in _operator_pods():
        assert pod["status"]["containerStatuses"][0]["restartCount"] == 0


def _targets() -> list[dict[str, Any]]:
    body = raw("/api/v1/namespaces/monitoring/services/prometheus:9090/proxy/api/v1/targets")
    return list(json.loads(body)["data"]["activeTargets"])


def _gateway(host_ip: str) -> str | None:
    try:
        out = run("curl", "-s", "--max-time", "2", f"http://{host_ip}:8000/", check=False).stdout
        return str(json.loads(out).get("version"))
    except (ValueError, subprocess.TimeoutExpired):
        return None


def test_examples_roll_out_through_the_operator_pod_and_prometheus_pod(in_cluster: None) -> None:
    node_ip = str(lib_path("NODE_IP"))
    route = yaml.safe_load((REPO_ROOT / "manifests/examples/httproute-gin-demo.yaml").read_text())
    rollout = yaml.safe_load((REPO_ROOT / "manifests/examples/rollout-gin-demo.yaml").read_text())
    run("kubectl", "create", "namespace", NS, check=False)
    for body in (route, rollout):
        body["metadata"]["namespace"] = NS
    manifest = STATE / "examples.yaml"
    manifest.write_text(yaml.safe_dump_all([route, rollout]))
    run("kubectl", "apply", "-f", str(manifest))

    def phase() -> str:
        return str(
            kubectl_json("-n", NS, "get", "rollout", "gin-demo").get("status", {}).get("phase")
        )

    try:
        wait_until("gin-demo v1 Healthy", lambda: phase() == "Healthy", timeout=120)
    except AssertionError as e:
        status = kubectl_json("-n", NS, "get", "rollout", "gin-demo").get("status", {})
        # "Extra inputs are not permitted": the operator image predates the CRD (make images).
        raise AssertionError(f"{e}; phase {status.get('phase')}: {status.get('message')}") from None
    wait_until("the Gateway (hostPort) serves v1", lambda: _gateway(node_ip) == "v1", timeout=60)

    # Prometheus (a pod) scrapes the operator pod and the Gin pods, found by Kubernetes SD.
    def scraped() -> bool:
        up = [
            (t["labels"].get("job"), t["labels"].get("namespace"))
            for t in _targets()
            if t["health"] == "up"
        ]
        return ("kanary-operator", "kanary-system") in up and ("kanary-pods", NS) in up

    wait_until("Prometheus scraping the operator and the Gin pods", scraped, timeout=60)

    # v2: the operator pod moves the route's weights; promote --full skips the analysis steps.
    # What the example says a user changes: the image and APP_VERSION.
    container = rollout["spec"]["template"]["spec"]["containers"][0]
    at = next(i for i, e in enumerate(container["env"]) if e["name"] == "APP_VERSION")
    patch = [
        {
            "op": "replace",
            "path": "/spec/template/spec/containers/0/image",
            "value": container["image"].replace(":v1", ":v2"),
        },
        {
            "op": "replace",
            "path": f"/spec/template/spec/containers/0/env/{at}/value",
            "value": "v2",
        },
    ]
    run("kubectl", "-n", NS, "patch", "rollout", "gin-demo", "--type=json", "-p", json.dumps(patch))
    wait_until(
        "the canary gets traffic",
        lambda: (
            phase() == "Progressing"
            and (
                kubectl_json("-n", NS, "get", "rollout", "gin-demo")["status"].get(
                    "canaryWeight", 0
                )
                > 0
            )
        ),
        timeout=90,
    )
    kanary = str(REPO_ROOT / ".venv/bin/kanary")
    run(kanary, "promote", "gin-demo", "-n", NS, "--full")
    wait_until("gin-demo v2 Healthy", lambda: phase() == "Healthy", timeout=120)
    wait_until("the Gateway serves v2", lambda: _gateway(node_ip) == "v2", timeout=30)
