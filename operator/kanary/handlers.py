"""Kopf wiring only, part 1 of 2: watch-fed indexes in (handlers_index.py), one reconcile
(reconcile.py) per Rollout per tick.

Kopf watches and indexes; it runs no timer. A Rollout ticks when a watch event that changes
what a tick reads wakes it (its own spec or annotations, its Deployments, Services, both
tracks' pods, its route) and on the deadlines its status has (wakeups.next_tick: every second
while it has work in flight; a Rollout at rest sleeps). Only the Lease holder ticks
(election.py), and every write is fenced (Kube.fence). The indexes keep what kanary owns
(Deployments, Services, ControllerRevisions) and the HTTPRoutes, so a tick reads nothing from
the API server unless it has to write. A tick's error becomes state (condition ReconcileError
and a folded Warning Event) and is retried in 2 s without a traceback; a Rollout whose
namespace is being deleted is left alone quietly.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import logging
import math
import os
import socket
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import kopf
import urllib3
from kubernetes.client.exceptions import ApiException

from kanary import handlers_index, memtrim, metrics_export
from kanary.analysis.endpoints import PrometheusPolicy
from kanary.analysis.source import PrometheusSource
from kanary.durations import parse_duration
from kanary.election import Elector
from kanary.kube import Kube, NotLeader
from kanary.leader import Timings
from kanary.notify.delivery import Deliverer
from kanary.notify.dispatch import Notifier
from kanary.notify.providers import SecretUnreadable
from kanary.objects import GATEWAY_GROUP, LABEL_ROLLOUT, LABEL_TRACK
from kanary.reconcile import (
    Conflict,
    NewerSpec,
    Runtime,
    Ticked,
    UnknownTemplate,
    is_terminating,
    reconcile,
    with_reconcile_error,
)
from kanary.reconcile_state import TERMINATING_SECONDS
from kanary.scope import Selector, watch_selectors
from kanary.spec import API_GROUP, API_VERSION, PLURAL, RolloutSpec
from kanary.wakeups import TICK_SECONDS, WakeQueue, next_tick

log = logging.getLogger("kanary")

EVENT_GAP_SECONDS = 0.5  # a watch event wakes a Rollout at most this soon after its last tick
T = TypeVar("T")

# Rollouts reconciled at once, each on a thread of _pool (a tick mostly waits: on the API
# server, or seconds on Prometheus). Was 8 on asyncio's default executor, which has only 6
# threads on 2 cores (no measurable change in the fleet bench: tests/bench/README.md).
WORKERS = 16
_pool = concurrent.futures.ThreadPoolExecutor(WORKERS, thread_name_prefix="kanary-tick")


async def _in_pool(fn: Callable[[], T]) -> T:
    """`fn` on a tick thread, with this task's context (as asyncio.to_thread does)."""
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(_pool, context.run, fn)


@dataclasses.dataclass(frozen=True)
class Options:
    """What `kanary run` was told (cli.py); the defaults are a single replica's."""

    identity: str = dataclasses.field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}"
    )
    leader_elect: bool = True
    lease_namespace: str = "kanary-system"
    lease_name: str = "kanary-leader"
    timings: Timings = dataclasses.field(default_factory=Timings)
    selector: Selector = dataclasses.field(default_factory=lambda: Selector(()))
    namespaces: tuple[str, ...] = ()  # empty: cluster-wide


_options = Options()
_runtime: Runtime | None = None
_policy: PrometheusPolicy | None = None
_elector: Elector | None = None


def set_options(options: Options) -> None:
    global _options
    _options = options


def runtime() -> Runtime:
    global _runtime, _policy, _elector
    if _runtime is None:
        _policy = PrometheusPolicy.from_env(os.environ)
        kube = Kube(identity=_options.identity)
        if _options.leader_elect:
            from kubernetes import client as k8s

            _elector = Elector(
                k8s.CoordinationV1Api(kube.api_client),
                _options.lease_namespace,
                _options.lease_name,
                _options.identity,
                _options.timings,
            )
            kube.fence = _elector.may_act
        _runtime = Runtime(kube=kube, notifier=_notifier(kube))
    return _runtime


def leading() -> bool:
    return _elector is None or _elector.may_act()


def readiness() -> tuple[bool, str]:
    """For /readyz: both replicas are ready (a standby serves by standing by); the body says
    which one leads."""
    if leading():
        return True, f"leader {_options.identity}"
    holder = _elector.holder if _elector is not None else None
    return True, f"standby (leader: {holder or 'none yet'})"


ALERT_PROVIDERS_ENV = "KANARY_ALERT_PROVIDERS"


def _notifier(kube: Kube) -> Notifier:
    """Alerts for every Rollout go to the providers the cluster admin names in
    KANARY_ALERT_PROVIDERS ("namespace/name,..."), besides each Rollout's own."""
    admin = [r.strip() for r in os.environ.get(ALERT_PROVIDERS_ENV, "").split(",") if r.strip()]
    holder: list[Notifier] = []

    def failed(provider: str, message: str) -> None:
        holder[0].on_failure(provider, message)

    def read_secret(namespace: str, name: str) -> dict[str, str] | None:
        try:
            return kube.secret_data(namespace, name)
        except ApiException as e:
            raise SecretUnreadable(f"API {e.status} {e.reason}") from e
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise SecretUnreadable(f"{type(e).__name__}: {e}".splitlines()[0][:200]) from e

    notifier = Notifier(Deliverer(failed), kube, read_secret, admin_refs=admin)
    holder.append(notifier)
    return notifier


class _NoEssence(kopf.DiffBaseStorage):
    """No diff-base: kanary has only event handlers and indexes, and Kopf reads an object's
    "essence" for its on.create/update/delete handlers only. Its default storage still builds
    one from a deep copy of every watched body on every event (py-spy: 7-10 % of the
    operator's CPU with 250 Rollouts rolling)."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = f"{API_GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    settings.persistence.diffbase_storage = _NoEssence()
    # Our own Events only (kopf.event); handler logs stay in the operator log.
    settings.posting.level = logging.ERROR
    settings.watching.server_timeout = 300
    for (group, version, plural), query in watch_selectors(_options.selector).items():
        # server-side: the API server sends only these (the handlers' labels= filter client-side)
        settings.watching.label_selectors[group, version, plural] = query
    if _options.namespaces and not any(set("*?[!,") & set(n) for n in _options.namespaces):
        # Exact namespaces: no listing of all namespaces (a namespaced install may not) and no
        # CRD watch (CRDs installed later are seen at the next restart).
        settings.scanning.disabled = True
    rt = runtime()
    global _signal
    _signal = asyncio.Event()
    loop = asyncio.get_running_loop()
    if rt.notifier is not None:

        def accepted(namespace: str, name: str) -> None:  # on the delivery thread
            loop.call_soon_threadsafe(_wake_key, namespace, name)

        rt.notifier.on_accepted = accepted
    _tasks.append(asyncio.create_task(_schedule(), name="kanary-schedule"))
    if _elector is not None:
        _tasks.append(asyncio.create_task(_elect(_elector), name="kanary-elect"))
    else:
        metrics_export.record_leader(_options.identity, True)


@kopf.on.cleanup()
async def release(**_: Any) -> None:
    for task in _tasks:
        task.cancel()
    _trim.cancel()
    if _elector is not None:
        await asyncio.to_thread(_elector.release)


# ---- watch-fed state -------------------------------------------------------------------------

_OWNED = handlers_index.OWNED


@kopf.on.event("", "v1", "pods", labels={LABEL_TRACK: kopf.PRESENT})
async def track_pod(event: Mapping[str, Any], body: Mapping[str, Any], **_: Any) -> None:
    """Both tracks' pods: a track is settled by its pods a controller-manager pass before its
    Deployment's status says so (reconcile_state.with_pods); the canary's also time readiness."""
    seen_at = datetime.now(UTC)
    meta = body.get("metadata", {})
    if event.get("type") == "DELETED":
        # a pod already seen terminating was counted out then: no second wake-up
        if runtime().clock.forget(str(meta.get("namespace")), str(meta.get("name"))):
            _wake_owner(meta)
        return
    seconds, changed = runtime().clock.observe(body, seen_at)
    if seconds is not None and (meta.get("labels") or {}).get(LABEL_TRACK) == "canary":
        metrics_export.record_pod_ready(seconds)
    if changed:
        _wake_owner(meta)


# ---- what wakes a Rollout ------------------------------------------------------------------

Key = tuple[str, str]
_rollouts: dict[Key, dict[str, Any]] = {}  # the Rollouts this replica serves, as last watched
_indexes: dict[str, Any] = {}  # Kopf's live index views, as handed to the first handler
_queue: WakeQueue[Key] = WakeQueue()
_last_tick: dict[Key, float] = {}
_signal: asyncio.Event | None = None
# when _schedule looks at the queue unless signalled; -inf: wake-ups wait for a tick to end
# (every worker busy) or an election round (a standby)
_look_at = -math.inf
_tasks: list[asyncio.Task[None]] = []
_ticking: set[asyncio.Task[None]] = set()  # held, so the loop does not drop them
_trim = memtrim.QuietTrim()  # memory back to the OS once deletions settle


def _wake(key: Key, delay: float = 0.0) -> None:
    loop = asyncio.get_running_loop()
    at = max(loop.time() + delay, _last_tick.get(key, 0.0) + EVENT_GAP_SECONDS)
    # the scheduler looks again only if this is due before it would look anyway
    if _queue.wake(key, at) and at < _look_at and _signal is not None:
        _signal.set()


def _wake_key(namespace: str, name: str) -> None:
    if (namespace, name) in _rollouts:
        _wake((namespace, name))


def _wake_owner(meta: Mapping[str, Any]) -> None:
    """An owned object changed: wake its Rollout, unless its namespace is being deleted (its
    Rollouts are left alone while the namespace controller deletes what they own)."""
    owner = (meta.get("labels") or {}).get(LABEL_ROLLOUT)
    key = (str(meta.get("namespace") or ""), str(owner or ""))
    if key in _rollouts and key[0] not in runtime().deleting:
        _wake(key)


def _matters(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """A change the Rollout must act on: new, its spec, labels or annotations (a person's
    request), or its deletion. A status-only change is kanary's own write: no wake-up."""
    if old is None:
        return True
    a, b = old["metadata"], new["metadata"]
    return any(a.get(k) != b.get(k) for k in ("generation", "annotations", "labels")) or bool(
        b.get("deletionTimestamp")
    )


@kopf.on.event(API_GROUP, API_VERSION, PLURAL)
async def rollout_event(
    event: Mapping[str, Any], body: kopf.Body, namespace: str | None, name: str, **indexes: Any
) -> None:
    if not _indexes:
        _indexes.update(indexes)
    key = (namespace or "", name)
    if event.get("type") == "DELETED" or not _options.selector.matches(body.metadata.labels):
        if _rollouts.pop(key, None) is not None:
            _queue.forget(key)
            _last_tick.pop(key, None)
            _forget(key, str(body.metadata.uid or ""))
            _trim.deleted()
        return
    seen = {
        "metadata": dict(body.metadata),
        "spec": dict(body.spec),
        "status": dict(body.status),
    }
    old = _rollouts.get(key)
    _rollouts[key] = seen
    if _matters(old, seen):
        _wake(key)


def _forget(key: Key, uid: str) -> None:
    """The Rollout is gone: its /metrics series and what the Runtime remembered of it."""
    metrics_export.forget(*key)
    runtime().forget(*key, uid)


@kopf.on.event("apps", "v1", "deployments", labels=_OWNED)
async def owned_deployment(
    event: Mapping[str, Any], body: kopf.Body, meta: kopf.Meta, **_: Any
) -> None:
    """Wakes its Rollout when the change is one a tick reads (Runtime.deployment_event)."""
    if runtime().deployment_event(body, deleted=event.get("type") == "DELETED"):
        _wake_owner(meta)


@kopf.on.event("", "v1", "services", labels=_OWNED)
async def owned_service(meta: kopf.Meta, **_: Any) -> None:
    _wake_owner(meta)


@kopf.on.event(GATEWAY_GROUP, "v1", "httproutes")
async def route_event(namespace: str | None, name: str, **_: Any) -> None:
    """A route changed (its weights drifted, or it came or went): wake the Rollouts naming it."""
    for (ns, rollout), seen in list(_rollouts.items()):
        gw = ((seen["spec"].get("trafficRouting") or {}).get("gatewayAPI")) or {}
        if ns == namespace and gw.get("httpRoute") == name:
            _wake((ns, rollout))


def watch_namespaces() -> None:
    """Cluster-wide installs (cli: no --namespace): watch Namespaces, so a namespace being
    deleted is known from its deletionTimestamp on, before the namespace controller deletes
    the Deployments and pods its Rollouts would otherwise report on. Registered before Kopf
    starts; a namespaced install has no such permission and relies on a refused write."""
    kopf.on.event("", "v1", "namespaces")(namespace_event)


async def namespace_event(event: Mapping[str, Any], name: str, meta: kopf.Meta, **_: Any) -> None:
    deleting = runtime().deleting
    if event.get("type") == "DELETED" or not meta.get("deletionTimestamp"):
        deleting.discard(name)
        return
    if name not in deleting:
        log.info("namespace %s is being deleted: its Rollouts are left alone", name)
        deleting.add(name)
        for key in [k for k in _rollouts if k[0] == name]:
            _queue.forget(key)  # a wake-up queued before would tick only to find this


# ---- who ticks, and when ---------------------------------------------------------------------


async def _elect(elector: Elector) -> None:
    """Election rounds every retry period; on winning, every Rollout is woken (the new leader
    resumes from status alone); on losing, ticks stop at once."""
    was = False
    while True:
        try:
            await asyncio.to_thread(elector.attempt)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as e:
            log.warning("lease %s: %s", _options.lease_name, str(e).splitlines()[0][:200])
        now = elector.may_act()
        if now != was:
            log.info(
                "%s as %s (leader: %s)",
                "leading" if now else "standing by",
                _options.identity,
                elector.holder,
            )
            metrics_export.record_leader(_options.identity, now)
            if now:
                for key in list(_rollouts):
                    _wake(key)
                if _signal is not None:
                    _signal.set()
            was = now
        await asyncio.sleep(_options.timings.retry_seconds)


async def _schedule() -> None:
    """Hands due Rollouts to at most WORKERS ticks at a time, while this replica leads. It
    looks at the queue when the earliest key is due, when a tick ends (a worker is free), and
    when a wake-up comes due earlier than that (_wake); not on every watch event."""
    global _look_at
    loop = asyncio.get_running_loop()
    assert _signal is not None
    while True:
        _signal.clear()
        if leading():
            for key in _queue.pop_due(loop.time(), WORKERS - len(_queue.running)):
                _last_tick[key] = loop.time()
                task = loop.create_task(_tick(key))
                _ticking.add(task)
                task.add_done_callback(_ticking.discard)
            due = _queue.next_due()
            if len(_queue.running) >= WORKERS:  # the next look is when a tick ends
                _look_at, at = -math.inf, math.inf
            else:
                _look_at = at = math.inf if due is None else due
        else:  # a standby: the election round that makes it leader signals (_elect)
            _look_at = -math.inf
            at = loop.time() + _options.timings.retry_seconds
        timer = loop.call_at(at, _signal.set) if at < math.inf else None
        await _signal.wait()
        if timer is not None:
            timer.cancel()


async def _tick(key: Key) -> None:
    delay = TICK_SECONDS
    try:
        delay = await _reconcile_one(key)
    except Exception:  # a bug, not a user's mistake: its traceback, and the next tick in 1 s
        log.exception("rollout %s/%s: tick failed", *key)
    finally:
        _queue.done(key)
        if key in _rollouts and delay < math.inf:
            _wake(key, delay)
        if _signal is not None:  # a worker is free
            _signal.set()


async def _reconcile_one(key: Key) -> float:
    """One tick of one Rollout; the seconds until its next one (inf: none, unless a watch
    event wakes it)."""
    rt = runtime()
    namespace, name = key
    seen = _rollouts.get(key)
    if seen is None:
        return TICK_SECONDS
    if namespace in rt.deleting:
        return math.inf  # sleeps: the namespace controller deletes it, and nothing wakes it
    if rt.namespace_terminating(namespace):
        return TERMINATING_SECONDS  # a refused write marked it: look again once the mark expires
    now = datetime.now(UTC)
    snapshot = {k: dict(v) for k, v in seen.items()}
    notifier = rt.notifier
    admin_refs = notifier.admin_refs if notifier is not None else ()
    view = handlers_index.view(snapshot["spec"], namespace, name, _indexes, admin_refs)

    def post(kind: str, reason: str, message: str) -> str:
        return rt.kube.post_event(snapshot["metadata"], kind, reason, message, datetime.now(UTC))

    def counted() -> tuple[Ticked | None, bool]:
        before = rt.kube.writes_in_this_thread()
        ticked = reconcile(rt, snapshot, view, now, post, _source, _policy_resolve)
        return ticked, rt.kube.writes_in_this_thread() > before

    try:
        ticked, wrote = await _in_pool(counted)
        unwritten = rt.unwritten.get(str(snapshot["metadata"].get("uid", "")))
        if ticked is None:
            return next_tick(None, wrote, now, unwritten_since=unwritten)
        return next_tick(ticked.status, wrote, now, ticked.analysis, ticked.recheck_at, unwritten)
    except Conflict as e:
        log.debug("%s; the next tick decides again", e)
    except NotLeader:
        log.debug("rollout %s/%s: not the leader, nothing written", namespace, name)
    except ApiException as e:
        if is_terminating(e):
            log.debug("rollout %s/%s: namespace or object going away", namespace, name)
            if e.status == 403:
                rt.terminating[namespace] = rt.monotonic()
            return TICK_SECONDS
        await _report(rt, snapshot, post, f"API {e.status} {e.reason}: {_api_message(e)}")
        return 2 * TICK_SECONDS
    except (urllib3.exceptions.HTTPError, UnknownTemplate, NewerSpec, OSError) as e:
        await _report(rt, snapshot, post, f"{type(e).__name__}: {e}".splitlines()[0][:300])
        return 2 * TICK_SECONDS
    finally:
        if key not in _rollouts:  # deleted during the tick, which may have recorded it again
            _forget(key, str(snapshot["metadata"].get("uid", "")))
    return TICK_SECONDS


async def _report(rt: Runtime, snapshot: Mapping[str, Any], post: Any, message: str) -> None:
    """The failed tick as state: condition ReconcileError (best effort) and a folded Warning,
    and one log line (no traceback: the error is not a bug); the tick is retried in 2 s."""
    meta = snapshot["metadata"]
    try:
        patch = with_reconcile_error(snapshot["status"], message, datetime.now(UTC))
        if patch:
            await asyncio.to_thread(
                rt.kube.patch_rollout_status,
                meta["namespace"],
                meta["name"],
                str(meta.get("resourceVersion", "")),
                patch,
            )
            await asyncio.to_thread(post, "Warning", "ReconcileError", message)
    except (ApiException, urllib3.exceptions.HTTPError, NotLeader) as e:
        log.debug("could not record the error on %s/%s: %s", meta["namespace"], meta["name"], e)
    log.warning("rollout %s/%s: %s (retried in 2s)", meta["namespace"], meta["name"], message)


def _api_message(e: ApiException) -> str:
    """The API server's own one-line message from a Status body, else the reason."""
    import json

    try:
        return str(json.loads(e.body or "{}").get("message") or e.reason)[:300]
    except ValueError:
        return str(e.reason)


def _policy_resolve(url: str | None) -> str:
    runtime()
    assert _policy is not None
    return _policy.resolve(url)


_sources: dict[tuple[str, float], PrometheusSource] = {}


def _source(spec: RolloutSpec) -> PrometheusSource:
    """reconcile() has put the allowed URL (the policy's answer) into the spec."""
    assert spec.strategy.analysis is not None
    prom = spec.strategy.analysis.prometheus
    key = (_policy_resolve(prom.url), parse_duration(prom.timeout))
    if key not in _sources:
        _sources[key] = PrometheusSource(key[0], timeout_seconds=key[1])
    return _sources[key]
