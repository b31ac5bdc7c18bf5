"""Creation to Ready of the Gin pod on the local cluster's real node, split into its parts.

    hack/cluster/exec.sh .venv/bin/python tests/bench/bench_node.py --pods 20 --out /tmp/node.json

Runs in the cluster's network namespace against the default local cluster (up.sh and node-up.sh
must have run). Creates `--pods` bare pods of kanary/gin-demo:v1 one after another (each waits
for the previous to be Ready, so the figures are one pod's latency, not a queue), with the
example's securityContext and a readinessProbe on /readyz with periodSeconds 1, and times each
from a watch (sub-second, unlike the API's whole-second timestamps):

  scheduled   creation -> the pod has a node (the scheduler's bind)
  started     creation -> the watch shows the container running (sandbox, CNI, runc)
  listening   creation -> the app's own "listening" log line (its slog timestamp, ms)
  probe_ok    creation -> the kubelet's first successful readiness probe (its log line
              "SyncLoop (probe)" probe="readiness" status="ready", µs)
  ready       creation -> the watch shows Ready (the probe's result in the pod's status)

Prints median and p95 of each and writes them as JSON. Numbers, not asserts.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

PROBE = {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 1, "failureThreshold": 1}
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from tests.integration.rollout_objects import example_security_context  # noqa: E402

SECURITY = example_security_context()
LISTENING = re.compile(r"^time=(\S+) level=INFO msg=listening", re.M)
# I1201 21:56:57.990055   16026 kubelet.go:2634] "SyncLoop (probe)" probe="readiness"
#   status="ready" pod="ns/name"       (one line)
PROBE_READY = re.compile(
    r'^I(\d{4}) (\d\d:\d\d:\d\d\.\d+) .*"SyncLoop \(probe\)" probe="readiness"'
    r' status="ready" pod="([^"]+)"',
    re.M,
)


def kubelet_probe_ok(log: Path, ns: str, name: str) -> float | None:
    """When the kubelet first saw pod ns/name's readiness probe succeed (its log, UTC)."""
    for m in PROBE_READY.finditer(log.read_text(errors="replace")):
        if m.group(3) == f"{ns}/{name}":
            year = datetime.now(UTC).year
            stamp = datetime.strptime(f"{year}{m.group(1)} {m.group(2)}", "%Y%m%d %H:%M:%S.%f")
            return stamp.replace(tzinfo=UTC).timestamp()
    return None


def pod_body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "node"}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "app",
                    "image": "kanary/gin-demo:v1",
                    "imagePullPolicy": "Never",
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "readinessProbe": PROBE,
                    "securityContext": SECURITY,
                }
            ],
        },
    }


class Sightings:
    """First wall-clock time the watch saw each transition, per pod."""

    def __init__(self, core: client.CoreV1Api, ns: str) -> None:
        self.core, self.ns = core, ns
        self.seen: dict[str, dict[str, float]] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        w = watch.Watch()
        for ev in w.stream(self.core.list_namespaced_pod, self.ns, timeout_seconds=3600):
            now = time.time()
            p = ev["object"]
            marks = self.seen.setdefault(p.metadata.name, {})
            with self.lock:
                if p.spec.node_name:
                    marks.setdefault("scheduled", now)
                for cs in p.status.container_statuses or []:
                    if cs.state and cs.state.running:
                        marks.setdefault("started", now)
                if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or []):
                    marks.setdefault("ready", now)
            if self.stop.is_set():
                w.stop()

    def get(self, name: str) -> dict[str, float]:
        with self.lock:
            return dict(self.seen.get(name, {}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kubeconfig", default=None)
    ap.add_argument("--pods", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--kubelet-log",
        type=Path,
        default=Path.home() / ".cache/kanary/cluster/logs/kubelet.log",
        help="the real node's kubelet log (node-up.sh), for probe_ok",
    )
    args = ap.parse_args()
    config.load_kube_config(config_file=args.kubeconfig)  # type: ignore[no-untyped-call]
    core = client.CoreV1Api()
    ns = f"bench-node-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": ns}})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # bare pods need the default ServiceAccount
        try:
            core.read_namespaced_service_account("default", ns)
            break
        except client.ApiException:
            time.sleep(0.2)
    sightings = Sightings(core, ns)
    rows: list[dict[str, float]] = []
    try:
        for i in range(args.pods):
            name = f"gin-{i}"
            t0 = time.time()
            core.create_namespaced_pod(ns, pod_body(name))
            while "ready" not in sightings.get(name):
                if time.time() - t0 > 120:
                    raise SystemExit(f"bench: pod {name} not Ready after 120s")
                time.sleep(0.02)
            marks = sightings.get(name)
            logs = core.read_namespaced_pod_log(name, ns)
            m = LISTENING.search(logs)
            listening = datetime.fromisoformat(m.group(1)).timestamp() if m else float("nan")
            row = {k: marks[k] - t0 for k in ("scheduled", "started", "ready")}
            row["listening"] = listening - t0
            probe_ok = kubelet_probe_ok(args.kubelet_log, ns, name)
            row["probe_ok"] = float("nan") if probe_ok is None else probe_ok - t0
            rows.append(row)
            print(f"  {name}: " + "  ".join(f"{k} {v:.2f}s" for k, v in row.items()), flush=True)
            core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
    finally:
        sightings.stop.set()
        core.delete_namespace(ns)
    out: dict[str, Any] = {"pods": len(rows)}
    for part in ("scheduled", "started", "listening", "probe_ok", "ready"):
        values = sorted(r[part] for r in rows)
        p95 = values[max(0, round(0.95 * len(values)) - 1)]
        out[part] = {"median": round(statistics.median(values), 3), "p95": round(p95, 3)}
        print(f"{part:10} median {out[part]['median']:.2f}s  p95 {p95:.2f}s")
    if args.out:
        args.out.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
