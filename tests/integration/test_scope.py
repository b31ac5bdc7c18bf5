"""An operator scoped to one namespace (`kanary run --namespace A`) with the namespaced RBAC of
manifests/namespaced/: it serves namespace A and never reads or writes in namespace B.

The manifests are applied as they are, for their own ServiceAccount (`kanary-scoped`, so the
session's cluster-wide `kanary` is untouched): the rules are the files'. Every API request the
operator makes is logged (tests/bench/bench_operator.py's wrapper) and checked.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import yaml
from kubernetes import client
from kubernetes.config import new_client_from_config

from kanary.kube import Kube
from kanary.objects import LABEL_ROLLOUT, LABEL_STEERED
from tests.integration.conftest import REPO_ROOT, Cluster, wait_until
from tests.integration.operator_fixtures import (
    OPERATOR_NAMESPACE,
    OperatorProcess,
    install_operator_manifests,
    kubectl,
    service_account_kubeconfig,
    stop_shared_operator,
)
from tests.integration.rollout_objects import rollout_body
from tests.integration.test_operator import Kit

NAMESPACED = REPO_ROOT / "manifests" / "namespaced"
SA = "kanary-scoped"


def _for_scoped(docs: list[dict[str, Any]], namespace: str | None) -> list[dict[str, Any]]:
    """The same objects, named for the scoped ServiceAccount; rules unchanged."""
    out = []
    for doc in docs:
        doc = json.loads(json.dumps(doc))
        meta = doc["metadata"]
        meta["name"] = meta["name"].replace("kanary", SA, 1)
        if namespace is not None and doc["kind"] in ("Role", "RoleBinding"):
            meta["namespace"] = namespace
        if "roleRef" in doc:
            doc["roleRef"]["name"] = doc["roleRef"]["name"].replace("kanary", SA, 1)
        for subject in doc.get("subjects", []):
            subject["name"] = SA
        out.append(doc)
    return out


def _load(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.fixture
def two_namespaces(cluster: Cluster, namespace: str) -> Iterator[tuple[str, str]]:
    other = f"{namespace[:50]}-b"
    core = client.CoreV1Api(cluster.api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=other)))
    try:
        yield namespace, other
    finally:
        core.delete_namespace(other, propagation_policy="Background")


@pytest.fixture
def scoped(
    cluster: Cluster, two_namespaces: tuple[str, str], tmp_path: Path
) -> Iterator[OperatorProcess]:
    stop_shared_operator()
    install_operator_manifests(cluster)  # the CRDs and the operator's namespace
    served, _ = two_namespaces
    objects = _for_scoped(_load(NAMESPACED / "rbac.yaml"), None)
    objects += _for_scoped(_load(NAMESPACED / "role.yaml"), served)
    applied = yaml.safe_dump_all(objects)
    kubectl(cluster, "apply", "-f", "-", stdin=applied)
    kubeconfig = tmp_path / "kubeconfig"
    service_account_kubeconfig(cluster, kubeconfig, account=SA)
    op = OperatorProcess(
        kubeconfig=kubeconfig,
        log_path=tmp_path / "scoped.log",
        identity="scoped",
        liveness_port=18480,
        metrics_port=18481,
        extra_args=("--namespace", served, "--lease-name", SA),
        requests_log=tmp_path / "scoped.requests.jsonl",
    )
    op.start()
    try:
        yield op
    finally:
        op.kill(signal.SIGTERM)
        print(f"\n--- scoped operator log tail ---\n{op.tail(20)}")
        kubectl(cluster, "delete", "--ignore-not-found", "-f", "-", stdin=applied)


def test_an_operator_scoped_to_a_namespace_serves_it_and_never_touches_another(
    cluster: Cluster, two_namespaces: tuple[str, str], scoped: OperatorProcess
) -> None:
    served, other = two_namespaces
    steps = [{"setWeight": 50}, {"pause": {"duration": "1s"}}]
    mine, theirs = Kit(cluster, served), Kit(cluster, other)
    for kit in (mine, theirs):
        kit.create(rollout_body("web", "kanary/gin-demo:v1", steps, gateway=False))
    mine.wait_phase("web", "Healthy")
    mine.set_image("web", "kanary/gin-demo:v2")
    mine.wait_promoted("web", "kanary/gin-demo:v2")
    time.sleep(3)
    assert theirs.status("web") == {}, "the other namespace's Rollout was acted on"
    assert theirs.deployment("web-stable") is None
    assert scoped.requests_log is not None
    requests = [
        json.loads(line)
        for line in scoped.requests_log.read_text().splitlines()
        if '"request"' in line
    ]
    paths = [str(r["path"]) for r in requests]
    assert not [p for p in paths if f"/namespaces/{other}/" in p], "it read or wrote there"
    refused = [r for r in requests if r.get("status") in (401, 403)]
    assert not refused, f"calls its namespaced RBAC refuses: {refused[:5]}"
    # outside its namespaces only discovery and the kinds that have no namespace
    cluster_wide = {r for p in paths if (r := _cluster_wide_resource(p)) is not None}
    assert cluster_wide <= {"gatewayclasses", "customresourcedefinitions"}, cluster_wide
    leases = f"/apis/coordination.k8s.io/v1/namespaces/{OPERATOR_NAMESPACE}/leases"
    assert {p.split("?")[0] for p in paths if f"/namespaces/{OPERATOR_NAMESPACE}/" in p} <= {
        leases,  # its create (a fresh cluster)
        f"{leases}/{SA}",
    }, "in its own namespace it touches only its Lease"
    # server-side label selectors: the API server sends it only what kanary owns
    owned = ("pods", "deployments", "services", "controllerrevisions")
    selectors = {p: LABEL_ROLLOUT for p in owned}
    for plural, label in {**selectors, "httproutes": LABEL_STEERED}.items():
        lists = [unquote(p) for p in paths if p.split("?")[0].endswith(f"/{plural}")]
        assert lists, f"no list or watch of {plural}"
        unbounded = [p for p in lists if f"labelSelector={label}" not in p]
        assert not unbounded, f"{plural} read without a selector: {unbounded[:3]}"
    # an Event series (Kube.repeat_event) through the namespaced RBAC and the real API server
    kube = Kube(new_client_from_config(str(scoped.kubeconfig)))
    now = datetime.now(UTC)
    event = kube.post_event(mine.rollout("web")["metadata"], "Normal", "Series", "again", now)
    kube.repeat_event(served, event, 3, now + timedelta(seconds=5))
    stored = client.CoreV1Api(cluster.api).read_namespaced_event(event, served)
    assert stored.count == 3 and stored.last_timestamp > stored.first_timestamp


def _cluster_wide_resource(path: str) -> str | None:
    """The resource of a request for all namespaces (/api/v1/pods, /apis/g/v/routes); None for
    a namespaced request or discovery (/api, /apis/g/v)."""
    parts = path.split("?")[0].strip("/").split("/")
    if "namespaces" in parts:
        return None
    if parts[0] == "api" and len(parts) == 3:
        return parts[2]
    if parts[0] == "apis" and len(parts) == 4:
        return parts[3]
    return None


# ---- a namespace being deleted -----------------------------------------------------------------


def test_rollouts_in_a_namespace_being_deleted_get_no_writes(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    """Issue 15: while a namespace was deleted, each of its Rollouts wrote its status as its
    Deployments and pods vanished (664 status patches for 1000 Rollouts in the bench), until a
    refused create marked the namespace. The cluster-wide install watches Namespaces: from the
    deletionTimestamp on, kanary writes nothing there. Counted from the operator's request log
    (the cluster-wide RBAC of manifests/rbac.yaml)."""
    stop_shared_operator()
    install_operator_manifests(cluster)
    op = OperatorProcess(
        kubeconfig=service_account_kubeconfig(cluster, tmp_path / "kubeconfig"),
        log_path=tmp_path / "nsdel.log",
        identity="nsdel",
        liveness_port=18482,
        metrics_port=18483,
        extra_args=("--lease-name", "kanary-nsdel"),
        requests_log=tmp_path / "nsdel.requests.jsonl",
    )
    op.start()
    try:
        kit = Kit(cluster, namespace)
        names = [f"web{i}" for i in range(8)]
        for name in names:
            body = rollout_body(name, "kanary/gin-demo:v1", [{"setWeight": 50}], gateway=False)
            body["spec"]["replicas"] = 1
            kit.create(body)
        for name in names:
            kit.wait_phase(name, "Healthy")
        core = client.CoreV1Api(cluster.api)
        deleted_at = time.time()
        core.delete_namespace(namespace)

        def gone() -> bool:
            try:
                core.read_namespace(namespace)
            except client.ApiException as e:
                return e.status == 404
            return False

        wait_until(f"namespace {namespace} gone", gone, timeout=180)
        time.sleep(2)
    finally:
        op.kill(signal.SIGTERM)
        print(f"\n--- namespace-deletion operator log tail ---\n{op.tail(20)}")
    assert op.requests_log is not None
    requests = [json.loads(line) for line in op.requests_log.read_text().splitlines()]
    there = [
        r
        for r in requests
        if f"/namespaces/{namespace}/" in str(r.get("path"))
        and r.get("method") in ("POST", "PUT", "PATCH", "DELETE")
    ]
    before = [r for r in there if float(r["t"]) < deleted_at]
    after = [f"{r['method']} {str(r['path']).split('?')[0]}" for r in there if r not in before]
    assert before, "the request log holds the Rollouts' own writes"
    assert after == [], f"{len(after)} writes after the namespace's deletion began: {after[:8]}"
    # the whole log: at DEBUG the 8 Rollouts' teardown can push the line out of any tail (CI)
    assert "is being deleted: its Rollouts are left alone" in op.log_path.read_text(
        errors="replace"
    )
