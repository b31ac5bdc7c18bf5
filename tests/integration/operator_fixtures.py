"""The kanary operator as a real process, authenticated as its own ServiceAccount.

The CRD, namespace and RBAC come from crds/ and manifests/, exactly as a user applies them, and
the operator's kubeconfig carries a token of ServiceAccount kanary-system/kanary: a permission
missing from manifests/rbac.yaml fails these tests.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import REPO_ROOT, Cluster, wait_until

OPERATOR_NAMESPACE = "kanary-system"
SERVICE_ACCOUNT = "kanary"
LIVENESS_PORT = 18080
METRICS_PORT = 18081
# The local cluster's Prometheus (hack/dataplane) is the operator's default; tests that need a
# Prometheus that misbehaves serve one on these loopback ports, allowed on purpose.
PROMETHEUS_URL = "http://127.0.0.1:9090"
ALLOWED_PROMETHEUS_URLS = ("http://127.0.0.1:19090", "http://127.0.0.1:19091")


def kubectl(cluster: Cluster, *args: str, stdin: str | None = None) -> str:
    out = subprocess.run(
        [str(cluster.kubectl), "--kubeconfig", str(cluster.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


def install_operator_manifests(cluster: Cluster) -> None:
    kubectl(cluster, "apply", "--server-side", "--force-conflicts", "-f", str(REPO_ROOT / "crds"))
    kubectl(cluster, "apply", "-f", str(REPO_ROOT / "manifests" / "namespace.yaml"))
    kubectl(cluster, "apply", "-f", str(REPO_ROOT / "manifests" / "rbac.yaml"))
    wait_crd_established(cluster)


def wait_crd_established(cluster: Cluster, name: str = "rollouts.kanary.dev") -> None:
    """Poll, as `kubectl wait` fails at once while a new CRD has no status.conditions yet."""
    jsonpath = "jsonpath={.status.conditions[?(@.type=='Established')].status}"

    def established() -> bool:
        return kubectl(cluster, "get", "crd", name, "-o", jsonpath).strip() == "True"

    wait_until(f"CRD {name} Established", established, timeout=30)


def service_account_kubeconfig(
    cluster: Cluster, path: Path, account: str = SERVICE_ACCOUNT
) -> Path:
    token = kubectl(
        cluster, "create", "token", account, "-n", OPERATOR_NAMESPACE, "--duration=6h"
    ).strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    server_cluster = admin["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": server_cluster}],
        "users": [{"name": SERVICE_ACCOUNT, "user": {"token": token}}],
        "contexts": [{"name": "kanary", "context": {"cluster": "local", "user": SERVICE_ACCOUNT}}],
        "current-context": "kanary",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class OperatorProcess:
    kubeconfig: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = field(default=0)
    # One identity across restarts (as a pod's name): a restarted operator renews its own Lease
    # at once instead of waiting for it to expire.
    identity: str = "kanary-test-operator"
    liveness_port: int = LIVENESS_PORT
    metrics_port: int = METRICS_PORT
    extra_args: tuple[str, ...] = ()
    # Set: run through tests/bench/bench_operator.py's wrapper, which logs every API request
    # (JSON lines: t, method, path, status) to this file.
    requests_log: Path | None = None

    def start(self) -> None:
        # Another session's operator on these ports would answer our liveness wait while ours
        # exits at once ("Address already in use"): the tests would drive the wrong operator.
        for port in (self.liveness_port, self.metrics_port):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    raise AssertionError(
                        f"port {port} is taken: another operator (another pytest session, or "
                        "hack/operator-up.sh) is running in this netns; stop it first"
                    )
        # the allocator the image runs (Dockerfile, operator/kanary/memtrim.py)
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        env.update(PYTHONMALLOC="malloc", MALLOC_ARENA_MAX="2")
        log = self.log_path.open("ab")
        self.starts += 1
        log.write(f"\n===== operator start {self.starts} =====\n".encode())
        log.flush()
        args = [
            "--verbose",
            "--identity",
            self.identity,
            "--liveness",
            f"http://127.0.0.1:{self.liveness_port}/healthz",
            "--metrics-port",
            str(self.metrics_port),
            "--prometheus-url",
            PROMETHEUS_URL,
            *[f"--allow-prometheus-url={url}" for url in ALLOWED_PROMETHEUS_URLS],
            *self.extra_args,
        ]
        if self.requests_log is None:
            cmd = [sys.executable, "-m", "kanary.cli", "run", *args]
        else:
            wrapper = REPO_ROOT / "tests" / "bench" / "bench_operator.py"
            cmd = [sys.executable, str(wrapper), "operator", "--requests-log"]
            cmd += [str(self.requests_log), "--", *args]
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until("operator liveness endpoint", self._alive, timeout=60)

    def _alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"operator exited with {self.proc.returncode}:\n{self.tail()}")
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=1
            ) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
        self.proc = None

    def tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=2) as r:
            return str(r.read().decode())

    def readyz(self) -> str:
        """/readyz's one line: "leader <identity>" or "standby (leader: ...)"."""
        url = f"http://127.0.0.1:{self.metrics_port}/readyz"
        with urllib.request.urlopen(url, timeout=2) as r:
            return str(r.read().decode()).strip()

    def leads(self) -> bool:
        try:
            return self.proc is not None and self.readyz().startswith("leader")
        except OSError:
            return False


def stop_shared_operator() -> None:
    """For tests that run operators of their own: the session's operator would act on their
    Rollouts too. SIGTERM releases its Lease; the next module that needs it starts it again."""
    shared = running_operator()
    if shared is not None:
        shared.kill(signal.SIGTERM)


_SESSION: list[OperatorProcess] = []  # the one operator this pytest session started


def running_operator() -> OperatorProcess | None:
    """The operator this session already runs (test modules that import the `operator` fixture
    each get their own session-scoped copy of it; they must all share one process)."""
    return _SESSION[0] if _SESSION else None


@pytest.fixture(scope="session")
def operator(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    shared = running_operator()
    if shared is not None:
        if shared.proc is None or shared.proc.poll() is not None:
            shared.start()
        yield shared
        return
    install_operator_manifests(cluster)
    workdir = tmp_path_factory.mktemp("operator")
    proc = OperatorProcess(
        kubeconfig=service_account_kubeconfig(cluster, workdir / "kubeconfig"),
        log_path=workdir / "operator.log",
    )
    proc.start()
    _SESSION.append(proc)
    try:
        yield proc
    finally:
        _SESSION.clear()
        proc.kill(signal.SIGTERM)
        # Forbidden calls show up in the operator log: keep it where CI prints it.
        print(f"\n--- operator log ({proc.log_path}) tail ---\n{proc.tail(40)}")
