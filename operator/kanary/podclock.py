"""When each of a Rollout's pods was created and became Ready, as the operator's watch saw it.

The readiness figures and a container's trouble are the canary track's; whether a track is
settled is read for both tracks (reconcile_state.with_pods).

Kubernetes timestamps have one-second resolution, too coarse to tell a 2.1s start from a 2.9s
one. The watch sees the ADDED event and the flip to Ready within milliseconds, so those times are
kept (sub-second); the API timestamps are the fallback for pods first seen after the fact (an
operator restart) and a cross-check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from kanary.objects import LABEL_REVISION, LABEL_ROLLOUT, LABEL_TRACK
from kanary.observation import PodTiming

# A pod first seen this long after its creationTimestamp was created before we watched.
_LATE_SIGHTING_SECONDS = 2.0


def parse_time(text: str | None) -> datetime | None:
    return None if not text else datetime.fromisoformat(text.replace("Z", "+00:00"))


def ready_condition(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return dict(cond)
    return None


def is_ready(pod: Mapping[str, Any]) -> bool:
    cond = ready_condition(pod)
    return cond is not None and cond.get("status") == "True"


def container_trouble(pod: Mapping[str, Any]) -> str | None:
    """Why a pod's container does not run, in on-call's words, from what the kubelet reports:
    a container that exited (crash, OOM), is crash-looping or cannot start (bad image, bad
    config). None when every container runs or is starting normally."""
    for cs in pod.get("status", {}).get("containerStatuses") or []:
        state = cs.get("state") or {}
        waiting = (state.get("waiting") or {}).get("reason")
        last = (cs.get("lastState") or {}).get("terminated") or {}
        dead = (state.get("terminated") or {}) or last
        restarts = int(cs.get("restartCount") or 0)
        if not dead and waiting in (None, "ContainerCreating", "PodInitializing"):
            continue
        parts = [f"container {cs.get('name')}"]
        if dead:
            parts.append(f"exited with code {dead.get('exitCode')}")
            if dead.get("reason") not in (None, "Error", "Completed"):
                parts.append(f"({dead.get('reason')})")
        if waiting:
            parts.append(waiting if not dead else f"- {waiting}")
        if restarts:
            parts.append(f"after {restarts} restart{'s' if restarts != 1 else ''}")
        return " ".join(parts)
    return None


class Sighting(NamedTuple):
    ready_seconds: float | None  # creation to Ready, when the pod just turned Ready
    changed: bool  # new, or its Ready, terminating, images or trouble changed


@dataclass
class _Record:
    rollout: str
    revision: str
    created: datetime
    ready_at: datetime | None
    api_seconds: float | None  # from the API's own timestamps, 1s resolution
    trouble: str | None = None  # container_trouble() as last seen
    ready: bool = False  # Ready as last seen
    live: bool = True  # not terminating (no deletionTimestamp) as last seen
    images: str = ""  # its containers' images, comma-separated (as TrackState.images)
    track: str = ""  # its kanary.dev/track label: canary or stable (always set by observe)


class PodClock:
    """A Rollout's pods' sightings, by pod and by Rollout: a tick reads only its own Rollout's pods
    (a scan of every pod per tick made each tick cost O(pods in the cluster))."""

    def __init__(self) -> None:
        self._pods: dict[tuple[str, str], _Record] = {}  # (namespace, pod)
        self._by_rollout: dict[tuple[str, str], dict[str, _Record]] = {}  # (ns, rollout) -> pods

    def observe(self, pod: Mapping[str, Any], seen_at: datetime) -> Sighting:
        """Record a sighting: creation-to-Ready seconds when the pod just turned Ready, and
        whether anything a tick reads of it changed (kubelet status updates that change none
        of Ready, terminating, images or trouble wake nobody)."""
        meta = pod.get("metadata", {})
        labels = meta.get("labels") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        created_api = parse_time(meta.get("creationTimestamp")) or seen_at
        record = self._pods.get(key)
        before = None
        if record is None:
            late = (seen_at - created_api).total_seconds() > _LATE_SIGHTING_SECONDS
            record = _Record(
                rollout=str(labels.get(LABEL_ROLLOUT, "")),
                revision=str(labels.get(LABEL_REVISION, "")),
                created=created_api if late else seen_at,
                ready_at=None,
                api_seconds=None,
                track=str(labels.get(LABEL_TRACK, "")),
            )
            self._pods[key] = record
            self._by_rollout.setdefault((key[0], record.rollout), {})[key[1]] = record
        else:
            before = (record.trouble, record.ready, record.live, record.images)
        record.trouble = container_trouble(pod)
        record.ready = is_ready(pod)
        record.live = not meta.get("deletionTimestamp")
        containers = (pod.get("spec") or {}).get("containers") or []
        record.images = ",".join(str(c.get("image", "")) for c in containers)
        changed = before != (record.trouble, record.ready, record.live, record.images)
        if record.ready_at is None and record.ready:
            cond = ready_condition(pod) or {}
            ready_api = parse_time(cond.get("lastTransitionTime"))
            if ready_api is not None:
                record.api_seconds = (ready_api - created_api).total_seconds()
            seen_late = ready_api is not None and (
                (seen_at - ready_api).total_seconds() > _LATE_SIGHTING_SECONDS
            )
            record.ready_at = ready_api if seen_late and ready_api else seen_at
            return Sighting((record.ready_at - record.created).total_seconds(), changed)
        return Sighting(None, changed)

    def forget(self, namespace: str, name: str) -> bool:
        """The pod is gone; True when it was still counted as live (its deletion changes what
        the track's pods show)."""
        record = self._pods.pop((namespace, name), None)
        if record is None:
            return False
        pods = self._by_rollout.get((namespace, record.rollout), {})
        pods.pop(name, None)
        if not pods:
            self._by_rollout.pop((namespace, record.rollout), None)
        return record.live

    def forget_rollout(self, namespace: str, rollout: str) -> None:
        """The Rollout is gone: its pods' records go too (a pod whose DELETED event was missed,
        in a watch reconnect, would be kept for ever)."""
        for name in self._by_rollout.pop((namespace, rollout), {}):
            self._pods.pop((namespace, name), None)

    def _canary_of(self, namespace: str, rollout: str, revision: str) -> list[tuple[str, _Record]]:
        pods = self._by_rollout.get((namespace, rollout), {})
        return [
            (name, r)
            for name, r in sorted(pods.items())
            if r.revision == revision and r.track == "canary"
        ]

    def timings(self, namespace: str, rollout: str, revision: str) -> list[PodTiming]:
        return [
            PodTiming(name=name, created=r.created, ready_at=r.ready_at)
            for name, r in self._canary_of(namespace, rollout, revision)
        ]

    def counts(
        self, namespace: str, rollout: str, track: str, revision: str, images: str
    ) -> tuple[int, int]:
        """(pods of `revision` running `images`, Ready and not terminating; pods of any
        revision not terminating) of the Rollout's `track`, as last seen."""
        pods = [
            r for r in self._by_rollout.get((namespace, rollout), {}).values() if r.track == track
        ]
        ready = sum(
            1 for r in pods if r.live and r.ready and r.revision == revision and r.images == images
        )
        return ready, sum(1 for r in pods if r.live)

    def trouble(self, namespace: str, rollout: str, revision: str) -> str | None:
        """The first pod of this revision whose container does not run, and why."""
        for name, r in self._canary_of(namespace, rollout, revision):
            if r.trouble:
                return f"pod {name}: {r.trouble}"
        return None

    def api_seconds(self, namespace: str, name: str) -> float | None:
        """Creation to Ready from the API timestamps (whole seconds): the cross-check."""
        record = self._pods.get((namespace, name))
        return None if record is None else record.api_seconds
