#!/usr/bin/env python3
"""Load generator: a steady, bounded rate of GET requests for a bounded time
through the Gateway, reporting per-version counts and status codes.

Run it inside the cluster's network namespace (the Gateway listens on
127.0.0.1:8000 there):

    hack/cluster/exec.sh .venv/bin/python hack/dataplane/load.py \\
        --host demo.kanary.test --rate 200 --duration 10

The Gin service answers GET / with JSON {"version": ..., "pod": ...} (errors
too), so the report tells which version and which pod answered each request.
Bounded: at most --rate requests a second (<= 2000), for at most --duration
seconds (<= 600) and at most --count requests. Targets are restricted to
loopback, and to the cluster's private ranges only from inside its network
namespace (the project's network rule). SIGTERM/SIGINT end the run early and
the report of what was sent is still printed.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

MAX_RATE = 2000.0
MAX_DURATION_S = 600.0
# Private ranges that exist only inside the cluster's network namespace.
NETNS_RANGES = (
    ipaddress.ip_network("10.244.0.0/16"),  # pods (AnyIP route on lo)
    ipaddress.ip_network("10.96.0.0/16"),  # services
    ipaddress.ip_network("10.243.0.1/32"),  # apiserver advertise address
)


def in_netns(name: str | None = None) -> bool:
    name = name or os.environ.get("KANARY_NETNS", "kanary")
    try:
        ours = os.stat("/proc/self/ns/net")
        theirs = os.stat(f"/run/netns/{name}")
    except OSError:
        return False
    return (ours.st_dev, ours.st_ino) == (theirs.st_dev, theirs.st_ino)


def check_target(host: str) -> None:
    """Refuse anything but loopback, or the cluster's ranges from inside its netns."""
    if host == "localhost":
        return
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError as e:
        raise SystemExit(f"target {host!r}: use an IP literal (loopback or a pod IP)") from e
    if ip.is_loopback:
        return
    if any(ip in net for net in NETNS_RANGES) and in_netns():
        return
    raise SystemExit(
        f"target {host}: only loopback, or the cluster's ranges from inside its network namespace"
    )


@dataclass
class Report:
    sent: int = 0
    elapsed_s: float = 0.0
    status: Counter[str] = field(default_factory=Counter)  # "200", "500", "error:<Type>"
    version: Counter[str] = field(default_factory=Counter)  # from the JSON body; "?" if none
    pod: Counter[str] = field(default_factory=Counter)
    version_status: Counter[str] = field(default_factory=Counter)  # "v1 200"
    latencies_ms: list[float] = field(default_factory=list)
    # first and last send time (s after the start) of each non-200 status
    not_ok_window: dict[str, tuple[float, float]] = field(default_factory=dict)

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return 0.0
        xs = sorted(self.latencies_ms)
        return xs[min(len(xs) - 1, int(q * len(xs)))]

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "elapsed_s": round(self.elapsed_s, 3),
            "rate": round(self.sent / self.elapsed_s, 1) if self.elapsed_s else 0.0,
            "status": dict(sorted(self.status.items())),
            "version": dict(sorted(self.version.items())),
            "pod": dict(sorted(self.pod.items())),
            "version_status": dict(sorted(self.version_status.items())),
            "not_ok_window_s": {
                k: [round(a, 3), round(b, 3)] for k, (a, b) in sorted(self.not_ok_window.items())
            },
            "latency_ms": {
                "p50": round(self.percentile(0.50), 2),
                "p90": round(self.percentile(0.90), 2),
                "p99": round(self.percentile(0.99), 2),
                "max": round(max(self.latencies_ms, default=0.0), 2),
            },
        }

    def text(self) -> str:
        d = self.to_dict()
        lines = [f"sent {d['sent']} in {d['elapsed_s']}s ({d['rate']}/s)"]
        total = max(self.sent, 1)
        for v, n in d["version"].items():
            lines.append(f"  version {v:<12} {n:>7}  {100.0 * n / total:6.2f}%")
        for s, n in d["status"].items():
            lines.append(f"  status  {s:<12} {n:>7}")
        for p, n in d["pod"].items():
            lines.append(f"  pod     {p:<40} {n:>7}")
        lat = d["latency_ms"]
        lines.append(
            f"  latency p50 {lat['p50']}ms p90 {lat['p90']}ms p99 {lat['p99']}ms max {lat['max']}ms"
        )
        return "\n".join(lines)


def run_load(
    url: str = "http://127.0.0.1:8000/",
    host_header: str | None = None,
    rate: float = 100.0,
    duration_s: float = 10.0,
    count: int | None = None,
    concurrency: int = 8,
    timeout_s: float = 5.0,
    stop: threading.Event | None = None,
) -> Report:
    """Send min(count, rate * duration) GETs at a steady rate; return the report.
    Setting `stop` ends the run early (the report covers what was sent)."""
    stop = stop or threading.Event()
    u = urlsplit(url)
    if u.scheme != "http" or not u.hostname:
        raise SystemExit(f"url {url!r}: want http://HOST:PORT/PATH")
    check_target(u.hostname)
    rate = min(max(rate, 0.1), MAX_RATE)
    duration_s = min(max(duration_s, 0.0), MAX_DURATION_S)
    total = int(rate * duration_s)
    if count is not None:
        total = min(total, count) if duration_s > 0 else count
    total = min(total, int(MAX_RATE * MAX_DURATION_S))
    port = u.port or 80
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    headers = {"Host": host_header} if host_header else {}

    report = Report()
    lock = threading.Lock()
    next_i = 0
    t0 = time.monotonic() + 0.05
    hard_deadline = t0 + duration_s + 2 * timeout_s + 5.0 if duration_s else t0 + MAX_DURATION_S

    def worker() -> None:
        nonlocal next_i
        conn: http.client.HTTPConnection | None = None
        while True:
            with lock:
                i = next_i
                next_i += 1
            if i >= total or stop.is_set():
                break
            due = t0 + i / rate
            now = time.monotonic()
            if now > hard_deadline:
                break
            if due > now and stop.wait(due - now):
                break
            if conn is None:
                conn = http.client.HTTPConnection(u.hostname or "", port, timeout=timeout_s)
            start = time.monotonic()
            key_status, version, pod = "", "?", "?"
            try:
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                key_status = str(resp.status)
                try:
                    doc = json.loads(body)
                    if isinstance(doc, dict):
                        version = str(doc.get("version", "?"))
                        pod = str(doc.get("pod", "?"))
                except ValueError:
                    pass
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                key_status = f"error:{type(e).__name__}"
                if conn is not None:
                    conn.close()
                conn = None
            ms = (time.monotonic() - start) * 1000.0
            with lock:
                report.sent += 1
                report.status[key_status] += 1
                report.version[version] += 1
                report.pod[pod] += 1
                report.version_status[f"{version} {key_status}"] += 1
                report.latencies_ms.append(ms)
                if key_status != "200":
                    at = start - t0
                    first, _ = report.not_ok_window.get(key_status, (at, at))
                    report.not_ok_window[key_status] = (min(first, at), at)
        if conn is not None:
            conn.close()

    threads = [
        threading.Thread(target=worker, name=f"load-{n}", daemon=True)
        for n in range(max(1, min(concurrency, 64)))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(0.0, hard_deadline - time.monotonic()) + 1.0)
    report.elapsed_s = time.monotonic() - t0
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8000/", help="default: the Gateway")
    ap.add_argument("--host", default=None, help="Host header (the HTTPRoute's hostname)")
    ap.add_argument("--rate", type=float, default=100.0, help=f"requests/s (<= {MAX_RATE:.0f})")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds (<= 600)")
    ap.add_argument("--count", type=int, default=None, help="stop after this many requests")
    ap.add_argument("--concurrency", type=int, default=8, help="connections (<= 64)")
    ap.add_argument("--timeout", type=float, default=5.0, help="per request, seconds")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args(argv)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        stop.set()  # SIGTERM/SIGINT: stop early, still print the report

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    rep = run_load(
        url=args.url,
        host_header=args.host,
        rate=args.rate,
        duration_s=args.duration,
        count=args.count,
        concurrency=args.concurrency,
        timeout_s=args.timeout,
        stop=stop,
    )
    print(json.dumps(rep.to_dict(), indent=2) if args.json else rep.text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
