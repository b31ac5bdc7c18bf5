"""Alerting in the local cluster: the data plane's Alertmanager (Debian's package, pinned by
hack/dataplane/lib.sh, started by hack/dataplane/up.sh), kanary's alert rules
(manifests/prometheus/config/kanary-alerts.yml) in Prometheus, and the `receiver` fixture
(tests/integration/receiver.py), a real HTTP server that pods on the real node can reach.

Runs in the cluster's network namespace like every integration test:

    hack/cluster/exec.sh .venv/bin/python -m pytest -q tests/integration/test_alertmanager.py
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
import urllib.error
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from kubernetes import client

from .analysis_fixtures import PrometheusServer, free_port
from .conftest import REPO_ROOT, lib_path, wait_until
from .dataplane_fixtures import (
    PROMETHEUS,
    Alertmanager,
    DataPlane,
    alertmanager,  # noqa: F401  (pytest fixture)
    dataplane,  # noqa: F401  (pytest fixture)
    http_json,
    record,
)
from .receiver import NODE_IP, Receiver, connection_refused
from .rollout_objects import example_security_context

pytestmark = pytest.mark.integration

RULES_FILE = REPO_ROOT / "manifests" / "prometheus" / "config" / "kanary-alerts.yml"
RULES = {"KanaryRolledBack", "KanaryWaitingForHuman", "KanaryOperatorDown"}
OPERATOR_IMAGE = "kanary/operator:0.1.0"  # has Python: the pod's HTTP client


def rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def cluster_var(name: str) -> str:
    """A value hack/cluster/lib.sh defines."""
    return str(lib_path(name))


# ------------------------------------------------------------------- Alertmanager ---
def test_alertmanager_is_debians_pinned_package_in_the_netns(
    alertmanager: Alertmanager,  # noqa: F811
) -> None:
    installed = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "prometheus-alertmanager"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert installed.stdout == alertmanager.deb_version, installed
    status = alertmanager.status()
    assert status["versionInfo"]["version"] == alertmanager.version
    assert status["cluster"]["status"] == "disabled"  # no gossip port (would be 0.0.0.0:9094)
    assert connection_refused("127.0.0.1", 9094)
    config = yaml.safe_load(status["config"]["original"])
    assert config["route"]["receiver"] == "default"
    assert [r["name"] for r in config["receivers"]] == ["default"]
    assert set(config["receivers"][0]) == {"name"}, "the receiver must send nothing"
    # the node IP too: pods on the real node reach it there
    assert http_json(f"{alertmanager.node_url}/-/ready")[0] == 200


def test_posted_alert_is_listed_with_its_labels_and_resolves(
    alertmanager: Alertmanager,  # noqa: F811
) -> None:
    rollout = unique("web")
    labels = {
        "alertname": "KanaryTestAlert",
        "namespace": "t-alerts",
        "rollout": rollout,
        "severity": "warning",
        "reason": "AnalysisFailed",
    }
    control = {**labels, "rollout": f"{rollout}-control"}  # never resolved
    now = datetime.now(UTC)
    alertmanager.post(
        [
            {
                "labels": lb,
                "annotations": {"summary": f"{lb['rollout']} rolled back"},
                "startsAt": rfc3339(now),
            }
            for lb in (labels, control)
        ]
    )

    def listed(lb: dict[str, str]) -> list[dict[str, Any]] | None:
        got = alertmanager.alerts(rollout=lb["rollout"], alertname=lb["alertname"])
        return got or None

    (alert,) = wait_until("the posted alert listed", lambda: listed(labels), timeout=10)
    assert alert["labels"] == labels
    assert alert["annotations"] == {"summary": f"{rollout} rolled back"}
    assert alert["status"]["state"] == "active"
    assert [r["name"] for r in alert["receivers"]] == ["default"]
    assert alert["fingerprint"]

    # The same labels with endsAt in the past: resolved, no longer listed as active.
    alertmanager.post([{"labels": labels, "endsAt": rfc3339(now - timedelta(seconds=1))}])
    wait_until(
        "the resolved alert gone from the active alerts",
        lambda: not alertmanager.alerts(rollout=rollout, alertname=labels["alertname"]),
        timeout=10,
    )
    assert listed(control), "the control alert must still be active"
    alertmanager.post([{"labels": control, "endsAt": rfc3339(now - timedelta(seconds=1))}])


# ------------------------------------------------------------ Prometheus (data plane) ---
def test_dataplane_prometheus_loads_the_rules_and_sends_to_alertmanager(
    dataplane: DataPlane,  # noqa: F811
    alertmanager: Alertmanager,  # noqa: F811
) -> None:
    def evaluated() -> list[dict[str, Any]] | None:
        """The rule groups once every rule was evaluated: a rule's health is "unknown" until
        its first evaluation (CI caught this right after the data plane started)."""
        code, doc = http_json(f"{PROMETHEUS}/api/v1/rules?type=alert")
        assert code == 200, doc
        groups: list[dict[str, Any]] = doc["data"]["groups"]
        found = [r for g in groups for r in g["rules"]]
        return groups if found and all(r["health"] != "unknown" for r in found) else None

    groups = wait_until("every rule evaluated", evaluated, timeout=30)
    rules = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(rules) == RULES
    for name, rule in rules.items():
        assert rule["health"] == "ok", (name, rule.get("lastError"))
    assert rules["KanaryWaitingForHuman"]["duration"] == 30 * 60
    assert rules["KanaryOperatorDown"]["duration"] == 5 * 60
    # what Prometheus loaded is the manifests' file, copied by prometheus_config.py
    (file,) = {g["file"] for g in groups}
    assert Path(file).read_text() == RULES_FILE.read_text()

    def active() -> list[str] | None:
        code, doc = http_json(f"{PROMETHEUS}/api/v1/alertmanagers")
        urls = [a["url"] for a in doc["data"]["activeAlertmanagers"]] if code == 200 else []
        return urls or None

    urls = wait_until("Prometheus' active Alertmanagers", active, timeout=30)
    assert urls == [f"{alertmanager.url}/api/v2/alerts"]


# ------------------------------------------------------- the rules, with real metrics ---
class MetricsEndpoint:
    """kanary's own metric objects (operator/kanary/metrics_export.py) served on 127.0.0.1 by
    prometheus_client's start_http_server, as the operator serves them (`kanary run
    --metrics-port`)."""

    def __init__(self) -> None:
        from prometheus_client import start_http_server

        self.port = free_port()
        self._server, self._thread = start_http_server(self.port, addr="127.0.0.1")
        self.up = True

    def stop(self) -> None:
        if self.up:
            self.up = False
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)


@pytest.fixture
def operator_metrics() -> Iterator[MetricsEndpoint]:
    endpoint = MetricsEndpoint()
    try:
        yield endpoint
    finally:
        endpoint.stop()


def rules_prometheus(
    workdir: Path, metrics_port: int, alertmanager_host: str | None
) -> PrometheusServer:
    """A Prometheus of its own (the data plane's build, 1s evaluation) with the manifests'
    rules file, scraping 127.0.0.1:metrics_port as job kanary-operator with the target labels
    the pod relabeling of manifests/prometheus gives (namespace=kanary-system, pod)."""
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES_FILE)],
        "scrape_configs": [
            {
                "job_name": "kanary-operator",
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{metrics_port}"],
                        "labels": {"namespace": "kanary-system", "pod": unique("kanary-test")},
                    }
                ],
            }
        ],
    }
    if alertmanager_host is not None:
        am = {"static_configs": [{"targets": [alertmanager_host]}]}
        config["alerting"] = {"alertmanagers": [am]}
    return PrometheusServer(workdir, config).start()


def rule_states(prom: PrometheusServer) -> dict[str, tuple[str, list[dict[str, Any]]]]:
    """name -> (state, its alerts' labels)."""
    groups = prom.api("/api/v1/rules?type=alert")["groups"]
    return {
        r["name"]: (r["state"], [a["labels"] for a in r["alerts"]])
        for g in groups
        for r in g["rules"]
    }


def test_rules_fire_on_kanarys_metrics_into_alertmanager(
    tmp_path: Path,
    operator_metrics: MetricsEndpoint,
    alertmanager: Alertmanager,  # noqa: F811
    dataplane: DataPlane,  # noqa: F811
) -> None:
    """kanary's real metric objects, scraped by a Prometheus with the manifests' rules: a
    rollback fires KanaryRolledBack into the data plane's Alertmanager with the Rollout's
    namespace, rollout and reason; a Paused Rollout turns KanaryWaitingForHuman pending; the
    alert resolves when the series goes away."""
    from prometheus_client import REGISTRY

    from kanary import metrics_export as m

    ns, rollout, reason = unique("t-shop"), unique("web"), "AnalysisFailed"
    prom = rules_prometheus(
        tmp_path / "prometheus", operator_metrics.port, alertmanager.url.removeprefix("http://")
    )
    counted = False
    # record_status (reconcile.py) sets this gauge: an in-process test may have left it > 0
    paused_before = REGISTRY.get_sample_value("kanary_rollouts", {"phase": "Paused"}) or 0.0
    m.ROLLOUTS.labels("Paused").set(0)
    try:
        prom.wait_targets_up(1)
        # up == 1, nothing Paused: inactive (KanaryRolledBack: see the alert's own labels)
        wait_until(
            "KanaryWaitingForHuman and KanaryOperatorDown evaluated, inactive",
            lambda: (
                rule_states(prom)["KanaryWaitingForHuman"][0] == "inactive"
                and rule_states(prom)["KanaryOperatorDown"][0] == "inactive"
            ),
            timeout=15,
        )
        assert not alertmanager.alerts(alertname="KanaryRolledBack", rollout=rollout)

        t0 = time.monotonic()
        m.ROLLBACKS.labels(ns, rollout, reason).inc()  # what record_status does on a rollback
        counted = True

        def fired() -> list[dict[str, Any]] | None:
            return alertmanager.alerts(alertname="KanaryRolledBack", rollout=rollout) or None

        (alert,) = wait_until("KanaryRolledBack in Alertmanager", fired, timeout=30)
        record(dataplane, "rollback_metric_to_alertmanager_s", round(time.monotonic() - t0, 2))
        assert alert["labels"] == {
            "alertname": "KanaryRolledBack",
            "namespace": ns,  # the Rollout's, not the operator pod's (exported_namespace)
            "rollout": rollout,
            "reason": reason,
            "severity": "warning",
            "job": "kanary-operator",
        }
        assert alert["annotations"]["summary"] == (
            f"Rollout {ns}/{rollout} was rolled back ({reason})"
        )
        assert alert["status"]["state"] == "active"

        m.ROLLOUTS.labels("Paused").set(1)  # one Rollout Paused: pending for 30 minutes

        def paused() -> list[dict[str, Any]] | None:
            state, alerts = rule_states(prom)["KanaryWaitingForHuman"]
            return alerts if state == "pending" else None

        assert wait_until("KanaryWaitingForHuman pending", paused, timeout=15) == [
            {
                "alertname": "KanaryWaitingForHuman",
                "job": "kanary-operator",
                "phase": "Paused",
                "severity": "warning",
            }
        ]
        assert rule_states(prom)["KanaryOperatorDown"][0] == "inactive"

        # The rollback's series goes away (another operator process): the alert resolves.
        m.ROLLBACKS.remove(ns, rollout, reason)
        counted = False
        wait_until(
            "KanaryRolledBack resolved in Alertmanager",
            lambda: not alertmanager.alerts(alertname="KanaryRolledBack", rollout=rollout),
            timeout=30,
        )
    finally:
        m.ROLLOUTS.labels("Paused").set(paused_before)
        if counted:
            m.ROLLBACKS.remove(ns, rollout, reason)
        prom.stop()


def test_operator_down_rule_turns_pending_when_the_operator_stops_answering(
    tmp_path: Path, operator_metrics: MetricsEndpoint
) -> None:
    """KanaryOperatorDown: inactive while job kanary-operator is scraped, pending (it fires
    after 5 minutes) once the scrapes fail."""
    prom = rules_prometheus(tmp_path / "prometheus", operator_metrics.port, alertmanager_host=None)
    try:
        prom.wait_targets_up(1)
        wait_until(
            "KanaryOperatorDown inactive",
            lambda: rule_states(prom)["KanaryOperatorDown"][0] == "inactive",
            timeout=15,
        )
        operator_metrics.stop()

        def pending() -> list[dict[str, Any]] | None:
            state, alerts = rule_states(prom)["KanaryOperatorDown"]
            return alerts if state == "pending" else None

        (labels,) = wait_until("KanaryOperatorDown pending", pending, timeout=15)
        assert labels["job"] == "kanary-operator" and labels["severity"] == "critical"
    finally:
        prom.stop()


# ------------------------------------------------------------------------ receiver ---
def post(url: str, doc: Any) -> int:
    code, _ = http_json(url, "POST", doc, timeout=5)
    return code


def test_receiver_records_posts_and_can_be_switched(receiver: Receiver) -> None:
    assert post(f"{receiver.url}hook/a?x=1", {"n": 1}) == 200
    (first,) = receiver.wait_for(1, timeout=5)
    assert first.path == "/hook/a?x=1"
    assert first.json == {"n": 1} and json.loads(first.body) == {"n": 1}
    assert first.headers["content-type"] == "application/json"
    assert first.client == "127.0.0.1"
    assert abs(first.at - time.time()) < 10

    receiver.status(503)
    assert post(receiver.url, {"n": 2}) == 503
    assert [r.json for r in receiver.wait_for(2, timeout=5)] == [{"n": 1}, {"n": 2}]

    port = receiver.port
    receiver.down()
    assert cluster_var("NODE_IP") == NODE_IP
    assert connection_refused("127.0.0.1", port)
    assert connection_refused(NODE_IP, port)
    with pytest.raises(urllib.error.URLError) as err:
        post(receiver.url, {"n": 3})
    assert isinstance(err.value.reason, ConnectionRefusedError)

    receiver.up()
    receiver.status(200)
    assert receiver.port == port
    assert post(receiver.node_url, {"n": 4}) == 200
    assert [r.json for r in receiver.wait_for(3, timeout=5)] == [{"n": 1}, {"n": 2}, {"n": 4}]


POD_SCRIPT = """
import json, os, urllib.request
with urllib.request.urlopen(os.environ["AM"] + "/api/v2/status", timeout=10) as r:
    version = json.load(r)["versionInfo"]["version"]
body = json.dumps({"pod": os.environ["POD"], "alertmanager": version}).encode()
req = urllib.request.Request(os.environ["HOOK"], data=body, method="POST",
                             headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=10) as r:
    print("receiver answered", r.status)
"""


def test_a_pod_on_the_real_node_reaches_the_receiver_and_alertmanager(
    core: client.CoreV1Api,
    namespace: str,
    receiver: Receiver,
    alertmanager: Alertmanager,  # noqa: F811
) -> None:
    """A real container (the operator image: it has Python) on kanary-node reads
    Alertmanager's status at the node IP and POSTs it to the receiver at the node IP."""
    name = "caller"
    env = {"AM": alertmanager.node_url, "HOOK": f"{receiver.node_url}from-pod", "POD": name}
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "call",
                    "image": OPERATOR_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["python", "-c", POD_SCRIPT],
                    "env": [{"name": k, "value": v} for k, v in env.items()],
                    "securityContext": example_security_context(),
                }
            ],
        },
    }
    core.create_namespaced_pod(namespace, cast(Any, body))
    (got,) = receiver.wait_for(1, timeout=120)
    assert got.path == "/from-pod"
    assert got.json == {"pod": name, "alertmanager": alertmanager.version}
    pod: Any = core.read_namespaced_pod(name, namespace)
    assert pod.spec.node_name == cluster_var("NODE_NAME")
    node_pods = ipaddress.ip_network(cluster_var("NODE_POD_CIDR"))
    assert ipaddress.ip_address(got.client) in node_pods, got.client

    def succeeded() -> bool:
        p: Any = core.read_namespaced_pod(name, namespace)
        return bool(p.status.phase == "Succeeded")

    wait_until("pod Succeeded", succeeded, timeout=30)
