"""Fixtures for tests against the local cluster (hack/cluster).

The cluster runs inside a network namespace; run pytest inside it:

    hack/cluster/exec.sh .venv/bin/python -m pytest tests/integration

The session fixture calls hack/cluster/up.sh and node-up.sh once (it is idempotent, so a
cluster already up is reused; it is left running afterwards) and every test
gets its own namespace. `receiver` is a real HTTP server in the netns that records
POSTs (tests/integration/receiver.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from kubernetes import client, config
from kubernetes.client import ApiException

from .receiver import Receiver

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER_DIR = REPO_ROOT / "hack" / "cluster"

T = TypeVar("T")


def lib_path(variable: str) -> Path:
    """A path that hack/cluster/lib.sh defines (it pins the versions)."""
    out = subprocess.run(
        ["bash", "-c", f'source "$0" && printf %s "${variable}"', str(CLUSTER_DIR / "lib.sh")],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout)


def netns_name() -> str:
    return os.environ.get("KANARY_NETNS", "kanary")


def in_cluster_netns() -> bool:
    """True when this process runs in the cluster's network namespace."""
    try:
        ours = os.stat("/proc/self/ns/net")
        theirs = os.stat(f"/run/netns/{netns_name()}")
    except OSError:
        return False
    return (ours.st_dev, ours.st_ino) == (theirs.st_dev, theirs.st_ino)


def wait_until(
    what: str,
    probe: Callable[[], T | None],
    timeout: float = 60.0,
    interval: float = 0.2,
) -> T:
    """Poll probe() until it returns something other than None or False."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    kubectl: Path
    api: client.ApiClient

    def client_with_token(self, token: str) -> client.ApiClient:
        """An ApiClient for the same server and CA, authenticating with token."""
        base = self.api.configuration
        cfg = client.Configuration()
        cfg.host = base.host
        cfg.ssl_ca_cert = base.ssl_ca_cert
        cfg.verify_ssl = True
        cfg.api_key = {"authorization": f"Bearer {token}"}
        return client.ApiClient(cfg)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    if not in_cluster_netns():
        pytest.fail(
            f"integration tests must run inside network namespace {netns_name()!r}: "
            "hack/cluster/exec.sh .venv/bin/python -m pytest tests/integration",
            pytrace=False,
        )
    kubeconfig = lib_path("KUBECONFIG_PATH")
    kubectl = lib_path("KUBECTL")
    for script in ("up.sh", "node-up.sh"):  # the control plane and kwok; the real node
        up = subprocess.run(
            [str(CLUSTER_DIR / script)], capture_output=True, text=True, check=False
        )
        if up.returncode != 0:
            pytest.fail(
                f"hack/cluster/{script} failed ({up.returncode}):\n{up.stderr[-4000:]}",
                pytrace=False,
            )
    api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig)
    )
    try:
        yield Cluster(kubeconfig=kubeconfig, kubectl=kubectl, api=api)
    finally:
        # The cluster is left running for the next run (make cluster-down
        # stops it): on a shared machine another run may be using it.
        api.close()  # type: ignore[no-untyped-call]


@pytest.fixture(scope="session")
def core(cluster: Cluster) -> client.CoreV1Api:
    return client.CoreV1Api(cluster.api)


@pytest.fixture(scope="session")
def apps(cluster: Cluster) -> client.AppsV1Api:
    return client.AppsV1Api(cluster.api)


def _namespace_name(test_name: str) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"t-{base}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def namespace(request: pytest.FixtureRequest, core: client.CoreV1Api) -> Iterator[str]:
    """A fresh namespace for one test (deleted afterwards), with its default
    ServiceAccount present so bare Pods can be created at once."""
    name = _namespace_name(request.node.name)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))

    def default_sa() -> bool:
        try:
            core.read_namespaced_service_account("default", name)
        except ApiException as e:
            if e.status == 404:
                return False
            raise
        return True

    wait_until(f"ServiceAccount {name}/default", default_sa, timeout=30)
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name, propagation_policy="Background")
        except ApiException as e:
            if e.status != 404:
                raise


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP server in the cluster's netns, on an ephemeral port of 0.0.0.0, recording
    every POST (tests/integration/receiver.py): `down()`, `up()`, `status(code)`. Pods on the
    real node reach it at `receiver.node_url` (http://10.243.0.1:<port>/). Closed afterwards."""
    if not in_cluster_netns():
        pytest.fail(
            f"the receiver must run inside network namespace {netns_name()!r} (pods reach it "
            "at the node IP there): hack/cluster/exec.sh .venv/bin/python -m pytest ...",
            pytrace=False,
        )
    r = Receiver().up()
    try:
        yield r
    finally:
        r.close()
