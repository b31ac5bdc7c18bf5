"""Pure parts of hack/dataplane: the pod runner's image/env/port mapping, the
load generator's target check and the Prometheus config rewrite."""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.unit.scripts import load_script

runner = load_script("dataplane", "runner")
load = load_script("dataplane", "load")
promcfg = load_script("dataplane", "prometheus_config")


def pod(
    phase: str = "Running",
    ip: str | None = "10.244.0.7",
    env: list[dict[str, Any]] | None = None,
    image: str = "kanary/gin-demo:v2",
    deleting: bool = False,
    initialized: bool = True,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": "web-1",
        "namespace": "demo",
        "uid": "u-1",
        "labels": {"app": "web"},
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": [{"type": "Initialized", "status": "True" if initialized else "False"}],
    }
    if ip:
        status["podIP"] = ip
    return {
        "metadata": meta,
        "spec": {
            "nodeName": "kwok-node-0",
            "terminationGracePeriodSeconds": 5,
            "containers": [
                {
                    "name": "app",
                    "image": image,
                    "env": env or [],
                    "ports": [{"containerPort": 8080}],
                },
                {"name": "sidecar", "image": "busybox:1"},
            ],
        },
        "status": status,
    }


BINS = {"kanary/gin-demo": "/bin/gin-demo"}


@pytest.mark.parametrize(
    ("image", "want"),
    [
        ("kanary/gin-demo:v1", ("kanary/gin-demo", "v1")),
        ("kanary/gin-demo", ("kanary/gin-demo", "latest")),
        ("docker.io/kanary/gin-demo:v3", ("kanary/gin-demo", "v3")),
        ("localhost:5000/kanary/gin-demo:v4@sha256:abc", ("localhost:5000/kanary/gin-demo", "v4")),
        ("localhost:5000/x", ("localhost:5000/x", "latest")),
    ],
)
def test_split_image(image: str, want: tuple[str, str]) -> None:
    assert runner.split_image(image) == want


def test_want_binds_pod_ip_and_port_with_version_from_tag() -> None:
    (w,) = runner.wants_for(pod(), BINS, None)
    env = dict(w.env)
    assert w.binary == "/bin/gin-demo"
    assert w.listen == "10.244.0.7:8080" == env["LISTEN_ADDR"]
    assert env["APP_VERSION"] == "v2"
    assert env["POD_NAME"] == "web-1" == env["HOSTNAME"]
    assert w.grace_s == 5
    assert w.key == "demo_web-1_app"


def test_env_from_pod_spec_wins_and_is_resolved() -> None:
    env: list[dict[str, Any]] = [
        {"name": "APP_VERSION", "value": "custom"},
        {"name": "PORT", "value": "9090"},
        {"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "APPL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "GREETING", "value": "hi $(ME) $$(ME) $(NOPE)"},
    ]
    (w,) = runner.wants_for(pod(env=env), BINS, None)
    got = dict(w.env)
    assert got["APP_VERSION"] == "custom"
    assert "PORT" not in got  # the app refuses PORT together with LISTEN_ADDR
    assert got["LISTEN_ADDR"] == "10.244.0.7:9090"
    assert got["ME"] == "web-1" and got["APPL"] == "web"
    assert got["GREETING"] == "hi web-1 $(ME) $(NOPE)"


@pytest.mark.parametrize(
    ("kw", "start_on", "runs"),
    [
        ({}, "created", True),
        ({"phase": "Pending"}, "created", True),  # IP given: containers created, not Ready yet
        ({"phase": "Pending"}, "running", False),
        ({"phase": "Pending", "initialized": False}, "created", False),
        ({"ip": None, "phase": "Pending"}, "created", False),
        ({"deleting": True}, "created", False),
        ({"phase": "Failed"}, "created", False),
        ({"phase": "Succeeded"}, "created", False),
        ({"image": "other/app:v1"}, "created", False),
    ],
)
def test_which_pods_run(kw: dict[str, Any], start_on: str, runs: bool) -> None:
    assert bool(runner.wants_for(pod(**kw), BINS, None, start_on)) is runs


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_load_allows_loopback(host: str) -> None:
    load.check_target(host)


@pytest.mark.parametrize("host", ["10.244.0.5", "192.168.1.1", "8.8.8.8", "example.com"])
def test_load_refuses_other_targets_outside_the_netns(host: str) -> None:
    if load.in_netns():
        pytest.skip("running inside the cluster's netns")
    with pytest.raises(SystemExit):
        load.check_target(host)


def test_prometheus_config_is_localized() -> None:
    sa = "/var/run/secrets/kubernetes.io/serviceaccount"
    cfg = {
        "global": {"scrape_interval": "15s", "scrape_timeout": "10s"},
        "scrape_configs": [
            {
                "job_name": "pods",
                "scrape_interval": "5s",
                "kubernetes_sd_configs": [{"role": "pod", "bearer_token_file": f"{sa}/token"}],
                "relabel_configs": [{"source_labels": ["x"], "target_label": "y"}],
            },
            {"job_name": "api", "tls_config": {"ca_file": f"{sa}/ca.crt"}},
        ],
    }
    out = promcfg.localize(cfg, "https://127.0.0.1:6443", "/s/ca", "/s/tok", "1s")
    assert out["global"] == {
        "scrape_interval": "1s",
        "scrape_timeout": "1s",
        "evaluation_interval": "1s",
    }
    assert "alerting" not in out and "rule_files" not in out  # nothing added without them
    pods, api = out["scrape_configs"]
    assert pods["scrape_interval"] == "1s"
    assert pods["kubernetes_sd_configs"] == [
        {
            "role": "pod",
            "api_server": "https://127.0.0.1:6443",
            "tls_config": {"ca_file": "/s/ca"},
            "authorization": {"type": "Bearer", "credentials_file": "/s/tok"},
        }
    ]
    assert pods["relabel_configs"] == cfg["scrape_configs"][0]["relabel_configs"]  # type: ignore[index]
    assert api["tls_config"] == {"ca_file": "/s/ca"}


REPO = Path(__file__).resolve().parents[2]
PROM_MANIFESTS = REPO / "manifests" / "prometheus"
RULES = PROM_MANIFESTS / "config" / "kanary-alerts.yml"


def test_localize_points_every_alertmanager_entry_at_the_local_one() -> None:
    cfg: dict[str, Any] = {
        "scrape_configs": [],
        "rule_files": ["kanary-alerts.yml", "extra-*.yml"],
        "alerting": {
            "alert_relabel_configs": [{"action": "labeldrop", "regex": "x"}],
            "alertmanagers": [
                {"path_prefix": "/am", "kubernetes_sd_configs": [{"role": "pod"}]},
                {"static_configs": [{"targets": ["alertmanager.monitoring.svc:9093"]}]},
            ],
        },
    }
    out = promcfg.localize(cfg, "https://s", "/ca", "/tok", "1s", "127.0.0.1:9093")
    local = [{"targets": ["127.0.0.1:9093"]}]
    assert out["alerting"] == {
        "alert_relabel_configs": [{"action": "labeldrop", "regex": "x"}],
        "alertmanagers": [
            {"path_prefix": "/am", "static_configs": local},
            {"static_configs": local},
        ],
    }
    assert out["rule_files"] == ["rules/kanary-alerts.yml", "rules/extra-*.yml"]
    # no alerting section at all: one is added; without --alertmanager the config's stays
    bare = promcfg.localize({"scrape_configs": []}, "https://s", "/ca", "/tok", "1s", "h:1")
    assert bare["alerting"] == {"alertmanagers": [{"static_configs": [{"targets": ["h:1"]}]}]}
    kept = promcfg.localize(cfg, "https://s", "/ca", "/tok", "1s")
    assert kept["alerting"] == cfg["alerting"]


def test_localize_scrapes_the_traefik_process_instead_of_its_pod() -> None:
    cfg, _ = promcfg.find_config(PROM_MANIFESTS)
    job = next(j for j in cfg["scrape_configs"] if j["job_name"] == "traefik")
    assert job["kubernetes_sd_configs"][0]["namespaces"] == {"names": ["traefik"]}
    out = promcfg.localize(cfg, "https://s", "/ca", "/tok", "1s", traefik="127.0.0.1:8080")
    local = next(j for j in out["scrape_configs"] if j["job_name"] == "traefik")
    assert local == {"job_name": "traefik", "static_configs": [{"targets": ["127.0.0.1:8080"]}]}
    pods = next(j for j in out["scrape_configs"] if j["job_name"] == "kanary-pods")
    assert "kubernetes_sd_configs" in pods  # the other jobs keep their discovery
    kept = promcfg.localize(cfg, "https://s", "/ca", "/tok", "1s")
    assert "kubernetes_sd_configs" in next(
        j for j in kept["scrape_configs"] if j["job_name"] == "traefik"
    )


def test_rule_files_are_found_next_to_the_config() -> None:
    groups = "groups: []\n"
    near = {"a.yml": groups, "b-1.yml": groups, "b-2.yml": groups, "notes.txt": "x"}
    got = promcfg.rule_files({"rule_files": ["a.yml", "b-*.yml"]}, near, "cfg")
    assert got == {"a.yml": groups, "b-1.yml": groups, "b-2.yml": groups}
    assert promcfg.rule_files({}, near, "cfg") == {}
    for bad in (["missing.yml"], ["sub/a.yml"], ["notes.txt"]):
        with pytest.raises(SystemExit):
            promcfg.rule_files({"rule_files": bad}, near, "cfg")


def test_local_config_from_the_manifests_loads_their_rules_and_the_local_alertmanager(
    tmp_path: Path,
) -> None:
    """What hack/dataplane/up.sh runs, on the real manifests/prometheus."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "current-context": "c",
                "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
                "clusters": [
                    {
                        "name": "k",
                        "cluster": {
                            "server": "https://127.0.0.1:6443",
                            "certificate-authority-data": "Q0E=",
                        },
                    }
                ],
                "users": [{"name": "u", "user": {"token": "t0ken"}}],
            }
        )
    )
    out_dir = tmp_path / "out"
    (out_dir / "rules").mkdir(parents=True)
    (out_dir / "rules" / "stale.yml").write_text("groups: []\n")  # from an older run
    argv = ["--source", str(PROM_MANIFESTS), "--kubeconfig", str(kubeconfig)]
    argv += ["--out-dir", str(out_dir), "--alertmanager", "127.0.0.1:9093"]
    assert promcfg.main(argv) == 0
    cfg = yaml.safe_load((out_dir / "prometheus.yml").read_text())
    assert cfg["global"]["evaluation_interval"] == "1s"
    assert cfg["rule_files"] == ["rules/kanary-alerts.yml"]
    assert cfg["alerting"]["alertmanagers"] == [
        {"static_configs": [{"targets": ["127.0.0.1:9093"]}]}
    ]
    assert sorted(p.name for p in (out_dir / "rules").iterdir()) == ["kanary-alerts.yml"]
    assert (out_dir / "rules" / "kanary-alerts.yml").read_text() == RULES.read_text()


def test_kind_manifests_ship_the_rules_and_name_an_alertmanager() -> None:
    """The ConfigMap holds prometheus.yml and the rules file side by side (mounted flat at
    /etc/prometheus), and prometheus.yml loads the rules by that relative name."""
    kustomization = yaml.safe_load((PROM_MANIFESTS / "kustomization.yaml").read_text())
    (generator,) = kustomization["configMapGenerator"]
    assert f"config/{RULES.name}" in generator["files"]
    cfg = yaml.safe_load((PROM_MANIFESTS / "config" / "prometheus.yml").read_text())
    assert cfg["rule_files"] == [RULES.name]
    assert cfg["alerting"]["alertmanagers"] == [
        {"static_configs": [{"targets": ["alertmanager.monitoring.svc:9093"]}]}
    ]


def test_the_alert_rules_use_kanarys_metrics() -> None:
    from kanary import metrics_export

    (group,) = yaml.safe_load(RULES.read_text())["groups"]
    rules = {r["alert"]: r for r in group["rules"]}
    assert set(rules) == {"KanaryRolledBack", "KanaryWaitingForHuman", "KanaryOperatorDown"}
    rollbacks = next(iter(metrics_export.ROLLBACKS.describe())).name + "_total"
    rollouts = next(iter(metrics_export.ROLLOUTS.describe())).name
    assert rollbacks in rules["KanaryRolledBack"]["expr"]
    assert f'{rollouts}{{phase="Paused"}}' in rules["KanaryWaitingForHuman"]["expr"]
    assert "Paused" in metrics_export.PHASES
    assert 'up{job="kanary-operator"}' in rules["KanaryOperatorDown"]["expr"]
    assert "absent(" in rules["KanaryOperatorDown"]["expr"]
    job_names = [
        j["job_name"]
        for j in yaml.safe_load((PROM_MANIFESTS / "config" / "prometheus.yml").read_text())[
            "scrape_configs"
        ]
    ]
    assert "kanary-operator" in job_names
    assert rules["KanaryWaitingForHuman"]["for"] == "30m"
    assert rules["KanaryOperatorDown"]["for"] == "5m"
    assert "for" not in rules["KanaryRolledBack"]  # a rollback is news at once
    severities = {name: r["labels"]["severity"] for name, r in rules.items()}
    assert severities == {
        "KanaryRolledBack": "warning",
        "KanaryWaitingForHuman": "warning",
        "KanaryOperatorDown": "critical",
    }
    for r in rules.values():
        assert r["annotations"]["summary"] and r["annotations"]["description"]


def _named(p: dict[str, Any], name: str, uid: str, args: list[str]) -> dict[str, Any]:
    p["metadata"].update(name=name, uid=uid)
    p["spec"]["containers"][0]["args"] = args
    return p


def _wait(cond: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_runner_lifecycle_with_real_processes(tmp_path: Path) -> None:
    """Start, stop (SIGTERM, SIGKILL after the grace period) and restart real
    processes; a new pod that gets a stopping pod's IP (kwok reuses IPs at once)
    ends the old process first. bash stands in for the app binary."""
    stubborn = ["-c", "trap '' TERM; sleep 30"]  # ignores SIGTERM, like a slow shutdown
    r = runner.Runner({"kanary/gin-demo": "/bin/bash"}, tmp_path / "logs", tmp_path / "pids", None)
    a = _named(pod(), "a", "uid-a", stubborn)
    try:
        r.reconcile([a])
        (proc_a,) = r.procs.values()
        assert (tmp_path / "pids" / "demo_a_app.pid").read_text().strip() == str(proc_a.popen.pid)
        assert (tmp_path / "logs" / "demo_a_app.log").exists()

        # a is deleted (still stopping: it ignores SIGTERM, grace 5s); b gets its IP
        b = _named(pod(), "b", "uid-b", ["-c", "sleep 30"])
        r.reconcile([b])  # a: SIGTERM (ignored), then killed: b needs the address
        assert not r.procs  # b starts once a is gone
        assert _wait(lambda: proc_a.popen.poll() is not None, timeout=2)  # not a's 5s grace
        assert _wait(lambda: (r.reconcile([b]), len(r.procs) == 1)[1])
        (proc_b,) = r.procs.values()
        assert proc_b.want.key == "demo_b_app"
        assert not (tmp_path / "pids" / "demo_a_app.pid").exists()

        # b's process exits while b still runs: restarted after the backoff (1s)
        proc_b.popen.kill()
        assert _wait(
            lambda: (
                r.reconcile([b]),
                bool(r.procs) and next(iter(r.procs.values())) is not proc_b,
            )[1]
        )
        assert next(iter(r.procs.values())).restarts == 1
    finally:
        r.shutdown(timeout_s=2)
    assert not r.procs and not r.stopping
    assert not list((tmp_path / "pids").glob("*.pid"))


# ------------------------------------------------------------ readiness ---
def test_probe_state_needs_failure_threshold_failures_in_a_row() -> None:
    st = runner.ProbeState(success_threshold=1, failure_threshold=3)
    assert st.ready  # kwok made the pod Ready before probing starts
    assert [st.observe(ok) for ok in (False, False, True, False, False)] == [False] * 5
    assert st.ready  # a success in between starts the count again
    assert st.observe(False) and not st.ready  # third failure in a row
    assert not st.observe(False) and not st.ready  # no change, no new transition
    assert st.observe(True) and st.ready  # successThreshold 1: back at once


def test_probe_state_needs_success_threshold_successes_in_a_row() -> None:
    st = runner.ProbeState(success_threshold=2, failure_threshold=1, ready=False)
    assert not st.observe(True)
    assert not st.observe(False) and not st.ready  # failure resets the run
    assert not st.observe(True)
    assert st.observe(True) and st.ready
    assert st.observe(False) and not st.ready  # failureThreshold 1


def _probe_pod(probe: dict[str, Any] | None, phase: str = "Running") -> dict[str, Any]:
    p = pod(phase=phase)
    p["spec"]["containers"][0]["ports"] = [{"name": "http", "containerPort": 8080}]
    if probe is not None:
        p["spec"]["containers"][0]["readinessProbe"] = probe
    return p


def test_readiness_probe_defaults_and_named_port() -> None:
    (w,) = runner.wants_for(
        _probe_pod({"httpGet": {"path": "/readyz", "port": "http"}}), BINS, None
    )
    assert w.container == "app"
    assert w.probe == runner.Probe(
        kind="http",
        host="10.244.0.7",
        port=8080,
        path="/readyz",
        period_s=10.0,
        timeout_s=1.0,
        success_threshold=1,
        failure_threshold=3,
    )
    assert w.probe.target() == "http://10.244.0.7:8080/readyz"


def test_readiness_probe_fields() -> None:
    spec = {
        "httpGet": {
            "path": "ready",
            "port": 9000,
            "scheme": "HTTPS",
            "httpHeaders": [{"name": "X-A", "value": "1"}],
        },
        "initialDelaySeconds": 2,
        "periodSeconds": 1,
        "timeoutSeconds": 3,
        "successThreshold": 2,
        "failureThreshold": 5,
    }
    probe = runner.readiness_probe(_probe_pod(spec)["spec"]["containers"][0], "10.244.0.9")
    assert probe == runner.Probe(
        kind="http",
        host="10.244.0.9",
        port=9000,
        path="/ready",
        scheme="HTTPS",
        headers=(("X-A", "1"),),
        initial_delay_s=2.0,
        period_s=1.0,
        timeout_s=3.0,
        success_threshold=2,
        failure_threshold=5,
    )
    tcp = runner.readiness_probe({"readinessProbe": {"tcpSocket": {"port": 81}}}, "10.244.0.9")
    assert tcp is not None and (tcp.kind, tcp.port, tcp.target()) == (
        "tcp",
        81,
        "tcp://10.244.0.9:81",
    )


@pytest.mark.parametrize(
    "probe",
    [
        None,
        {"exec": {"command": ["true"]}},  # not run here
        {"grpc": {"port": 8080}},
        {"httpGet": {"path": "/readyz", "port": "metrics"}},  # no such named port
    ],
)
def test_no_readiness_probe_to_run(probe: dict[str, Any] | None) -> None:
    (w,) = runner.wants_for(_probe_pod(probe), BINS, None)
    assert w.probe is None


@pytest.mark.parametrize(("phase", "probed"), [("Running", True), ("Pending", False)])
def test_probes_only_once_running(phase: str, probed: bool) -> None:
    # Pending: kwok's pod-ready timer runs, and any write to the pod restarts it
    p = _probe_pod({"httpGet": {"path": "/readyz", "port": 8080}}, phase=phase)
    wants = runner.wants_for(p, BINS, None)
    assert bool(runner.probes_for(p, wants)) is probed


class _ReadyzServer:
    """/readyz on 127.0.0.1 answering 200 or 503 as told."""

    def __init__(self) -> None:
        self.ok = True
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200 if outer.ok and self.path == "/readyz" else 503)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.httpd.server_address[1])
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_prober_publishes_settled_results() -> None:
    srv = _ReadyzServer()
    calls: list[tuple[str, str, str, str]] = []
    probe = runner.Probe(
        kind="http", host="127.0.0.1", port=srv.port, path="/readyz", period_s=0.05
    )
    pr = runner.Prober("demo", "web-1", "u-1", {"app": probe}, None, lambda *a: calls.append(a))
    pr.start()
    try:
        time.sleep(0.3)
        assert calls == []  # ready, no annotation: nothing to say
        srv.ok = False
        assert _wait(lambda: calls == [("demo", "web-1", "u-1", "failure")], timeout=3)
        srv.ok = True
        assert _wait(lambda: calls[-1:] == [("demo", "web-1", "u-1", "success")], timeout=3)
        srv.close()  # nothing listens: connection refused is a failure too
        assert _wait(lambda: len(calls) == 3 and calls[-1][3] == "failure", timeout=3)
    finally:
        pr.stop.set()
        srv.close()


def test_prober_retries_a_failed_publish_and_resumes_from_the_annotation() -> None:
    attempts: list[str] = []

    def flaky(_ns: str, _pod: str, _uid: str, value: str) -> None:
        attempts.append(value)
        if len(attempts) == 1:
            raise OSError("API server restarting")

    srv = _ReadyzServer()  # answers 200
    probe = runner.Probe(
        kind="http", host="127.0.0.1", port=srv.port, path="/readyz", period_s=0.05
    )
    # the annotation says failure (e.g. the runner restarted): starts not ready
    pr = runner.Prober("demo", "web-1", "u-1", {"app": probe}, "failure", flaky)
    pr.start()
    try:
        assert _wait(lambda: attempts == ["success", "success"], timeout=3)
        time.sleep(0.2)
        assert attempts == ["success", "success"] and pr.published == "success"
    finally:
        pr.stop.set()
        srv.close()


def test_runner_probes_running_pods_and_stops_with_them(tmp_path: Path) -> None:
    srv = _ReadyzServer()
    calls: list[tuple[str, str, str, str]] = []
    r = runner.Runner(
        {"kanary/gin-demo": "/bin/bash"},
        tmp_path / "logs",
        tmp_path / "pids",
        None,
        publish=lambda *a: calls.append(a),
    )
    probe = {"httpGet": {"host": "127.0.0.1", "path": "/readyz", "port": srv.port}}
    p = _named(_probe_pod(probe, phase="Pending"), "a", "uid-a", ["-c", "sleep 30"])
    try:
        r.reconcile([p])
        assert len(r.procs) == 1 and not r.probers  # Pending: runs, not probed
        p["status"]["phase"] = "Running"
        r.reconcile([p])
        (prober,) = r.probers.values()
        assert prober.probes["app"].port == srv.port
        r.reconcile([p])
        assert next(iter(r.probers.values())) is prober  # one prober per pod
        r.reconcile([])
        assert not r.probers and prober.stop.is_set()
    finally:
        r.shutdown(timeout_s=2)
        srv.close()
    assert calls == []


def test_runner_leaves_the_real_nodes_pods_alone(tmp_path: Path) -> None:
    """With --pod-cidr (kwok's range) the runner starts nothing for a pod of the real node:
    its container runs there, and binding the pod IP here would fail or shadow it."""
    import ipaddress

    r = runner.Runner(
        BINS,
        tmp_path / "logs",
        tmp_path / "pids",
        None,
        pod_cidr=ipaddress.ip_network("10.244.0.0/16"),
    )
    assert r.mine(pod(ip="10.244.0.7"))
    assert not r.mine(pod(ip="10.245.0.12"))
    assert r.mine(pod(ip=None))  # no IP yet: wants_for decides (it starts nothing either)
    everyone = runner.Runner(BINS, tmp_path / "l2", tmp_path / "p2", None)
    assert everyone.mine(pod(ip="10.245.0.12"))
