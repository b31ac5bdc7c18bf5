"""Fleet figures for issue 15: the same update of many small Rollouts against plain Deployments,
and a soak of create -> rollout -> promote -> delete cycles.

    hack/cluster/exec.sh .venv/bin/python tests/bench/bench_fleet.py --parts throughput,soak \\
        --out /tmp/bench-fleet.json

- throughput: `--count` (200) plain Deployments (replicas 1, kwok pods) created at once until
  all available, then a new image on all until all rolled; then the same count of Rollouts
  (replica-ratio, replicas 1, steps [setWeight 50]) created until all Healthy, then a new image
  on all until all promoted (Healthy, stable image v2). Both in the same run, on the same
  cluster, one after the other; seconds for each, and the ratio.
- soak: `--cycles` (500) cycles, `--lanes` (10) at a time: create a Rollout, Healthy, v2,
  promoted, delete it, until gone. VmRSS of the plain operator after each round (once the
  round's Rollouts are gone and 2 s have passed); the last round against the first.

Numbers, not asserts; every wait is bounded and a timeout is recorded. Uses bench_operator.py's
cluster setup, client kit, operator process and sampler. Loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_operator import (
    MIB,
    POD_ANNOTATIONS,
    Kit,
    OperatorRun,
    Sampler,
    cluster_setup,
    in_netns,
    poll,
    rollout_body,
)

RATIO_STEPS: list[dict[str, Any]] = [{"setWeight": 50}]
V1, V2 = "kanary/gin-demo:v1", "kanary/gin-demo:v2"


def _timed(what: str, probe: Callable[[], bool], limit: float, timeouts: list[str]) -> float:
    started = time.time()
    try:
        poll(what, probe, limit, interval=1.0)
    except TimeoutError as e:
        timeouts.append(str(e))
        return -1.0
    return round(time.time() - started, 1)


def deployment(name: str, image: str) -> dict[str, Any]:
    """A plain Deployment with the Rollouts' pod template (kwok node, the same Ready delay)."""
    template = rollout_body(name, image, RATIO_STEPS, gateway=False, replicas=1)["spec"]["template"]
    template["metadata"]["annotations"] = dict(POD_ANNOTATIONS)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": template},
    }


def _all_rolled(kit: Kit, ns: str, count: int, image: str) -> bool:
    items = kit.apps.list_namespaced_deployment(ns).items
    done = 0
    for d in items:
        st = d.status
        if (
            d.spec.template.spec.containers[0].image == image
            and (st.observed_generation or 0) >= (d.metadata.generation or 0)
            and (st.updated_replicas or 0) == 1
            and (st.available_replicas or 0) == 1
            and (st.replicas or 0) == 1
        ):
            done += 1
    return done == count


def _promoted_to(image: str) -> Callable[[dict[str, Any]], bool]:
    def check(r: dict[str, Any]) -> bool:
        st = r.get("status") or {}
        return st.get("phase") == "Healthy" and st.get("stableImage") == image

    return check


def _all_at(kit: Kit, ns: str, names: set[str], image: str) -> Callable[[], bool]:
    """A probe: every Rollout of `names` in `ns` Healthy with `image` as its stable image."""
    done = _promoted_to(image)

    def probe() -> bool:
        rollouts = kit.rollouts(ns)
        return sum(1 for n in names if n in rollouts and done(rollouts[n])) == len(names)

    return probe


class Timeline:
    """Where an update's time goes, from watches (local clock, one thread per watch): when each
    pod was first seen and first seen Ready, and when each Rollout was first seen Healthy on the
    new image. Started after the new image is set on all."""

    def __init__(self, kit: Kit, ns: str) -> None:
        self.kit, self.ns = kit, ns
        self.pods: dict[str, dict[str, Any]] = {}  # pod -> owner, track, created, ready
        self.healthy: dict[str, float] = {}  # Rollout -> first seen Healthy on V2
        self.deployments: dict[str, dict[str, float]] = {}  # name -> "spec"/"ready" on V2: when
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._watch_pods, daemon=True),
            threading.Thread(target=self._watch_rollouts, daemon=True),
            threading.Thread(target=self._watch_deployments, daemon=True),
        ]

    def start(self) -> Timeline:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _watch(self, list_fn: Callable[..., Any], seen: Callable[[Any], None], **kw: Any) -> None:
        from kubernetes import watch

        while not self._stop.is_set():
            w = watch.Watch()
            try:
                for ev in w.stream(list_fn, self.ns, timeout_seconds=5, **kw):
                    seen(ev["object"])
                    if self._stop.is_set():
                        break
            except Exception:  # a watch that broke: watch again (the bench's own client)
                time.sleep(0.5)
            finally:
                w.stop()

    def _watch_pods(self) -> None:
        def seen(pod: Any) -> None:
            now = time.time()
            labels = pod.metadata.labels or {}
            rec = self.pods.setdefault(
                pod.metadata.name,
                {
                    "owner": labels.get("kanary.dev/rollout") or labels.get("app"),
                    "track": labels.get("kanary.dev/track", "deployment"),
                    "image": pod.spec.containers[0].image,
                    "created": now,
                    "ready": None,
                },
            )
            ready = any(
                c.type == "Ready" and c.status == "True"
                for c in (pod.status.conditions or [])
                if pod.status is not None
            )
            if ready and rec["ready"] is None:
                rec["ready"] = now

        self._watch(self.kit.core.list_namespaced_pod, seen)

    def _watch_deployments(self) -> None:
        def seen(d: Any) -> None:
            if d.spec.template.spec.containers[0].image != V2:
                return
            now = time.time()
            rec = self.deployments.setdefault(d.metadata.name, {"spec": now})
            st = d.status
            want = d.spec.replicas or 0
            if (
                "ready" not in rec
                and want > 0
                and (st.observed_generation or 0) >= (d.metadata.generation or 0)
                and (st.updated_replicas or 0) == want
                and (st.ready_replicas or 0) >= want
            ):
                rec["ready"] = now

        self._watch(self.kit.apps.list_namespaced_deployment, seen)

    def _watch_rollouts(self) -> None:
        done = _promoted_to(V2)

        def seen(obj: Any) -> None:
            if done(obj) and obj["metadata"]["name"] not in self.healthy:
                self.healthy[obj["metadata"]["name"]] = time.time()

        def list_fn(ns: str, **kw: Any) -> Any:
            return self.kit.custom.list_namespaced_custom_object(
                "kanary.dev", "v1alpha1", ns, "rollouts", **kw
            )

        self._watch(list_fn, seen)

    def gaps(self, set_at: float) -> dict[str, Any]:
        """Per owner, the seconds of each leg after `set_at` (p50/p90/max over the owners)."""
        legs: dict[str, list[float]] = {}
        new = [p for p in self.pods.values() if p["image"] == V2 and p["created"] >= set_at - 1]
        by: dict[str, dict[str, dict[str, Any]]] = {}
        for p in new:
            by.setdefault(str(p["owner"]), {})[p["track"]] = p

        def add(leg: str, a: float | None, b: float | None) -> None:
            if a is not None and b is not None:
                legs.setdefault(leg, []).append(b - a)

        for owner, tracks in by.items():
            if "deployment" in tracks:
                d = tracks["deployment"]
                add("1 new pod created", set_at, d["created"])
                add("2 new pod Ready", d["created"], d["ready"])
                continue
            c, st = tracks.get("canary") or {}, tracks.get("stable") or {}
            add("1 canary pod created", set_at, c.get("created"))
            add("2 canary pod Ready", c.get("created"), c.get("ready"))
            add("3 canary Ready -> stable pod created", c.get("ready"), st.get("created"))
            add("4 stable pod Ready", st.get("created"), st.get("ready"))
            add("5 stable Ready -> Rollout Healthy", st.get("ready"), self.healthy.get(owner))
            cd = self.deployments.get(f"{owner}-canary", {})
            sd = self.deployments.get(f"{owner}-stable", {})
            add("3a canary pod Ready -> Deployment Ready", c.get("ready"), cd.get("ready"))
            add("3b canary Deployment Ready -> stable new spec", cd.get("ready"), sd.get("spec"))
            add("3c stable new spec -> stable pod created", sd.get("spec"), st.get("created"))
            add("5a stable pod Ready -> Deployment Ready", st.get("ready"), sd.get("ready"))
            add("5b stable Deployment Ready -> Healthy", sd.get("ready"), self.healthy.get(owner))
        out: dict[str, Any] = {}
        for leg, values in sorted(legs.items()):
            values.sort()
            out[leg] = {
                "n": len(values),
                "p50": round(values[len(values) // 2], 2),
                "p90": round(values[int(len(values) * 0.9)], 2),
                "max": round(values[-1], 2),
            }
        return out


def throughput_part(kit: Kit, kubeconfig: Path, workdir: Path, count: int) -> dict[str, Any]:
    timeouts: list[str] = []
    out: dict[str, Any] = {"count": count, "steps": RATIO_STEPS, "mode": "ratio", "replicas": 1}
    names = [f"t{i:04d}" for i in range(count)]
    limit = max(600.0, count * 3.0)

    ns = kit.namespace("bench-deploy")
    try:
        print(f"[bench {time.strftime('%H:%M:%S')}] {count} Deployments", flush=True)
        started = time.time()
        for n in names:
            kit.apps.create_namespaced_deployment(ns, deployment(n, V1))
        out["deployments_create_s"] = _timed(
            "Deployments available", lambda: _all_rolled(kit, ns, count, V1), limit, timeouts
        )
        ops = [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": V2}]
        timeline = Timeline(kit, ns).start()
        set_at = time.time()
        for n in names:
            kit.apps.patch_namespaced_deployment(n, ns, ops)
        out["deployments_update_s"] = _timed(
            "Deployments rolled", lambda: _all_rolled(kit, ns, count, V2), limit, timeouts
        )
        timeline.stop()
        out["deployments_update_legs"] = timeline.gaps(set_at)
        out["deployments_total_s"] = round(time.time() - started, 1)
    finally:
        kit.delete_namespace(ns)
    poll(f"namespace {ns} gone", lambda: kit.namespace_gone(ns), 300, interval=1.0)

    op = OperatorRun(kubeconfig, workdir, "throughput", wrapped=False)
    op.start()
    ns = kit.namespace("bench-rollouts")
    try:
        print(f"[bench {time.strftime('%H:%M:%S')}] {count} Rollouts", flush=True)
        started = time.time()
        for n in names:
            kit.create_rollout(ns, rollout_body(n, V1, RATIO_STEPS, gateway=False, replicas=1))
        everyone = set(names)
        out["rollouts_create_s"] = _timed(
            "Rollouts Healthy", _all_at(kit, ns, everyone, V1), limit, timeouts
        )
        timeline = Timeline(kit, ns).start()
        set_at = time.time()
        for n in names:
            kit.set_image(ns, n, V2)
        out["rollouts_update_s"] = _timed(
            "Rollouts promoted", _all_at(kit, ns, everyone, V2), limit, timeouts
        )
        timeline.stop()
        out["rollouts_update_legs"] = timeline.gaps(set_at)
        out["rollouts_total_s"] = round(time.time() - started, 1)
    finally:
        kit.delete_namespace(ns)
        op.stop()
    # gone before the next run's Deployments start (a run right after this one measured its
    # Deployments' creation 40 % slower while this namespace was still being deleted)
    poll(f"namespace {ns} gone", lambda: kit.namespace_gone(ns), 300, interval=1.0)
    for what in ("create", "update", "total"):
        d, r = out.get(f"deployments_{what}_s"), out.get(f"rollouts_{what}_s")
        if d and r and d > 0 and r > 0:
            out[f"ratio_{what}"] = round(r / d, 2)
    out["timeouts"] = timeouts
    return out


def _soak_round(kit: Kit, ns: str, r: int, names: list[str], timeouts: list[str]) -> None:
    """Create, Healthy, v2, promoted, deleted, gone: one cycle for each name, side by side."""
    for n in names:
        kit.create_rollout(ns, rollout_body(n, V1, RATIO_STEPS, gateway=False, replicas=1))

    def mine() -> dict[str, dict[str, Any]]:
        return {k: v for k, v in kit.rollouts(ns).items() if k in names}

    _timed(f"round {r} Healthy", _all_at(kit, ns, set(names), V1), 120, timeouts)
    for n in names:
        kit.set_image(ns, n, V2)
    _timed(f"round {r} promoted", _all_at(kit, ns, set(names), V2), 120, timeouts)
    for n in names:
        kit.custom.delete_namespaced_custom_object("kanary.dev", "v1alpha1", ns, "rollouts", n)
    _timed(f"round {r} gone", lambda: not mine(), 120, timeouts)


def soak_part(kit: Kit, kubeconfig: Path, workdir: Path, cycles: int, lanes: int) -> dict[str, Any]:
    op = OperatorRun(kubeconfig, workdir, "soak", wrapped=False)
    op.start()
    ns = kit.namespace("bench-soak")
    timeouts: list[str] = []
    rounds: list[dict[str, Any]] = []
    try:
        with Sampler(op.pid) as sampler:
            sampler.set_phase(f"{cycles} cycles, {lanes} at a time")
            for r in range(max(1, cycles // lanes)):
                started = time.time()
                names = [f"s{r:03d}-{i}" for i in range(lanes)]
                _soak_round(kit, ns, r, names, timeouts)
                time.sleep(2)
                sampler.sample_now()
                rss = sampler.samples[-1].rss_kib / MIB
                rounds.append(
                    {
                        "round": r,
                        "seconds": round(time.time() - started, 1),
                        "rss_mib": round(rss, 1),
                    }
                )
                print(f"[bench {time.strftime('%H:%M:%S')}] round {r}: {rss:.1f} MiB", flush=True)
                if len(timeouts) > 5:
                    break
    finally:
        kit.delete_namespace(ns)
        op.stop()
    first, last = rounds[0]["rss_mib"], rounds[-1]["rss_mib"]
    return {
        "cycles": len(rounds) * lanes,
        "lanes": lanes,
        "rss_mib_after_first_round": first,
        "rss_mib_after_last_round": last,
        "growth_pct": round(100 * (last - first) / first, 1),
        "rss_mib_max": max(x["rss_mib"] for x in rounds),
        "rounds": rounds,
        "timeouts": timeouts,
    }


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--parts", default="throughput,soak")
    p.add_argument("--count", type=int, default=200, help="throughput: Deployments and Rollouts")
    p.add_argument("--cycles", type=int, default=500)
    p.add_argument("--lanes", type=int, default=10, help="soak: cycles at a time")
    p.add_argument("--out", type=Path)
    p.add_argument("--workdir", type=Path)
    args = p.parse_args(argv)
    if not in_netns():
        raise SystemExit("run inside the cluster's network namespace: hack/cluster/exec.sh ...")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="kanary-fleet-"))
    workdir.mkdir(parents=True, exist_ok=True)
    kubeconfig, api = cluster_setup(workdir)
    kit = Kit(api)
    parts = set(args.parts.split(","))
    results: dict[str, Any] = {"meta": {"cpus": os.cpu_count(), "loadavg": os.getloadavg()}}
    try:
        if "throughput" in parts:
            results["throughput"] = throughput_part(kit, kubeconfig, workdir, args.count)
            print(json.dumps(results["throughput"], indent=1))
        if "soak" in parts:
            results["soak"] = soak_part(kit, kubeconfig, workdir, args.cycles, args.lanes)
            print(json.dumps({k: v for k, v in results["soak"].items() if k != "rounds"}))
    finally:
        results["meta"]["loadavg_end"] = os.getloadavg()
        if args.out:
            args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
