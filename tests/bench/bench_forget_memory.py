"""Bench: what the operator process keeps of Rollouts after they are deleted (issue 15).

No cluster. N Rollouts go through the real per-Rollout paths of one operator process: the
Rollout watch handler (handlers.rollout_event: ADDED, then DELETED) for the handlers' own
state, reconcile() with the fake Kube of tests/unit for every tick (one fake cluster per
Rollout, one shared Runtime, as one process has), canary pod sightings into the PodClock (as
handlers.track_pod), and the deletion as a namespace deletion does it: the Deployments vanish,
a tick sees it (403 in a terminating namespace), the canary pods' DELETED events, the Rollout's.

Each Rollout (replica-ratio, half of them with an analysis against a fake Prometheus): created
until Healthy, a new version until its `pause {}`, a few ticks there, promoted until Healthy.
After a warm-up (the same cycle for a few Rollouts), tracemalloc's snapshot is the baseline;
the second is taken after all N were deleted and the fake clusters dropped. Printed: the
15 source lines that grew most, and the entries and size of every kanary container that keeps
per-Rollout state, at baseline, with N Rollouts alive and after the deletion. Nothing is
asserted.

--no-tracemalloc measures the process only: VmRSS (and glibc's mallinfo2, pymalloc's arena
count) at baseline, with N alive and after the deletion, no snapshots, no container table, and
the wall/CPU time of the create -> delete run (make, lifecycle, delete; with tracemalloc on, the
times include its tracing). --trim adds gc.collect() and glibc's malloc_trim(0) after the
deletion and a fourth figure. --json prints the figures as one JSON line at the end. Run it
with PYTHONMALLOC=malloc and/or MALLOC_ARENA_MAX=2 in the environment to compare allocators.

    .venv/bin/python tests/bench/bench_forget_memory.py [--rollouts 1000] [--namespaces 10]
    .venv/bin/python tests/bench/bench_forget_memory.py --no-tracemalloc --trim --json
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import ctypes
import dataclasses
import gc
import json
import os
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Coroutine, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import kopf
from kubernetes.client.exceptions import ApiException
from tests.unit.fake_kube import FakeKube
from tests.unit.test_reconcile import template

from kanary import handlers, metrics_export
from kanary.analysis.endpoints import PrometheusPolicy
from kanary.analysis.source import QueryError, QueryResult, Samples, Value
from kanary.notify.delivery import Deliverer
from kanary.notify.dispatch import Notifier
from kanary.objects import LABEL_REVISION, LABEL_ROLLOUT, LABEL_TRACK
from kanary.reconcile import Runtime, is_terminating, reconcile
from kanary.status import RolloutStatus

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RESOLVE = PrometheusPolicy("http://prometheus:9090", ()).resolve


class Prometheus:
    """A canary with plenty of requests and no errors; it remembers nothing."""

    def query(self, promql: str, at: datetime) -> QueryResult:
        return Value(0.0 if 'code=~"5.."' in promql else 1000.0)

    def query_by(self, promql: str, at: datetime, label: str) -> dict[str, float] | QueryError:
        return {"errors": 0.0, "requests": 1000.0}

    def query_range(
        self, promql: str, start: datetime, end: datetime, step_seconds: float
    ) -> Samples | QueryError:
        return Samples(())


PROMETHEUS = Prometheus()


class Clock:
    """The process's monotonic clock, moved by the ticks (TERMINATING_SECONDS etc. pass)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def body(index: int, namespaces: int) -> dict[str, Any]:
    strategy: dict[str, Any] = {
        "steps": [
            {"setWeight": 25},
            {"pause": {"duration": "10s"}},
            {"setWeight": 50},
            {"pause": {}},
            {"setWeight": 100},
        ],
        "scaleDownDelaySeconds": 5,
        "abortScaleDownDelaySeconds": 5,
    }
    if index % 2:
        strategy["analysis"] = {
            "interval": "5s",
            "metrics": [{"name": "error-rate", "max": 0.01}],
        }
    return {
        "apiVersion": "kanary.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {
            "name": f"r{index}",
            "namespace": f"ns-{index % namespaces}",
            "uid": f"uid-{index}",
            "generation": 1,
            "labels": {"app": f"r{index}"},
        },
        "spec": {"replicas": 2, "template": template("v1"), "strategy": strategy},
    }


@dataclasses.dataclass
class One:
    """One Rollout in its own fake cluster, ticked with the shared Runtime."""

    rt: Runtime
    clock: Clock
    kube: FakeKube
    namespace: str
    name: str
    now: datetime = T0

    @property
    def body(self) -> dict[str, Any]:
        found = self.kube.get("Rollout", self.namespace, self.name)
        assert found is not None
        return found

    @property
    def status(self) -> RolloutStatus:
        return RolloutStatus.model_validate(self.body.get("status") or {})

    def tick(self) -> None:
        self.rt.kube = self.kube  # type: ignore[assignment]
        try:
            reconcile(
                self.rt,
                copy.deepcopy(self.body),
                self.kube.view(self.namespace, self.name),
                self.now,
                self._post,
                lambda spec: PROMETHEUS,
                RESOLVE,
            )
        except ApiException as e:  # as handlers._reconcile_one
            if not is_terminating(e):
                raise
            if e.status == 403:
                self.rt.terminating[self.namespace] = self.rt.monotonic()
        self.kube.settle()
        self.pods()
        self.now += timedelta(seconds=1)
        self.clock.t += 1.0

    def _post(self, kind: str, reason: str, message: str) -> str:
        return self.kube.post_event(self.body["metadata"], kind, reason, message, self.now)

    def pods(self) -> None:
        """The canary pods as handlers.track_pod sees them: created, Ready, gone."""
        canary = self.kube.get("Deployment", self.namespace, f"{self.name}-canary")
        replicas = int(canary["spec"]["replicas"]) if canary is not None else 0
        labels = (canary or {}).get("spec", {}).get("template", {}).get("metadata", {})
        revision = (labels.get("labels") or {}).get(LABEL_REVISION, "")
        for i in range(4):
            pod = f"{self.name}-canary-{revision}-{i}"
            if i < replicas:
                self.rt.clock.observe(self.pod(pod, revision), self.now)
            else:
                self.rt.clock.forget(self.namespace, pod)

    def pod(self, pod: str, revision: str) -> dict[str, Any]:
        stamp = self.now.isoformat()
        return {
            "metadata": {
                "namespace": self.namespace,
                "name": pod,
                "creationTimestamp": stamp,
                "labels": {
                    LABEL_ROLLOUT: self.name,
                    LABEL_TRACK: "canary",
                    LABEL_REVISION: revision,
                },
            },
            "status": {
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": stamp}]
            },
        }

    def run_until(self, done: Callable[[RolloutStatus], bool], limit: int = 200) -> None:
        for _ in range(limit):
            self.tick()
            if done(self.status):
                return
        raise AssertionError(f"{self.name}: not done after {limit} ticks: {self.status.message}")

    def new_version(self) -> None:
        updated = self.body
        updated["spec"]["template"] = template("v2")
        updated["metadata"]["generation"] += 1
        self.kube.put(updated)

    def delete_namespace(self) -> None:
        """The namespace controller: writes refused, the owned objects gone, the pods too."""
        self.kube.terminating.add(self.namespace)
        for kind, ns, name in list(self.kube.objects):
            if kind in ("Deployment", "Service", "ControllerRevision"):
                self.kube.delete(kind, ns, name)
        self.tick()
        for (ns, pod), _ in list(self.rt.clock._pods.items()):
            if ns == self.namespace and pod.startswith(f"{self.name}-canary-"):
                self.rt.clock.forget(ns, pod)


ROLLOUT_EVENT = cast(Callable[..., Coroutine[Any, Any, None]], handlers.rollout_event)


def event(kind: str, raw: dict[str, Any]) -> None:
    """The Rollout watch's event, through handlers' own handler."""
    meta = raw["metadata"]
    asyncio.run(
        ROLLOUT_EVENT(
            event={"type": kind, "object": raw},
            body=kopf.Body(cast(Any, raw)),
            namespace=meta["namespace"],
            name=meta["name"],
        )
    )
    for key in handlers._queue.pop_due(float("inf"), 1_000_000):  # as handlers._schedule
        handlers._last_tick[key] = 0.0
        handlers._queue.done(key)
    handlers._queue.next_due()


def lifecycle(ones: Iterable[One]) -> None:
    ones = list(ones)
    for one in ones:
        one.kube.put(one.body)  # a resourceVersion
        event("ADDED", one.body)
        one.run_until(lambda s: s.phase == "Healthy")
    for one in ones:
        one.new_version()
        event("MODIFIED", one.body)
        one.run_until(lambda s: s.phase == "Paused")
        for _ in range(3):
            one.tick()
    for one in ones:
        one.kube.annotate(one.namespace, one.name, **{"kanary.dev/action": "promote"})
        event("MODIFIED", one.body)
        one.run_until(lambda s: s.phase == "Healthy")
        for _ in range(8):  # the scale-down delay
            one.tick()


def delete(ones: Iterable[One]) -> None:
    for one in ones:
        one.delete_namespace()
        event("DELETED", one.body)


def make(rt: Runtime, clock: Clock, first: int, count: int, namespaces: int) -> list[One]:
    out = []
    for i in range(first, first + count):
        raw = body(i, namespaces)
        kube = FakeKube()
        kube.put(raw)
        out.append(One(rt, clock, kube, raw["metadata"]["namespace"], raw["metadata"]["name"]))
    return out


# ---- what kanary keeps -------------------------------------------------------------------------


def deep_size(obj: Any, seen: set[int] | None = None) -> int:
    """Bytes of obj and everything it holds (containers, dataclasses, __dict__/__slots__)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or isinstance(obj, type) or callable(obj):
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, list | tuple | set | frozenset):
        size += sum(deep_size(v, seen) for v in obj)
    elif dataclasses.is_dataclass(obj) or hasattr(obj, "__dict__"):
        size += deep_size(getattr(obj, "__dict__", {}), seen)
    return size


def containers(rt: Runtime) -> dict[str, Any]:
    notifier = rt.notifier
    assert notifier is not None
    out: dict[str, Any] = {
        "Runtime.applied_generation": rt.applied_generation,
        "Runtime.recent_events": rt.recent_events,
        "Runtime.terminating": rt.terminating,
        "Runtime.gate_asked": rt.gate_asked,
        "Runtime.unwritten": rt.unwritten,
        "PodClock._pods": rt.clock._pods,
        "Notifier._accepted": notifier._accepted,
        "Notifier._resent": notifier._resent,
        "Notifier._secrets": notifier._secrets,
        "metrics_export._phases": metrics_export._phases,
        "metrics_export._extra": metrics_export._extra,
        "handlers._rollouts": handlers._rollouts,
        "handlers._last_tick": handlers._last_tick,
        "handlers._queue._due": handlers._queue._due,
        "handlers._queue._heap": handlers._queue._heap,
    }
    for metric in (
        metrics_export.WEIGHT,
        metrics_export.STEPS,
        metrics_export.ROLLBACKS,
        metrics_export.PROMOTIONS,
        metrics_export.ANALYSIS_VALUE,
        metrics_export.SEQUENTIAL,
    ):
        out[f"series {metric._name}"] = metric._metrics
    return out


def measure(rt: Runtime) -> dict[str, tuple[int, int]]:
    return {name: (len(c), deep_size(c)) for name, c in containers(rt).items()}


def table(columns: dict[str, dict[str, tuple[int, int]]]) -> None:
    heads = list(columns)
    print(f"{'container':<44}" + "".join(f"{h:>24}" for h in heads))
    names = list(next(iter(columns.values())))
    totals = dict.fromkeys(heads, 0)
    for name in names:
        row = f"{name:<44}"
        for h in heads:
            n, size = columns[h][name]
            totals[h] += size
            row += f"{n:>10} / {size:>9} B "
        print(row)
    print(f"{'total':<44}" + "".join(f"{totals[h]:>22} B " for h in heads))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=1000)
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument(
        "--no-tracemalloc",
        action="store_true",
        help="RSS only: no tracemalloc snapshots, no container table",
    )
    parser.add_argument(
        "--trim", action="store_true", help="gc.collect() + malloc_trim(0) after the deletion"
    )
    parser.add_argument("--json", action="store_true", help="the figures as one JSON line")
    args = parser.parse_args()
    traced = not args.no_tracemalloc

    clock = Clock()
    deliverer = Deliverer()
    rt = Runtime(kube=FakeKube(), monotonic=clock)  # type: ignore[arg-type]
    rt.notifier = Notifier(deliverer, FakeKube(), lambda ns, name: None, monotonic=clock)
    handlers._runtime = rt

    warm = make(rt, clock, 0, args.warmup, args.namespaces)
    lifecycle(warm)
    delete(warm)
    del warm
    gc.collect()
    figures: dict[str, Any] = {
        "rollouts": args.rollouts,
        "PYTHONMALLOC": os.environ.get("PYTHONMALLOC", ""),
        "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", ""),
        "tracemalloc": traced,
    }
    figures["baseline"] = _process()
    if traced:
        tracemalloc.start(1)
        before = measure(rt)
        baseline = tracemalloc.take_snapshot()
        print(f"baseline (after {args.warmup} warm-up Rollouts): traced {_mib(baseline)}")
    else:
        print(f"baseline (after {args.warmup} warm-up Rollouts): {_line(figures['baseline'])}")

    wall, cpu = time.perf_counter(), time.process_time()
    ones = make(rt, clock, args.warmup, args.rollouts, args.namespaces)
    lifecycle(ones)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    gc.collect()
    figures["alive"] = _process()
    if traced:
        alive = measure(rt)
        gc.collect()
        peak = tracemalloc.take_snapshot()
        print(f"{args.rollouts} Rollouts alive (with their fake clusters): traced {_mib(peak)}")
        del peak
    else:
        print(
            f"{args.rollouts} Rollouts alive (with their fake clusters): {_line(figures['alive'])}"
        )
    started_wall, started_cpu = time.perf_counter(), time.process_time()
    delete(ones)
    del ones
    wall += time.perf_counter() - started_wall
    cpu += time.process_time() - started_cpu
    gc.collect()
    figures["deleted"] = _process()
    figures["wall_s"], figures["cpu_s"] = round(wall, 3), round(cpu, 3)
    if traced:
        after = measure(rt)
        snapshot = tracemalloc.take_snapshot()
        print(f"all deleted, fake clusters dropped: traced {_mib(snapshot)}")
    else:
        print(f"all deleted, fake clusters dropped: {_line(figures['deleted'])}")
    if args.trim:
        started = time.perf_counter()
        gc.collect()
        collected = time.perf_counter()
        released = _malloc_trim()
        trimmed = time.perf_counter()
        figures["trimmed"] = _process()
        figures["trim_released"] = released
        figures["gc_ms"] = round((collected - started) * 1000, 1)
        figures["trim_ms"] = round((trimmed - collected) * 1000, 1)
        print(
            f"after gc.collect() ({figures['gc_ms']} ms) + malloc_trim(0) "
            f"({figures['trim_ms']} ms, released: {released}): "
            f"{_line(figures['trimmed'])}"
        )
    print(f"create -> delete of {args.rollouts}: wall {wall:.2f} s, CPU {cpu:.2f} s")
    if traced:
        grown = sum(s.size_diff for s in snapshot.compare_to(baseline, "filename"))
        print(f"retained since the baseline: {grown / 1024:.1f} KiB\n")
        table({"baseline": before, f"{args.rollouts} alive": alive, "after deletion": after})
        print("\ntop 15 lines by size since the baseline:")
        for stat in snapshot.compare_to(baseline, "lineno")[:15]:
            print(f"  {stat}")
    if args.json:
        print(json.dumps(figures))
    deliverer.stop()


def _mib(snapshot: tracemalloc.Snapshot) -> str:
    traced = sum(s.size for s in snapshot.statistics("filename")) / 2**20
    return f"{traced:.1f} MiB, VmRSS {_rss()} (tracemalloc's own tables included)"


def _rss() -> str:
    kib = _rss_kib()
    return "?" if kib is None else f"{kib / 1024:.1f} MiB"


def _rss_kib() -> int | None:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


# ---- the allocators (glibc, pymalloc) ----------------------------------------------------------


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",  # bytes from sbrk (the main heap) and the other arenas' heaps
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",  # bytes in mmap'ed blocks
            "usmblks",
            "fsmblks",
            "uordblks",  # bytes in use
            "fordblks",  # bytes free (held by malloc, not necessarily resident)
            "keepcost",
        )
    ]


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


LIBC = _libc()


def _malloc_trim() -> int | None:
    """glibc's malloc_trim(0): 1 if memory was given back to the system, None without glibc."""
    if LIBC is None or not hasattr(LIBC, "malloc_trim"):
        return None
    trim = LIBC.malloc_trim
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return int(trim(0))


def _mallinfo() -> dict[str, float] | None:
    """glibc's heap in MiB: obtained (sbrk + arenas), mmap'ed, in use, free."""
    if LIBC is None or not hasattr(LIBC, "mallinfo2"):
        return None
    info = LIBC.mallinfo2
    info.argtypes = []
    info.restype = _Mallinfo2
    got = cast(_Mallinfo2, info())
    return {
        name: round(int(getattr(got, field)) / 2**20, 1)
        for name, field in (
            ("heap", "arena"),
            ("mmap", "hblkhd"),
            ("used", "uordblks"),
            ("free", "fordblks"),
        )
    }


def _pymalloc_arenas() -> int | None:
    """pymalloc's arenas in use (1 MiB each on 64-bit 3.10+), from sys._debugmallocstats."""
    sys.stderr.flush()
    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode(errors="replace")
    for line in text.splitlines():
        if line.startswith("# arenas allocated current"):
            return int(line.split("=")[1].replace(",", "").strip())
    return None


def _status_mib(field: str) -> float | None:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def _process() -> dict[str, Any]:
    return {
        "rss_mib": _status_mib("VmRSS"),
        "anon_mib": _status_mib("RssAnon"),  # the heap, pymalloc's arenas: what can shrink
        "file_mib": _status_mib("RssFile"),  # the mapped libraries and extension modules
        "malloc": _mallinfo(),
        "pymalloc_arenas": _pymalloc_arenas(),
    }


def _line(figures: dict[str, Any]) -> str:
    out = f"VmRSS {figures['rss_mib']} MiB (anon {figures['anon_mib']}, file {figures['file_mib']})"
    if figures["pymalloc_arenas"] is not None:
        out += f", pymalloc arenas {figures['pymalloc_arenas']}"
    if figures["malloc"] is not None:
        out += ", glibc " + ", ".join(f"{k} {v} MiB" for k, v in figures["malloc"].items())
    return out


if __name__ == "__main__":
    main()
