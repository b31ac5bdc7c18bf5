"""What reconcile keeps between ticks and reads from the watches: the Runtime (per-process
state, forgotten per Rollout when it is deleted), the View of one Rollout's world (the watch
caches), and how a Deployment body becomes a TrackState. Split out of reconcile.py."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from kanary.analysis.metrics_source import GatewayClassSeen
from kanary.engine import template_hash
from kanary.kube import Kube
from kanary.notify.dispatch import Notifier
from kanary.objects import (
    LABEL_REVISION,
    LABEL_ROLLOUT,
    LABEL_TRACK,
    track_name,
)
from kanary.observation import (
    TrackState,
)
from kanary.podclock import PodClock
from kanary.spec import AnalysisSpec, RolloutSpec
from kanary.status import RolloutStatus

log = logging.getLogger("kanary")

TERMINATING_SECONDS = 30.0
# A named HTTPRoute that was not there is read again after a gap that doubles from 1 s up to
# this (reconcile: a user's route, not labelled yet, reaches kanary by that read only; the
# watch sends labelled ones). `kubectl apply` of a Rollout and its route: seen within 1-2 s.
ROUTE_ABSENT_SECONDS = 10.0
EVENT_FOLD_SECONDS = 60.0  # the same Event (reason and message) for one Rollout, at most this often
EVENT_SERIES_SECONDS = 3600.0  # a repeat within this (the API server's default Event TTL) counts

PostEvent = Callable[[str, str, str], str | None]  # (type, reason, message) -> the Event's name


@dataclasses.dataclass(frozen=True)
class SeenDeployment:
    """An owned Deployment as the watch shows it."""

    state: TrackState
    template: Mapping[str, Any]
    generation: int


@dataclasses.dataclass(frozen=True)
class View:
    """What the watch caches show of one Rollout's world this tick."""

    stable: SeenDeployment | None = None
    canary: SeenDeployment | None = None
    services: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    route: Mapping[str, Any] | None = None  # the HTTPRoute the spec names, if any
    revisions: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    # (namespace, name) -> spec of the AlertProviders the Rollout may use (watch index)
    alert_providers: Mapping[tuple[str, str], Mapping[str, Any]] = dataclasses.field(
        default_factory=dict
    )
    gateway_class: GatewayClassSeen | None = None  # behind the route's parent Gateway, if seen
    # the class behind a route read outside the watch (steered_route), from the same caches
    class_of_route: Callable[[Mapping[str, Any]], GatewayClassSeen | None] | None = None


@dataclasses.dataclass(frozen=True)
class Ticked:
    """What one tick left: the status (as written, or waiting to be: Runtime.unwritten) and the
    engine's next time-based turn (engine.Decision.recheck_at) and the analysis spec, for
    wakeups.next_tick."""

    status: RolloutStatus
    recheck_at: datetime | None
    analysis: AnalysisSpec | None = None  # the spec's, as parsed this tick


@dataclasses.dataclass
class EventSeries:
    """One Event object and how often it happened (count) as last written."""

    name: str | None  # None: the poster did not say (the Event is posted anew on a repeat)
    count: int
    posted: float  # monotonic: when it was last written


@dataclasses.dataclass
class Runtime:
    """Process-wide state: the client, the pod clock and a little memory of our own writes."""

    kube: Kube
    clock: PodClock = dataclasses.field(default_factory=PodClock)
    # (namespace, Deployment) -> the generation our last apply produced: a template that still
    # differs from ours at that generation is the API server's normalisation, not someone's edit.
    applied_generation: dict[tuple[str, str], int] = dataclasses.field(default_factory=dict)
    # (rollout uid, type, reason, message) -> the Event series that says it (_EventPoster)
    recent_events: dict[tuple[str, str, str, str], EventSeries] = dataclasses.field(
        default_factory=dict
    )
    monotonic: Callable[[], float] = time.monotonic
    # namespace -> when a write there was refused because it is being deleted
    terminating: dict[str, float] = dataclasses.field(default_factory=dict)
    # namespaces the namespace watch saw with a deletionTimestamp (cluster-wide installs)
    deleting: set[str] = dataclasses.field(default_factory=set)
    notifier: Notifier | None = None  # alerts and gates; None: none are sent
    # rollout uid -> (gate type, revision, when) of the gate it last asked (notify.gates)
    gate_asked: dict[str, tuple[str, str, datetime]] = dataclasses.field(default_factory=dict)
    # rollout uid -> since when an observation-only status change waits to be written
    unwritten: dict[str, datetime] = dataclasses.field(default_factory=dict)
    # (namespace, HTTPRoute) -> (first, last) direct read that found no such route
    route_absent: dict[tuple[str, str], tuple[float, float]] = dataclasses.field(
        default_factory=dict
    )
    # (namespace, rollout, track) -> the owned Deployment as its last watch event showed it
    deployments: dict[tuple[str, str, str], SeenDeployment] = dataclasses.field(
        default_factory=dict
    )

    def forget(self, namespace: str, name: str, uid: str) -> None:
        """The Rollout is gone: drop what this process remembered of it, so memory follows the
        Rollouts that exist."""
        for track in ("stable", "canary"):
            self.applied_generation.pop((namespace, track_name(name, track)), None)
            self.deployments.pop((namespace, name, track), None)
        for key in [k for k in self.recent_events if k[0] == uid]:
            del self.recent_events[key]
        self.gate_asked.pop(uid, None)
        self.unwritten.pop(uid, None)
        self.clock.forget_rollout(namespace, name)  # its pods' DELETED events may be missed
        self.terminating = still_terminating(self.terminating, self.monotonic())
        self.route_read("", "", True)  # drops the absent routes' expired marks
        if self.notifier is not None:
            self.notifier.forget(uid)

    def deployment_event(self, body: Mapping[str, Any], deleted: bool) -> bool:
        """Whether an owned Deployment's watch event changes what a tick reads of it, given
        the pods as the watch shows them now: its generation, or its track once settled by
        its pods (with_pods). The status updates that only catch up with what the pods said
        already (readyReplicas, availableReplicas, conditions) change nothing, and with a few
        hundred Deployments changing they come seconds after (1000 Rollouts: 16 wake-ups a
        second for 15 s after all were Healthy, each a tick that changed nothing)."""
        meta = body.get("metadata") or {}
        labels = meta.get("labels") or {}
        namespace = str(meta.get("namespace") or "")
        rollout, track = str(labels.get(LABEL_ROLLOUT, "")), str(labels.get(LABEL_TRACK, ""))
        key = (namespace, rollout, track)
        if deleted:
            self.deployments.pop(key, None)
            return True
        after = seen_deployment(body)
        before = self.deployments.get(key)
        self.deployments[key] = after
        if before is None or before.generation != after.generation:
            return True
        was = self.with_pods(before.state, namespace, rollout, track)
        return was != self.with_pods(after.state, namespace, rollout, track)

    def with_pods(self, state: TrackState, namespace: str, rollout: str, track: str) -> TrackState:
        """The track as a tick sees it: its Deployment, settled by its pods as the watch shows
        them when they are ahead of its status (with_pods)."""
        if not state.exists or state.revision is None:
            return state
        pods = self.clock.counts(namespace, rollout, track, state.revision, state.images)
        return with_pods(state, *pods)

    def may_read_route(self, namespace: str, route: str) -> bool:
        """The route was not found missing lately: the gap since the last read that missed it
        is as long as it had been missing then (at least 1 s, at most ROUTE_ABSENT_SECONDS)."""
        seen = self.route_absent.get((namespace, route))
        if seen is None:
            return True
        first, last = seen
        gap = min(max(last - first, 1.0), ROUTE_ABSENT_SECONDS)
        return self.monotonic() - last >= gap

    def route_read(self, namespace: str, route: str, found: bool) -> None:
        now = self.monotonic()
        key = (namespace, route)
        self.route_absent = {
            k: v for k, v in self.route_absent.items() if now - v[1] < 2 * ROUTE_ABSENT_SECONDS
        }
        if found:
            self.route_absent.pop(key, None)
        else:
            self.route_absent[key] = (self.route_absent.get(key, (now, now))[0], now)

    def namespace_terminating(self, namespace: str) -> bool:
        """The namespace watch saw it being deleted, or a write in `namespace` was refused as
        terminating in the last TERMINATING_SECONDS: its Rollouts are left alone (the
        namespace controller is deleting what they own)."""
        if namespace in self.deleting:
            return True
        since = self.terminating.get(namespace)
        if since is None:
            return False
        if self.monotonic() - since < TERMINATING_SECONDS:
            return True
        del self.terminating[namespace]
        return False


def still_terminating(terminating: Mapping[str, float], now: float) -> dict[str, float]:
    """The namespaces whose refusal is recent (a deleted namespace is not asked about again)."""
    return {ns: at for ns, at in terminating.items() if now - at < TERMINATING_SECONDS}


def track_state(body: Mapping[str, Any]) -> TrackState:
    """TrackState of an owned Deployment body."""
    spec, status = body.get("spec") or {}, body.get("status") or {}
    meta = body.get("metadata") or {}
    template_labels = (spec.get("template") or {}).get("metadata", {}).get("labels") or {}
    replicas = int(spec.get("replicas", 1))
    ready = int(status.get("readyReplicas", 0) or 0)
    updated = int(status.get("updatedReplicas", 0) or 0)
    settled = (
        int(status.get("observedGeneration", 0) or 0) >= int(meta.get("generation", 0) or 0)
        and updated == replicas
        and ready == replicas
        and int(status.get("replicas", 0) or 0) == replicas
    )
    containers = (spec.get("template") or {}).get("spec", {}).get("containers") or []
    return TrackState(
        exists=True,
        images=",".join(str(c.get("image", "")) for c in containers),
        revision=template_labels.get(LABEL_REVISION),
        replicas=replicas,
        ready=ready if updated >= ready else updated,
        settled=settled,
    )


def with_pods(track: TrackState, ready_pods: int, live_pods: int) -> TrackState:
    """The track as its pods show it, when they are ahead of its Deployment's status.

    The Deployment's readyReplicas reaches its status one pass of the controller-manager after
    the pod turned Ready (about 20 s with a few hundred Deployments changing: tests/bench), and
    so does its observedGeneration: the pass that creates a ReplicaSet updates the Deployment
    twice and the second update conflicts, so waiting for observedGeneration would wait for
    that same pass. The pod watch sees the flip at once. ``ready_pods``: pods of the track's
    revision and images that are Ready and not terminating; ``live_pods``: the track's pods of
    any revision not terminating. The track is settled by its pods when exactly ``replicas``
    pods are live and all of them are Ready: a scale the controller has not acted on yet shows
    as a count that differs, a new revision or image as pods that do not match. Pods only ever
    add to what the status says: a watch not yet listed (0 pods) or a missed deletion (one pod
    too many) leaves the status in charge. Not seen by pods: a change to the template that
    keeps its revision and images (an edited env var), until the controller replaces the pods.
    """
    if not track.exists or track.settled:
        return track
    ready = max(track.ready, min(ready_pods, track.replicas))
    settled = live_pods == track.replicas and ready_pods >= track.replicas
    return dataclasses.replace(track, ready=ready, settled=settled)


def seen_deployment(body: Mapping[str, Any]) -> SeenDeployment:
    spec = body.get("spec") or {}
    return SeenDeployment(
        state=track_state(body),
        template=spec.get("template") or {},
        generation=int((body.get("metadata") or {}).get("generation") or 0),
    )


def _template_of(spec: RolloutSpec, view: View, revision: str | None) -> Mapping[str, Any] | None:
    """The pod template kanary applies for `revision`: the spec's, or the one recorded."""
    if revision is None:
        return None
    if revision == template_hash(spec.template):
        return spec.template.model_dump(by_alias=True)
    return view.revisions.get(revision)
