"""The objects kanary owns, as plain manifests: names, labels, Deployments and Services (pure)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Literal

from kanary.spec import API_GROUP, API_VERSION, KIND, RolloutSpec

GATEWAY_GROUP = "gateway.networking.k8s.io"  # the Gateway API's resources

Track = Literal["stable", "canary"]
TRACKS: tuple[Track, Track] = ("stable", "canary")

LABEL_ROLLOUT = "kanary.dev/rollout"
LABEL_TRACK = "kanary.dev/track"
LABEL_REVISION = "kanary.dev/revision"
# On the user's HTTPRoutes kanary steers: its route watch selects on it (routers.gateway)
LABEL_STEERED = "kanary.dev/steered"
ANNOTATION_ACTION = "kanary.dev/action"
ANNOTATION_ACTION_ID = "kanary.dev/action-id"  # optional: makes one request apply exactly once
FIELD_MANAGER = "kanary"

Manifest = dict[str, Any]


def track_name(rollout: str, track: Track) -> str:
    return f"{rollout}-{track}"


def owner_reference(rollout: str, uid: str) -> dict[str, Any]:
    # No blockOwnerDeletion: it would need update on rollouts/finalizers for nothing we use.
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "name": rollout,
        "uid": uid,
        "controller": True,
    }


def track_selector(spec: RolloutSpec, rollout: str, track: Track) -> dict[str, str]:
    """Immutable Deployment selector: the user's labels plus rollout and track, never revision."""
    return {**spec.selector_labels(), LABEL_ROLLOUT: rollout, LABEL_TRACK: track}


def deployment(
    spec: RolloutSpec,
    rollout: str,
    namespace: str,
    uid: str,
    track: Track,
    revision: str,
    replicas: int,
    template: dict[str, Any] | None = None,
) -> Manifest:
    """`template`: the pod template of `revision` when it is not spec.template's (a stable
    track recreated mid-rollout runs the template recorded for its revision)."""
    selector = track_selector(spec, rollout, track)
    if template is None:
        template = spec.template.model_dump(by_alias=True)
    template = copy.deepcopy(template)
    metadata = template.setdefault("metadata", {})
    metadata["labels"] = {**(metadata.get("labels") or {}), **selector, LABEL_REVISION: revision}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": track_name(rollout, track),
            "namespace": namespace,
            "labels": {LABEL_ROLLOUT: rollout, LABEL_TRACK: track, LABEL_REVISION: revision},
            "ownerReferences": [owner_reference(rollout, uid)],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": template,
        },
    }


def service(
    spec: RolloutSpec, rollout: str, namespace: str, uid: str, track: Track | None
) -> Manifest:
    """<name>-stable / <name>-canary; track None is <name>, across both (replica-ratio mode)."""
    selector = {**spec.selector_labels(), LABEL_ROLLOUT: rollout}
    labels = {LABEL_ROLLOUT: rollout}
    if track is not None:
        selector[LABEL_TRACK] = track
        labels[LABEL_TRACK] = track
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": rollout if track is None else track_name(rollout, track),
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(rollout, uid)],
        },
        "spec": {
            "selector": selector,
            "ports": [
                {
                    "name": "http",
                    "port": spec.service.port,
                    "targetPort": spec.service.target_port,
                    "protocol": "TCP",
                }
            ],
        },
    }


def services(spec: RolloutSpec, rollout: str, namespace: str, uid: str) -> list[Manifest]:
    tracks: list[Track | None] = list(TRACKS)
    if spec.traffic_routing is None or spec.traffic_routing.gateway_api is None:
        tracks.append(None)
    return [service(spec, rollout, namespace, uid, t) for t in tracks]


def controller_revision(
    spec: RolloutSpec, rollout: str, namespace: str, uid: str, revision: str, number: int
) -> Manifest:
    """The pod template of one revision, kept as StatefulSets keep theirs."""
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": f"{rollout}-{revision}",
            "namespace": namespace,
            "labels": {LABEL_ROLLOUT: rollout, LABEL_REVISION: revision},
            "ownerReferences": [owner_reference(rollout, uid)],
        },
        "data": {"template": spec.template.model_dump(by_alias=True)},
        "revision": number,
    }


def contains(observed: Any, wanted: Any) -> bool:
    """Every field of `wanted` is in `observed` with the same value; `observed` may have more
    (the API server's defaults). Lists compare item by item. How drift of the fields kanary
    sets is told from defaults the server added."""
    if isinstance(wanted, dict):
        return isinstance(observed, dict) and all(
            k in observed and contains(observed[k], v) for k, v in wanted.items()
        )
    if isinstance(wanted, list):
        return (
            isinstance(observed, list)
            and len(observed) == len(wanted)
            and all(contains(o, w) for o, w in zip(observed, wanted, strict=True))
        )
    return bool(observed == wanted)


def service_drifted(observed: Mapping[str, Any] | None, wanted: Manifest) -> bool:
    """Missing, or its selector, ports or kanary's labels differ from what kanary applies."""
    if observed is None:
        return True
    spec, want = observed.get("spec") or {}, wanted["spec"]
    labels = (observed.get("metadata") or {}).get("labels") or {}
    return (
        spec.get("selector") != want["selector"]
        or not contains(spec.get("ports"), want["ports"])
        or not contains(labels, wanted["metadata"]["labels"])
    )
