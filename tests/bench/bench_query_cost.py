"""What the analysis costs Prometheus and the operator per Rollout: one query of each kind.

    .venv/bin/python tests/bench/bench_query_cost.py [--seconds 40] [--repeat 100]

Real processes on 127.0.0.1, no cluster: a stable and a canary Gin process under steady load
(ERROR_RATE=0.05 on the canary), scraped every second by a real Prometheus. After
``--seconds`` of data it times, end to end through prometheus-api-client:

- the sequential test's counts query (one instant query, the one sent every tick per Rollout
  in analysis), then sequential.judge;
- a threshold check (error-rate and latency-p99 with a stable comparison: 4 instant queries);
- a mannWhitney check (latency-p50 and error-rate over 30 s, a sample every 2 s: 4 range
  queries and the request count).

Median and p95 of ``--repeat`` runs each. Numbers, not asserts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.integration.analysis_fixtures import (  # noqa: E402
    Gin,
    PrometheusServer,
    background_load,
    scrape_config,
)

from kanary.analysis.check import run_check, run_sequential  # noqa: E402
from kanary.analysis.metrics_source import APP  # noqa: E402
from kanary.analysis.source import PrometheusSource  # noqa: E402
from kanary.spec import RolloutSpec  # noqa: E402

NS, ROLLOUT = "bench", "gin"


def rollout(analysis: dict[str, object]) -> RolloutSpec:
    return RolloutSpec.model_validate(
        {
            "template": {
                "metadata": {"labels": {"app": "x"}},
                "spec": {"containers": [{"name": "a", "image": "i"}]},
            },
            "strategy": {"steps": [{"setWeight": 5}], "analysis": analysis},
        }
    )


def timed(fn: Callable[[], object], repeat: int) -> str:
    took = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        took.append((time.perf_counter() - t0) * 1000)
    p95 = statistics.quantiles(took, n=20)[-1]
    return f"median {statistics.median(took):.1f} ms, p95 {p95:.1f} ms ({repeat} runs)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--repeat", type=int, default=100)
    args = ap.parse_args()
    threshold = rollout(
        {
            "window": "30s",
            "minRequests": 10,
            "metrics": [
                {"name": "error-rate", "max": 0.01, "maxIncrease": 0.5},
                {"name": "latency-p99", "max": 1.0, "maxRatio": 10},
            ],
        }
    )
    judged = rollout(
        {
            "window": "30s",
            "judge": "mannWhitney",
            "minRequests": 10,
            "metrics": [{"name": "latency-p50"}, {"name": "error-rate"}],
        }
    )
    with tempfile.TemporaryDirectory(prefix="kanary-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        gins = [
            Gin(
                f"{ROLLOUT}-{track}",
                {"namespace": NS, "rollout": ROLLOUT, "track": track, "revision": rev},
                {"ERROR_RATE": rate, "LATENCY": "5ms+-4ms"},
                tmp / f"{track}.log",
            )
            for track, rev, rate in (("stable", "s1", "0"), ("canary", "c1", "0.05"))
        ]
        prom = PrometheusServer(tmp / "prometheus", scrape_config(gins, "1s"))
        try:
            for g in gins:
                g.start()
            prom.start()
            prom.wait_targets_up(2)
            started = datetime.now(UTC)
            budget = args.seconds + 3 * args.repeat + 60
            with (
                PrometheusSource(prom.url, 2.0) as source,
                background_load(gins[0].address, seconds=budget, rate=40),
                background_load(gins[1].address, seconds=budget, rate=10),
            ):
                time.sleep(args.seconds)

                def now() -> datetime:
                    return datetime.now(UTC) - timedelta(seconds=1)

                kinds: list[tuple[str, Callable[[], Any], Callable[[Any], str]]] = [
                    (
                        "sequential counts query + judge",
                        lambda: run_sequential(
                            threshold, source, NS, ROLLOUT, "c1", APP, started, now()
                        ),
                        lambda seq: seq.reason if seq else "no verdict",
                    ),
                    (
                        "threshold check (4 instant queries)",
                        lambda: run_check(threshold, source, NS, ROLLOUT, "c1", "s1", now()),
                        lambda out: f"{out.verdict}: {out.summary}",
                    ),
                    (
                        "mannWhitney check (1 instant + 4 range queries)",
                        lambda: run_check(judged, source, NS, ROLLOUT, "c1", "s1", now()),
                        lambda out: f"{out.verdict}: {out.summary}",
                    ),
                ]
                for label, run, shown in kinds:
                    print(f"{label}: {shown(run())}")
                    print(f"{label}: {timed(run, args.repeat)}")
        finally:
            prom.stop()
            for g in gins:
                g.stop()


if __name__ == "__main__":
    main()
