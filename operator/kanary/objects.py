"""The objects kanary owns, as plain manifests: names, labels, Deployments and Services (pure)."""

from __future__ import annotations

import copy
from typing import Any, Literal

from kanary.spec import API_GROUP, API_VERSION, KIND, RolloutSpec

Track = Literal["stable", "canary"]
TRACKS: tuple[Track, Track] = ("stable", "canary")

LABEL_ROLLOUT = "kanary.dev/rollout"
LABEL_TRACK = "kanary.dev/track"
LABEL_REVISION = "kanary.dev/revision"
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
) -> Manifest:
    selector = track_selector(spec, rollout, track)
    template = copy.deepcopy(spec.template.model_dump(by_alias=True))
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
