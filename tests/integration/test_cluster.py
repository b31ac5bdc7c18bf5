"""The local cluster (hack/cluster) behaves like a real one where kanary needs it:
controllers, scheduler, kwok pod lifecycles driven by annotations, RBAC,
PodSecurity admission, EndpointSlices and the Gateway API CRDs."""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from .conftest import Cluster, wait_until
from .rollout_objects import ON_KWOK

pytestmark = pytest.mark.integration

K8S_VERSION = "v1.34.4"
POD_CIDR = ipaddress.ip_network("10.244.0.0/16")
IMAGE = "kanary.local/test:1"  # never pulled: kwok runs nothing

CREATE = "pod-create.stage.kwok.x-k8s.io"
READY = "pod-ready.stage.kwok.x-k8s.io"
CHAOS = "pod-container-running-failed.stage.kwok.x-k8s.io"


def ready_after(delay: str) -> dict[str, str]:
    """Annotations for a pod that gets an IP at once and is Ready exactly
    `delay` later (kwok: when jitter <= delay the wait is the jitter)."""
    return {
        f"{CREATE}/delay": "0s",
        f"{CREATE}/jitter-delay": "0s",
        f"{READY}/delay": delay,
        f"{READY}/jitter-delay": delay,
    }


NEVER_READY = ready_after("876000h")  # 100 years


def pod_spec() -> client.V1PodSpec:
    return client.V1PodSpec(
        containers=[
            client.V1Container(
                name="app", image=IMAGE, ports=[client.V1ContainerPort(container_port=8080)]
            )
        ],
        restart_policy="Always",
        node_selector=ON_KWOK["nodeSelector"],
        tolerations=ON_KWOK["tolerations"],
    )


def make_pod(
    name: str, annotations: dict[str, str], labels: dict[str, str] | None = None
) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, annotations=annotations, labels=labels),
        spec=pod_spec(),
    )


def status(pod: client.V1Pod) -> client.V1PodStatus:
    assert pod.status is not None
    return pod.status


def name_of(obj: client.V1Pod | client.V1Node) -> str:
    assert obj.metadata is not None and obj.metadata.name is not None
    return obj.metadata.name


def pod_ip(pod: client.V1Pod) -> str:
    ip = status(pod).pod_ip
    assert ip, f"{name_of(pod)} has no IP"
    return ip


def condition(pod: client.V1Pod, ctype: str) -> client.V1PodCondition | None:
    for c in status(pod).conditions or []:
        if c.type == ctype:
            return c
    return None


def is_ready(pod: client.V1Pod) -> bool:
    c = condition(pod, "Ready")
    return c is not None and c.status == "True"


def make_deployment(name: str, replicas: int, annotations: dict[str, str]) -> client.V1Deployment:
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels, annotations=annotations),
                spec=pod_spec(),
            ),
        ),
    )


def test_versions(cluster: Cluster) -> None:
    server = client.VersionApi(cluster.api).get_code()
    assert server.git_version == K8S_VERSION
    out = subprocess.run(
        [str(cluster.kubectl), "--kubeconfig", str(cluster.kubeconfig), "version", "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    versions = json.loads(out.stdout)
    assert versions["clientVersion"]["gitVersion"] == K8S_VERSION
    assert versions["serverVersion"]["gitVersion"] == K8S_VERSION


def test_nodes_are_kwok_and_ready(core: client.CoreV1Api) -> None:
    nodes = core.list_node(label_selector="type=kwok").items
    assert len(nodes) >= 3
    for node in nodes:
        assert node.metadata is not None and node.status is not None and node.spec is not None
        assert (node.metadata.annotations or {}).get("kwok.x-k8s.io/node") == "fake"
        ready = [c for c in node.status.conditions or [] if c.type == "Ready"]
        assert ready and ready[0].status == "True", name_of(node)
        # only pods that tolerate it land on a kwok node; ordinary ones go to the real node
        taints = [(t.key, t.value, t.effect) for t in node.spec.taints or []]
        assert ("kwok.x-k8s.io/node", "fake", "NoSchedule") in taints, name_of(node)


def test_node_leases_are_renewed(cluster: Cluster, core: client.CoreV1Api) -> None:
    """Without Leases the node-lifecycle controller marks every node (and its
    pods) NotReady once its 50s grace period passes between kwok's status
    patches; kwok must renew a Lease for each node (every 10s)."""
    leases = client.CoordinationV1Api(cluster.api)

    def lease_of(name: str) -> client.V1Lease | None:
        try:
            return leases.read_namespaced_lease(name, "kube-node-lease")
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    for node in core.list_node().items:
        # a kubelet creates its Lease shortly after it registers its Node
        name = name_of(node)
        lease = wait_until(f"the Lease of {name}", lambda n=name: lease_of(n), timeout=30)
        assert lease.spec is not None and lease.spec.renew_time is not None
        age = (datetime.now(UTC) - lease.spec.renew_time).total_seconds()
        # under the controller's 50s grace (a kwok restart pauses renewals ~30s)
        assert age < 50, f"lease of {name_of(node)} renewed {age:.0f}s ago"


def test_deployment_pods_ready_after_annotated_delay(
    apps: client.AppsV1Api, core: client.CoreV1Api, namespace: str
) -> None:
    apps.create_namespaced_deployment(namespace, make_deployment("web", 3, ready_after("2s")))

    def three_ready() -> bool:
        d = apps.read_namespaced_deployment_status("web", namespace)
        return d.status is not None and (d.status.ready_replicas or 0) == 3

    wait_until("3 ready replicas", three_ready, timeout=60)
    pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
    assert len(pods) == 3
    for pod in pods:
        assert pod.spec is not None and pod.spec.node_name, "scheduled"
        ready = condition(pod, "Ready")
        assert ready is not None and ready.status == "True"
        assert ready.last_transition_time is not None
        assert ipaddress.ip_address(pod_ip(pod)) in POD_CIDR
        assert pod.metadata is not None and pod.metadata.creation_timestamp is not None
        # Timestamps have 1s resolution: 2s +- 1s.
        waited = (ready.last_transition_time - pod.metadata.creation_timestamp).total_seconds()
        assert 1 <= waited <= 3, f"{name_of(pod)} Ready after {waited}s"


def test_never_ready_pod_stays_unready(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_pod(namespace, make_pod("never", NEVER_READY))
    # A control pod created at the same time shows kwok is working meanwhile.
    core.create_namespaced_pod(namespace, make_pod("control", ready_after("1s")))

    def started() -> bool:
        return bool(status(core.read_namespaced_pod("never", namespace)).pod_ip)

    wait_until("never-ready pod started (IP assigned)", started, timeout=30)
    # kwok's default readiness delay is at most 5s: wait past it, so a pod
    # whose annotations were ignored would be Ready by now.
    time.sleep(6)
    assert is_ready(core.read_namespaced_pod("control", namespace))
    never = core.read_namespaced_pod("never", namespace)
    assert condition(never, "Initialized") is not None
    assert not is_ready(never)
    assert status(never).phase == "Pending"


def test_chaos_pod_fails(core: client.CoreV1Api, namespace: str) -> None:
    annotations = {
        **ready_after("0s"),
        f"{CHAOS}/delay": "1s",
        f"{CHAOS}/jitter-delay": "1s",
        f"{CHAOS}/exit-code": "3",
        f"{CHAOS}/reason": "Chaos",
    }
    pod = make_pod("doomed", annotations, labels={CHAOS: "true"})
    assert pod.spec is not None
    pod.spec.restart_policy = "Never"
    core.create_namespaced_pod(namespace, pod)

    def failed() -> client.V1Pod | None:
        p = core.read_namespaced_pod("doomed", namespace)
        return p if status(p).phase == "Failed" else None

    p = wait_until("pod phase Failed", failed, timeout=30)
    assert not is_ready(p)
    statuses = status(p).container_statuses or []
    assert len(statuses) == 1 and statuses[0].state is not None
    terminated = statuses[0].state.terminated
    assert terminated is not None
    assert terminated.exit_code == 3
    assert terminated.reason == "Chaos"


PROBE_ANNOTATION = "kanary.dev/readiness-probe"  # hack/cluster/stages/pod-readiness-probe.yaml


def test_readiness_probe_annotation_flips_ready(core: client.CoreV1Api, namespace: str) -> None:
    """kanary's kwok Stages: the pod runner's probe result, as the annotation
    kanary.dev/readiness-probe, turns a Running pod NotReady ("failure") and
    Ready again ("success"): conditions and containerStatuses, the rest of
    the status kept. Set by hand here (nothing runs behind this pod)."""
    core.create_namespaced_pod(namespace, make_pod("probed", ready_after("0s")))

    def pod_when(ready: bool) -> Callable[[], client.V1Pod | None]:
        def probe() -> client.V1Pod | None:
            p = core.read_namespaced_pod("probed", namespace)
            return p if is_ready(p) is ready else None

        return probe

    before = wait_until("pod Ready (kwok)", pod_when(True), timeout=30)
    (cs,) = status(before).container_statuses or []
    assert cs.ready and cs.state is not None and cs.state.running is not None
    started_at = cs.state.running.started_at

    for value, ready in (("failure", False), ("success", True), ("failure", False)):
        t0 = time.monotonic()
        body = {"metadata": {"annotations": {PROBE_ANNOTATION: value}}}
        core.patch_namespaced_pod("probed", namespace, body)
        p = wait_until(f"{value}: Ready={ready}", pod_when(ready), timeout=10)
        assert time.monotonic() - t0 < 5, "the Stages have no delay"
        st = status(p)
        assert st.phase == "Running" and st.pod_ip == pod_ip(before)
        containers_ready = condition(p, "ContainersReady")
        assert containers_ready is not None and containers_ready.status == str(ready)
        initialized = condition(p, "Initialized")
        assert initialized is not None and initialized.status == "True"  # merged, not replaced
        (cs,) = st.container_statuses or []
        assert cs.ready is ready
        assert cs.state is not None and cs.state.running is not None
        assert cs.state.running.started_at == started_at  # the container did not restart


def test_rbac_is_enforced(cluster: Cluster, core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="reader"))
    )
    token_request = core.create_namespaced_service_account_token(
        "reader",
        namespace,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
        ),
    )
    assert token_request.status is not None
    token = token_request.status.token
    assert token
    reader = client.CoreV1Api(cluster.client_with_token(token))
    try:
        with pytest.raises(ApiException) as denied:
            reader.list_namespaced_pod(namespace)
        assert denied.value.status == 403

        rbac = client.RbacAuthorizationV1Api(cluster.api)
        rbac.create_namespaced_role(
            namespace,
            client.V1Role(
                metadata=client.V1ObjectMeta(name="pod-reader"),
                rules=[client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["list"])],
            ),
        )
        rbac.create_namespaced_role_binding(
            namespace,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="pod-reader"),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="Role", name="pod-reader"
                ),
                subjects=[
                    client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=namespace)
                ],
            ),
        )

        def allowed() -> bool:
            try:
                reader.list_namespaced_pod(namespace)
            except ApiException as e:
                if e.status == 403:
                    return False
                raise
            return True

        wait_until("pod list allowed by the Role", allowed, timeout=30)
        # The Role grants pods only.
        with pytest.raises(ApiException) as still_denied:
            reader.list_namespaced_service(namespace)
        assert still_denied.value.status == 403
    finally:
        reader.api_client.close()


def test_pod_security_admission(core: client.CoreV1Api, namespace: str) -> None:
    ns = core.read_namespace(namespace)
    assert ns.metadata is not None
    ns.metadata.labels = {
        **(ns.metadata.labels or {}),
        "pod-security.kubernetes.io/enforce": "restricted",
    }
    core.replace_namespace(namespace, ns)
    pod = make_pod("privileged", ready_after("0s"))
    assert pod.spec is not None
    pod.spec.containers[0].security_context = client.V1SecurityContext(privileged=True)
    with pytest.raises(ApiException) as rejected:
        core.create_namespaced_pod(namespace, pod)
    assert rejected.value.status == 403
    assert "violates PodSecurity" in str(rejected.value.body)


def test_endpointslice_ready_only_after_pods_ready(
    apps: client.AppsV1Api, core: client.CoreV1Api, namespace: str
) -> None:
    core.create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1ServiceSpec(
                selector={"app": "web"},
                ports=[client.V1ServicePort(port=80, target_port=8080)],
            ),
        ),
    )
    apps.create_namespaced_deployment(namespace, make_deployment("web", 2, ready_after("4s")))
    discovery = client.DiscoveryV1Api(core.api_client)
    seen_unready: set[str] = set()

    def all_ready() -> list[client.V1Endpoint] | None:
        slices = discovery.list_namespaced_endpoint_slice(
            namespace, label_selector="kubernetes.io/service-name=web"
        ).items
        endpoints = [e for s in slices for e in (s.endpoints or [])]
        # Read the pods after the slices: a ready endpoint must be a Ready pod.
        pods = {name_of(p): p for p in core.list_namespaced_pod(namespace).items}
        ready = 0
        for e in endpoints:
            assert e.target_ref is not None and e.target_ref.name is not None
            assert e.conditions is not None
            pod = pods[e.target_ref.name]
            assert e.addresses == [pod_ip(pod)]
            if e.conditions.ready:
                assert is_ready(pod), f"{name_of(pod)} published ready before it was Ready"
                ready += 1
            else:
                seen_unready.add(e.addresses[0])
        return endpoints if len(endpoints) == 2 and ready == 2 else None

    endpoints = wait_until("2 ready endpoints", all_ready, timeout=60, interval=0.1)
    addresses = {e.addresses[0] for e in endpoints}
    pod_ips = {pod_ip(p) for p in core.list_namespaced_pod(namespace).items}
    assert addresses == pod_ips
    assert all(ipaddress.ip_address(a) in POD_CIDR for a in addresses)
    # The pods were published unready first (4s readiness delay).
    assert seen_unready, "never saw a not-ready endpoint"
    assert seen_unready <= addresses


def test_pod_ip_is_local_in_netns(core: client.CoreV1Api, namespace: str) -> None:
    """A process can bind a pod IP and answer as that pod (AnyIP route)."""
    core.create_namespaced_pod(namespace, make_pod("p", ready_after("0s")))

    def assigned_ip() -> str | None:
        return status(core.read_namespaced_pod("p", namespace)).pod_ip

    ip = wait_until("pod IP", assigned_ip, timeout=30)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.bind((ip, 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        with socket.create_connection((ip, port), timeout=5) as cli:
            conn, _ = srv.accept()
            with conn:
                cli.sendall(b"ping")
                assert conn.recv(4) == b"ping"


def httproute(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": rules},
    }


def test_httproute_accepted(cluster: Cluster, namespace: str) -> None:
    custom = client.CustomObjectsApi(cluster.api)
    route = httproute(
        "canary",
        [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "backendRefs": [
                    {"name": "web-stable", "port": 80, "weight": 90},
                    {"name": "web-canary", "port": 80, "weight": 10},
                ],
            }
        ],
    )
    custom.create_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", route
    )
    got: dict[str, Any] = custom.get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", "canary"
    )  # type: ignore[assignment]
    refs = got["spec"]["rules"][0]["backendRefs"]
    assert [(r["name"], r["weight"]) for r in refs] == [("web-stable", 90), ("web-canary", 10)]
    # Defaults come from the CRD's schema.
    assert all(r.get("kind") == "Service" for r in refs)


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([{"backendRefs": [{"name": "web-stable"}]}], "Must have port for Service reference"),
        (
            [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "no-slash"}}],
                    "backendRefs": [{"name": "web-stable", "port": 80}],
                }
            ],
            "must be an absolute path",
        ),
    ],
    ids=["service-without-port", "relative-path"],
)
def test_httproute_malformed_rejected(
    cluster: Cluster, namespace: str, rules: list[dict[str, Any]], message: str
) -> None:
    custom = client.CustomObjectsApi(cluster.api)
    with pytest.raises(ApiException) as rejected:
        custom.create_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", namespace, "httproutes", httproute("bad", rules)
        )
    assert rejected.value.status == 422
    assert message in str(rejected.value.body)
