"""Bench: does alert delivery slow the tick? And how fast is the delivery queue?

Two figures, printed, never asserted:

1. Tick time (reconcile() with the fake Kube of tests/unit, which models the Rollout's status
   subresource) for a Rollout that was just rolled back and alerts three providers, when the
   providers answer at once and when they hang (every POST waits 5 s, the providers' timeout):
   delivery runs on its own thread, so the two should match the tick time with no notifications.
2. Throughput of the Deliverer against a real local HTTP server: N alerts submitted at once,
   time until all were accepted.

    .venv/bin/python tests/bench/bench_notify.py [--ticks 200] [--alerts 500]
"""

from __future__ import annotations

import argparse
import http.server
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.unit.fake_kube import FakeKube, Harness
from tests.unit.test_notify_reconcile import provider
from tests.unit.test_reconcile import NAME, NS, httproute, new_version, rollout

from kanary.notify.delivery import Deliverer, Delivery
from kanary.notify.dispatch import Notifier
from kanary.notify.model import Target


def server(delay: float) -> tuple[http.server.ThreadingHTTPServer, str, list[int]]:
    seen: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            time.sleep(delay)
            seen.append(1)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}", seen


def tick_times(delay: float | None, ticks: int) -> list[float]:
    """Seconds per reconcile() of a rolled-back Rollout; delay None: no notifications."""
    body = rollout()
    kube = FakeKube()
    srv = None
    if delay is not None:
        srv, url, _ = server(delay)
        body["spec"]["notifications"] = {"providers": ["a", "b", "c"]}
        for name, kind in (("a", "webhook"), ("b", "slack"), ("c", "alertmanager")):
            provider(kube, name, kind, f"{url}/{name}")
    kube.put(body)
    kube.put(httproute())
    h = Harness(kube)
    if delay is not None:
        notifier = Notifier(Deliverer(), kube, kube.secret_data)
        h.rt.notifier = notifier
    h.run_until(lambda s: s.phase == "Healthy")
    new_version(h)
    h.run_until(lambda s: s.canary_weight == 5)
    kube.annotate(NS, NAME, **{"kanary.dev/action": "abort"})
    h.run_until(lambda s: s.phase == "RolledBack")
    out = []
    for _ in range(ticks):
        t0 = time.perf_counter()
        h.tick()
        out.append(time.perf_counter() - t0)
    if srv is not None:
        srv.shutdown()
    return out


def throughput(alerts: int) -> float:
    srv, url, seen = server(0.0)
    deliverer = Deliverer(maxsize=alerts + 1)
    target = Target(name="bench/hook", type="webhook", url=url + "/hook")
    t0 = time.perf_counter()
    for i in range(alerts):
        deliverer.submit(Delivery(target=target, body={"i": i}, key=i))
    while len(seen) < alerts:
        time.sleep(0.005)
    elapsed = time.perf_counter() - t0
    deliverer.stop()
    srv.shutdown()
    return alerts / elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=200)
    ap.add_argument("--alerts", type=int, default=500)
    args = ap.parse_args()
    for label, delay in (
        ("no notifications", None),
        ("providers answer", 0.0),
        ("providers hang 5s", 5.0),
    ):
        times = tick_times(delay, args.ticks)
        q = statistics.quantiles(times, n=20)
        print(
            f"tick, {label:18}: median {statistics.median(times) * 1000:.2f} ms,"
            f" p95 {q[18] * 1000:.2f} ms, max {max(times) * 1000:.2f} ms ({len(times)} ticks)"
        )
    rate = throughput(args.alerts)
    print(f"delivery: {rate:.0f} alerts/s to one local receiver ({args.alerts} alerts)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
