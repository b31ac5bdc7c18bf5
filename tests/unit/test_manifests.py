"""manifests/: every file parses; the RBAC is exactly kanary.permissions; the operator Deployment
passes Pod Security "restricted" and runs the real CLI's flags; the examples fit together."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from kanary.cli import parser
from kanary.permissions import (
    CLUSTER_WIDE_ONLY,
    LEASE_PERMISSIONS,
    PERMISSIONS,
    cluster_scoped,
    namespaced,
)
from kanary.routers.gateway import route_problem
from kanary.spec import RolloutSpec

REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = REPO_ROOT / "manifests"
NAMESPACE = "kanary-system"
RBAC = MANIFESTS / "rbac.yaml"
NAMESPACED = MANIFESTS / "namespaced"
GATEWAY = MANIFESTS / "gateway"
EXAMPLES = MANIFESTS / "examples"

Doc = dict[str, Any]


def load(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


ALL_FILES = sorted(p for p in MANIFESTS.rglob("*") if p.suffix in (".yaml", ".yml"))
# Files that are not Kubernetes objects: kustomize's own file, and config files kustomize
# turns into ConfigMaps (manifests/prometheus/config/).
NOT_OBJECTS = [p for p in ALL_FILES if p.name == "kustomization.yaml" or "config" in p.parts]
OBJECT_FILES = [p for p in ALL_FILES if p not in NOT_OBJECTS]


def docs(kind: str, under: Path = MANIFESTS) -> list[Doc]:
    return [
        d for p in OBJECT_FILES if p.is_relative_to(under) for d in load(p) if d["kind"] == kind
    ]


def one(kind: str, under: Path = MANIFESTS) -> Doc:
    [doc] = docs(kind, under)
    return doc


@pytest.mark.parametrize("path", ALL_FILES, ids=[str(p.relative_to(MANIFESTS)) for p in ALL_FILES])
def test_every_yaml_file_parses(path: Path) -> None:
    assert load(path), f"{path} is empty"


@pytest.mark.parametrize(
    "path", OBJECT_FILES, ids=[str(p.relative_to(MANIFESTS)) for p in OBJECT_FILES]
)
def test_every_manifest_holds_named_objects(path: Path) -> None:
    for doc in load(path):
        assert isinstance(doc, dict)
        assert doc.get("apiVersion") and doc.get("kind"), doc
        assert doc.get("metadata", {}).get("name"), doc


# Folders applied with `kubectl apply -k` (a kustomization fixes the order); the rest is `-f`.
KUSTOMIZED = {"prometheus", "traefik"}


def test_kanary_files_are_all_objects() -> None:
    ours = [p for p in NOT_OBJECTS if not KUSTOMIZED & set(p.relative_to(MANIFESTS).parts)]
    assert ours == [], "kubectl apply -f would choke on these"


def test_crds_folder_is_the_generated_crds() -> None:
    for name in ("rollouts.kanary.dev", "alertproviders.kanary.dev"):
        link = MANIFESTS / "crds" / f"{name}.yaml"
        assert link.resolve() == (REPO_ROOT / "crds" / f"{name}.yaml").resolve()
    names = {
        doc["metadata"]["name"]
        for path in sorted((MANIFESTS / "crds").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc.get("kind") == "CustomResourceDefinition"
    }
    assert names == {"rollouts.kanary.dev", "alertproviders.kanary.dev"}


def test_namespace_enforces_restricted_pod_security() -> None:
    ns = one("Namespace", MANIFESTS / "namespace.yaml")
    assert ns["metadata"]["name"] == NAMESPACE
    labels = ns["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"


# ----------------------------------------------------------------------------------- RBAC ---


def granted(role: Doc) -> set[tuple[str, str, str]]:
    out = set()
    for rule in role["rules"]:
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule, rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    out.add((group, resource, verb))
    return out


def test_permissions_constant_has_no_duplicates_or_wildcards() -> None:
    assert len(set(PERMISSIONS)) == len(PERMISSIONS)
    assert not [p for p in PERMISSIONS if "*" in p]


def test_cluster_role_grants_exactly_the_declared_permissions() -> None:
    role = one("ClusterRole", RBAC)
    assert role["metadata"]["name"] == "kanary"
    have = granted(role)
    want = set(PERMISSIONS)
    assert not want - have, f"missing from manifests/rbac.yaml: {sorted(want - have)}"
    assert not have - want, f"not in kanary.permissions: {sorted(have - want)}"


def test_nothing_else_is_granted_to_the_service_account() -> None:
    kanary = {"kind": "ServiceAccount", "name": "kanary", "namespace": NAMESPACE}
    bindings = [d for d in load(RBAC) if d["kind"] in ("ClusterRoleBinding", "RoleBinding")]
    to_kanary = [b for b in bindings if kanary in b.get("subjects", [])]
    assert [(b["kind"], b["roleRef"]["kind"], b["roleRef"]["name"]) for b in to_kanary] == [
        ("ClusterRoleBinding", "ClusterRole", "kanary"),
        ("RoleBinding", "Role", "kanary-leader"),
    ]


def _named(kind: str, name: str, path: Path) -> Doc:
    [doc] = [d for d in load(path) if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


@pytest.mark.parametrize("path", [RBAC, NAMESPACED / "rbac.yaml"], ids=["cluster", "namespaced"])
def test_the_lease_role_is_in_the_operators_namespace_and_grants_only_the_lease(
    path: Path,
) -> None:
    role = _named("Role", "kanary-leader", path)
    assert role["metadata"]["namespace"] == NAMESPACE
    assert granted(role) == set(LEASE_PERMISSIONS)
    binding = _named("RoleBinding", "kanary-leader", path)
    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"]["name"] == "kanary-leader"


def test_namespaced_install_splits_the_same_permissions_into_a_role_and_cluster_reads() -> None:
    role = _named("Role", "kanary", NAMESPACED / "role.yaml")
    assert "namespace" not in role["metadata"], "applied with kubectl -n into each namespace"
    assert granted(role) == set(namespaced())
    reads = _named("ClusterRole", "kanary-cluster-reads", NAMESPACED / "rbac.yaml")
    assert granted(reads) == set(cluster_scoped())
    wide_only = {p for p in PERMISSIONS if p[1] in CLUSTER_WIDE_ONLY}
    assert wide_only == {("", "namespaces", "list"), ("", "namespaces", "watch")}
    assert set(namespaced()) | set(cluster_scoped()) == set(PERMISSIONS) - wide_only
    assert all(verb in ("list", "watch") for _, _, verb in cluster_scoped())
    binding = _named("RoleBinding", "kanary", NAMESPACED / "role.yaml")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "kanary",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "kanary", "namespace": NAMESPACE}
    ]


def test_service_account_is_bound_to_the_role() -> None:
    sa = one("ServiceAccount", RBAC)
    assert (sa["metadata"]["name"], sa["metadata"]["namespace"]) == ("kanary", NAMESPACE)
    binding = _named("ClusterRoleBinding", "kanary", RBAC)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": one("ClusterRole", RBAC)["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "kanary", "namespace": NAMESPACE}
    ]


# ------------------------------------------------------------------------------ operator ---


def operator() -> Doc:
    return one("Deployment", MANIFESTS / "operator.yaml")


def test_operator_runs_as_its_service_account_in_its_namespace() -> None:
    dep = operator()
    assert dep["metadata"]["namespace"] == NAMESPACE
    pod = dep["spec"]["template"]
    assert pod["spec"]["serviceAccountName"] == one("ServiceAccount", RBAC)["metadata"]["name"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    # Two replicas, one leader (the Lease): a disruption takes at most one, and the identity
    # in the Lease is the pod's name.
    assert dep["spec"]["replicas"] == 2
    pdb = one("PodDisruptionBudget", MANIFESTS / "operator.yaml")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    [container] = pod["spec"]["containers"]
    env = {
        e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        for e in container["env"]
    }
    assert env["POD_NAME"] == "metadata.name"
    assert env["POD_NAMESPACE"] == "metadata.namespace"
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    args = parser().parse_args(container["args"])
    assert args.leader_elect is True


def test_operator_runs_glibc_malloc_so_deleted_rollouts_memory_goes_back() -> None:
    """memtrim.py returns freed pages only with Python objects on glibc's malloc: the
    manifest and the Dockerfile both set it (hack/images/build.sh checks the image's)."""
    [container] = operator()["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PYTHONMALLOC"] == "malloc"
    assert env["MALLOC_ARENA_MAX"] == "2"
    dockerfile = (MANIFESTS.parent / "Dockerfile").read_text().splitlines()
    assert "    PYTHONMALLOC=malloc \\" in dockerfile
    assert "    MALLOC_ARENA_MAX=2 \\" in dockerfile


def test_operator_passes_restricted_pod_security() -> None:
    pod = operator()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    for volume in pod.get("volumes", []):
        assert set(volume) - {"name"} <= {"emptyDir", "configMap", "secret", "projected"}
    for c in pod["containers"] + pod.get("initContainers", []):
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc.get("privileged") is not True
        assert not any(p.get("hostPort") for p in c.get("ports", []))


def test_operator_args_are_the_clis_and_match_the_probe_and_ports() -> None:
    [container] = operator()["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "kanary/operator:0.1.0"
    assert container["command"] == ["kanary"]
    args = parser().parse_args(container["args"])
    assert args.command == "run"
    assert not args.namespace, "the operator watches all namespaces"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    liveness = urlsplit(args.liveness)
    probe = container["livenessProbe"]["httpGet"]
    assert (liveness.port, liveness.path) == (ports[probe["port"]], probe["path"])
    assert (liveness.port, liveness.path) == (8080, "/healthz")
    assert args.metrics_port == ports["metrics"]


# ------------------------------------------------------------------------------ examples ---


def test_example_rollouts_parse() -> None:
    rollouts = docs("Rollout", EXAMPLES)
    assert {r["metadata"]["name"] for r in rollouts} >= {"gin-demo", "gin-demo-ratio", "gin-bg"}
    for r in rollouts:
        RolloutSpec.model_validate(r["spec"])
        assert "namespace" not in r["metadata"], "examples go into the namespace given with -n"


@pytest.mark.parametrize("name", ["gin-demo", "gin-bg"])
def test_gateway_example_fits_its_route_and_gateway(name: str) -> None:
    gin = next(r for r in docs("Rollout", EXAMPLES) if r["metadata"]["name"] == name)
    spec = RolloutSpec.model_validate(gin["spec"])
    assert spec.traffic_routing is not None and spec.traffic_routing.gateway_api is not None
    route_name = spec.traffic_routing.gateway_api.http_route
    [route] = [r for r in docs("HTTPRoute", EXAMPLES) if r["metadata"]["name"] == route_name]
    assert route_problem(route, route_name, name) is None
    weights = {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]}
    assert weights == {f"{name}-stable": 100, f"{name}-canary": 0}
    assert all(b["port"] == spec.service.port for b in route["spec"]["rules"][0]["backendRefs"])

    gateway = one("Gateway", GATEWAY)
    [parent] = route["spec"]["parentRefs"]
    assert (parent["name"], parent["namespace"]) == (
        gateway["metadata"]["name"],
        gateway["metadata"]["namespace"],
    )
    assert gateway["spec"]["gatewayClassName"] == one("GatewayClass", GATEWAY)["metadata"]["name"]


def test_gateway_listens_on_8000_for_routes_from_any_namespace() -> None:
    gateway = one("Gateway", GATEWAY)
    assert gateway["metadata"]["name"] == "kanary-gateway"
    [listener] = gateway["spec"]["listeners"]
    assert (listener["protocol"], listener["port"]) == ("HTTP", 8000)
    assert listener["allowedRoutes"]["namespaces"]["from"] == "All"
    assert one("GatewayClass", GATEWAY)["spec"]["controllerName"] == "traefik.io/gateway-controller"


def test_gin_demo_example_uses_the_apps_port_and_probes() -> None:
    gin = next(r for r in docs("Rollout", EXAMPLES) if r["metadata"]["name"] == "gin-demo")
    [container] = gin["spec"]["template"]["spec"]["containers"]
    assert container["image"].startswith("kanary/gin-demo:")
    assert container["ports"] == [{"name": "http", "containerPort": 8080}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert gin["spec"]["service"]["targetPort"] == "http"


def test_the_admins_alert_provider_is_valid_and_its_url_is_in_the_secret() -> None:
    from kanary.notify.providers import check_url
    from kanary.notify.spec import AlertProviderSpec

    by_kind = {d["kind"]: d for d in load(MANIFESTS / "alerting" / "oncall.yaml")}
    provider, secret = by_kind["AlertProvider"], by_kind["Secret"]
    spec = AlertProviderSpec.model_validate(provider["spec"])
    assert (spec.type, spec.secret_ref.name) == ("alertmanager", secret["metadata"]["name"])
    assert provider["metadata"]["namespace"] == secret["metadata"]["namespace"] == NAMESPACE
    assert check_url(secret["stringData"]["address"]) is None
    assert "address" not in str(provider["spec"])  # the URL only in the Secret
    operator = one("Deployment", MANIFESTS / "operator.yaml")
    env = {e["name"] for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "KANARY_ALERT_PROVIDERS" in env
