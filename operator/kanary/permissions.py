"""Every Kubernetes API call the operator process makes, as (API group, resource, verb).

manifests/rbac.yaml grants exactly these and nothing else (tests/unit/test_manifests.py checks
both ways), and the integration tests run the operator with that ClusterRole, so a call missing
here fails there. Change this tuple, rbac.yaml and the code that makes the call in one commit.
The namespaced install (manifests/namespaced/) grants the same calls split in two: a Role per
served namespace for the namespaced resources, a small ClusterRole for the cluster-scoped ones.
The Lease (LEASE_PERMISSIONS) is a Role in the operator's own namespace in both installs.

The CLI is not listed: it runs with the user's own credentials.
"""

from __future__ import annotations

Permission = tuple[str, str, str]
"""(API group, "" for core; resource, "name/subresource" for a subresource; verb)."""

PERMISSIONS: tuple[Permission, ...] = (
    # Kopf lists and watches them (kopf.on.event wakes a Rollout); its finalizer, which the
    # per-Rollout timers of earlier versions put on, is removed by a patch (once per Rollout).
    ("kanary.dev", "rollouts", "list"),
    ("kanary.dev", "rollouts", "watch"),
    ("kanary.dev", "rollouts", "patch"),
    # Status: a merge patch of the status subresource carrying the resourceVersion read
    # (optimistic concurrency); what an alert provider accepted, a JSON patch of it that tests
    # the alert's key first. A manual action's annotation is consumed by a JSON patch of the
    # Rollout that tests its exact value first.
    ("kanary.dev", "rollouts/status", "patch"),
    # kopf.index of the owned Deployments; Kube.apply is a server-side apply, which needs
    # create as well as patch when the object does not exist yet; Kube.scale is a merge patch.
    ("apps", "deployments", "list"),
    ("apps", "deployments", "watch"),
    ("apps", "deployments", "create"),
    ("apps", "deployments", "patch"),
    # kopf.index of the owned Services (drift and deletion are seen from the watch); Kube.apply.
    ("", "services", "list"),
    ("", "services", "watch"),
    ("", "services", "create"),
    ("", "services", "patch"),
    # Each revision's pod template as a ControllerRevision (as StatefulSets keep theirs), so a
    # stable Deployment deleted mid-rollout is recreated with its own template: indexed, applied.
    ("apps", "controllerrevisions", "list"),
    ("apps", "controllerrevisions", "watch"),
    ("apps", "controllerrevisions", "create"),
    ("apps", "controllerrevisions", "patch"),
    # Both tracks' pods (kopf.on.event on pods): the canary's readiness clock, and each track
    # settled by its pods before its Deployment's status says so.
    ("", "pods", "list"),
    ("", "pods", "watch"),
    # The user's HTTPRoute: watched (kopf.index) so drifted weights are seen every tick; a
    # write is one fresh read, then a JSON patch of the two weights.
    ("gateway.networking.k8s.io", "httproutes", "list"),
    ("gateway.networking.k8s.io", "httproutes", "watch"),
    ("gateway.networking.k8s.io", "httproutes", "get"),
    ("gateway.networking.k8s.io", "httproutes", "patch"),
    # The route's parent Gateway and its GatewayClass (kopf.index): which implementation's
    # metrics measure the backends (analysis source gateway/auto).
    ("gateway.networking.k8s.io", "gateways", "list"),
    ("gateway.networking.k8s.io", "gateways", "watch"),
    ("gateway.networking.k8s.io", "gatewayclasses", "list"),
    ("gateway.networking.k8s.io", "gatewayclasses", "watch"),
    # AlertProviders (kopf.index): where a Rollout's alerts and gates go.
    ("kanary.dev", "alertproviders", "list"),
    ("kanary.dev", "alertproviders", "watch"),
    # The AlertProviders' Secrets (URL, token), read by name when needed and cached for 10 s:
    # Secrets are never listed or watched. A namespaced Role would narrow this to the
    # namespaces that use alerts; see manifests/README.md.
    ("", "secrets", "get"),
    # Kube.post_event: core v1 Events about a Rollout; Kube.repeat_event patches one's count
    # and lastTimestamp when it happens again (an Event series).
    ("", "events", "create"),
    ("", "events", "patch"),
    # Kopf's resource observer lists and watches CRDs to notice served resources come and go.
    # Kopf reads namespaces only when given namespace patterns (`kanary run -n`); the Deployment
    # runs cluster-wide. `kanary run` is standalone Kopf (no peering objects); leader election
    # is kanary's own Lease (LEASE_PERMISSIONS).
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
    # Cluster-wide only (CLUSTER_WIDE_ONLY; handlers.watch_namespaces): a namespace being
    # deleted is seen by its deletionTimestamp, and its Rollouts are left alone from then on
    # (no status writes while the namespace controller deletes what they own). A namespaced
    # install does not list namespaces: it learns it from the first write refused there.
    ("", "namespaces", "list"),
    ("", "namespaces", "watch"),
)

# Leader election (election.py): the Lease in the operator's namespace, read every retry period,
# created once, then replaced with the resourceVersion read (renewals, take-overs, release).
LEASE_PERMISSIONS: tuple[Permission, ...] = (
    ("coordination.k8s.io", "leases", "get"),
    ("coordination.k8s.io", "leases", "create"),
    ("coordination.k8s.io", "leases", "update"),
)

# Not in any namespace: a namespaced install still needs these cluster-wide.
CLUSTER_SCOPED = frozenset({"gatewayclasses", "customresourcedefinitions"})


# Only the cluster-wide install asks for these: a namespaced install does without.
CLUSTER_WIDE_ONLY = frozenset({"namespaces"})


def namespaced() -> tuple[Permission, ...]:
    return tuple(
        p for p in PERMISSIONS if p[1].split("/")[0] not in CLUSTER_SCOPED | CLUSTER_WIDE_ONLY
    )


def cluster_scoped() -> tuple[Permission, ...]:
    return tuple(p for p in PERMISSIONS if p[1].split("/")[0] in CLUSTER_SCOPED)
