"""Detection latency: from the moment a canary starts failing to the judgement's verdict.

    .venv/bin/python tests/bench/bench_detection.py [--runs 5] [--window 10s] [--interval 5]

Real processes on 127.0.0.1, no cluster: Prometheus (scrape interval 1s) scrapes a stable and
a canary Gin process, both under steady load. An analysis loop runs ``run_check`` every
``--interval`` seconds, as the operator's timer does. Each run restarts the canary with
ERROR_RATE=0.2 at a random phase of that loop (T0 = the failing process answers /readyz),
then records when:

- scraped:   Prometheus has scraped the new process (its process_start_time_seconds);
- visible:   the windowed error rate, asked every 100ms, first exceeds the bound (5%);
- fail:      the first analysis check judged Fail;
- limit:     limit_reached() says rollback (failureLimit consecutive failures).

Numbers, not asserts. The time to weight 0 adds the operator's route write after ``limit``;
that needs the full operator and data plane, so it is not measured here.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.integration.analysis_fixtures import (  # noqa: E402
    Gin,
    PrometheusServer,
    background_load,
    scrape_config,
    wait_until,
)

from kanary.analysis.builtin import error_rate_query  # noqa: E402
from kanary.analysis.check import run_check  # noqa: E402
from kanary.analysis.judgement import limit_reached, next_counters  # noqa: E402
from kanary.analysis.source import PrometheusSource, Value  # noqa: E402
from kanary.analysis.templating import Scope  # noqa: E402
from kanary.durations import parse_duration  # noqa: E402
from kanary.spec import AnalysisSpec  # noqa: E402
from kanary.status import AnalysisStatus  # noqa: E402

NS, ROLLOUT, BOUND = "bench", "gin", 0.05


@dataclass
class Checker:
    """The operator's analysis timer: a check every interval, counters as the engine keeps them."""

    spec: AnalysisSpec
    source: PrometheusSource
    interval: float
    counters: AnalysisStatus = field(default_factory=AnalysisStatus)
    log: list[tuple[float, str, str | None, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, deadline: float) -> None:
        next_at = time.time()
        while not self.stop.is_set() and time.time() < deadline:
            started = time.time()
            outcome = run_check(
                self.spec,
                self.source,
                NS,
                ROLLOUT,
                "c1",
                "s1",
                datetime.fromtimestamp(started, UTC),
            )
            took = time.time() - started
            with self.lock:
                self.counters = next_counters(self.counters, outcome)
                limit = limit_reached(self.spec, self.counters)
                self.log.append((started, outcome.verdict, limit, took))
            next_at += self.interval
            self.stop.wait(max(0.0, next_at - time.time()))

    def first_after(self, t0: float, *, verdict: str | None = None, limit: bool = False) -> Any:
        with self.lock:
            for at, v, lim, _ in self.log:
                if at >= t0 and ((verdict and v == verdict) or (limit and lim == "rollback")):
                    return at
        return None

    def reset(self) -> None:
        with self.lock:
            self.counters = AnalysisStatus()


def error_rate_now(source: PrometheusSource, window: float) -> float | None:
    got = source.query(
        error_rate_query(Scope(NS, ROLLOUT, "canary", "c1", window)), datetime.now(UTC)
    )
    return got.value if isinstance(got, Value) else None


def scraped_since(prom: PrometheusServer, pod: str, t0: float) -> bool:
    data = prom.api(f'/api/v1/query?query=process_start_time_seconds{{pod="{pod}"}}')
    return bool(data["result"]) and float(data["result"][0]["value"][1]) >= t0 - 1


def one_run(
    canary: Gin,
    prom: PrometheusServer,
    checker: Checker,
    source: PrometheusSource,
    window: float,
    interval: float,
) -> dict[str, float | None]:
    # a clean window: the healthy canary passes before it turns bad
    canary.restart(ERROR_RATE="0")
    time.sleep(window + 2)
    checker.reset()
    time.sleep(random.uniform(0, interval))  # a random phase of the check loop
    canary.restart(ERROR_RATE="0.2")
    t0 = time.time()
    scraped = wait_until(
        "scrape of the new canary",
        lambda: scraped_since(prom, canary.name, t0) and time.time(),
        10,
        0.05,
    )
    visible = wait_until(
        "error rate above the bound",
        lambda: (r := error_rate_now(source, window)) is not None and r > BOUND and time.time(),
        window + 10,
        0.1,
    )
    limit = wait_until(
        "failure limit", lambda: checker.first_after(t0, limit=True), window + 6 * interval, 0.1
    )
    fail = checker.first_after(t0, verdict="Fail")
    return {
        "scraped": scraped - t0,
        "visible": visible - t0,
        "fail": (fail - t0) if fail else None,
        "limit": limit - t0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--window", default="10s")
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--failure-limit", type=int, default=2)
    ap.add_argument("--rate", type=float, default=100.0, help="requests/s to each process")
    args = ap.parse_args(argv)
    runs = max(1, min(args.runs, 20))
    window = parse_duration(args.window)
    spec = AnalysisSpec.model_validate(
        {
            "prometheus": {"url": "http://127.0.0.1:9090", "timeout": "2s"},
            "window": args.window,
            "interval": f"{args.interval:g}s",
            "minRequests": 50,
            "failureLimit": args.failure_limit,
            "metrics": [{"name": "error-rate", "max": BOUND}, {"name": "latency-p99", "max": 0.5}],
        }
    )
    budget = runs * (2 * window + 8 * args.interval + 10) + 60
    with tempfile.TemporaryDirectory(prefix="kanary-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        gins = [
            Gin(
                f"{ROLLOUT}-{track}",
                {"namespace": NS, "rollout": ROLLOUT, "track": track, "revision": rev},
                {"ERROR_RATE": "0"},
                tmp / f"{track}.log",
            )
            for track, rev in (("stable", "s1"), ("canary", "c1"))
        ]
        prom = PrometheusServer(tmp / "prometheus", scrape_config(gins, "1s"))
        results: list[dict[str, float | None]] = []
        try:
            for g in gins:
                g.start()
            prom.start()
            prom.wait_targets_up(2)
            with (
                PrometheusSource(prom.url, 2.0) as source,
                background_load(gins[0].address, seconds=budget, rate=args.rate),
                background_load(gins[1].address, seconds=budget, rate=args.rate),
            ):
                checker = Checker(spec, source, args.interval)
                loop = threading.Thread(
                    target=checker.run, args=(time.time() + budget,), daemon=True
                )
                loop.start()
                for i in range(runs):
                    r = one_run(gins[1], prom, checker, source, window, args.interval)
                    results.append(r)
                    print(
                        f"run {i + 1}: "
                        + ", ".join(
                            f"{k} {v:.2f}s" if v is not None else f"{k} -" for k, v in r.items()
                        ),
                        flush=True,
                    )
                checker.stop.set()
                loop.join(timeout=30)
                took = [t for _, _, _, t in checker.log]
        finally:
            prom.stop()
            for g in gins:
                g.stop()
    print(
        f"\nwindow {args.window}, interval {args.interval:g}s, scrape 1s, failureLimit "
        f"{args.failure_limit}, {args.rate:g} req/s per process, {runs} runs (seconds after T0):"
    )
    for key in ("scraped", "visible", "fail", "limit"):
        values = [r[key] for r in results if r[key] is not None]
        if values:
            print(
                f"  {key:8} median {statistics.median(values):5.2f}  min {min(values):5.2f}"
                f"  max {max(values):5.2f}"
            )
    print(
        f"  one check (all queries) median {statistics.median(took) * 1000:.1f}ms, "
        f"max {max(took) * 1000:.1f}ms over {len(took)} checks"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
