"""The mannWhitney judge and the sequential test: time to a verdict, and false rollbacks.

    .venv/bin/python tests/bench/bench_judge.py [--runs 50] [--checks 10] [--seed 14]

No cluster, no Prometheus: a range source answers each range query with samples drawn here,
so what is timed is kanary's side of a check (queries built, samples judged, run scored).

- verdict: one check of 10 metrics over a 60 s window sampled every 1 s (60 samples per track
  and metric, 20 range queries), median and p95 of 50 checks, after a first check that also
  pays for importing scipy (timed on its own, in a fresh process).
- false rollbacks: ``--runs`` runs of ``--checks`` checks each, canary and stable drawn from the
  same distributions (10 metrics: 5 latency-like lognormal, 5 rate-like binomial); a run rolls
  back at failureLimit (2) consecutive Fail checks, as the engine counts them.
- sequential: the error-rate test after every request of a canary at exactly the max (1%),
  ``--runs`` x 20 runs of 2000 requests: how many are ever rolled back (the bound is
  1 - confidence = 2%); and requests to a verdict for a canary at 20% errors.

Numbers, not asserts.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from kanary.analysis import sequential  # noqa: E402
from kanary.analysis.check import run_check  # noqa: E402
from kanary.analysis.judgement import limit_reached, next_counters  # noqa: E402
from kanary.analysis.source import NoData, QueryResult, Samples, Value  # noqa: E402
from kanary.spec import AnalysisSpec  # noqa: E402
from kanary.status import AnalysisStatus  # noqa: E402

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
METRICS = 10


class DrawingSource:
    """Every range query gets fresh samples of its metric's distribution, the same for both
    tracks; the request count is plenty."""

    def __init__(self, rng: random.Random, samples: int) -> None:
        self.rng, self.samples = rng, samples

    def query(self, promql: str, at: datetime) -> QueryResult:
        return Value(10_000.0) if "canary" in promql else NoData()

    def query_by(self, promql: str, at: datetime, label: str) -> dict[str, float]:
        return {}

    def query_range(self, promql: str, start: datetime, end: datetime, step: float) -> Samples:
        index = int(promql.split("(m", 1)[1].split("_", 1)[0])  # the metric's number: "sum(m3_"
        if index % 2:
            values = [self.rng.lognormvariate(-2.3, 0.3) for _ in range(self.samples)]
        else:
            draws = range(self.samples)
            values = [sum(self.rng.random() < 0.01 for _ in range(200)) / 200 for _ in draws]
        return Samples(tuple(values))


def spec(window: str = "60s", step: str = "1s") -> AnalysisSpec:
    return AnalysisSpec.model_validate(
        {
            "judge": "mannWhitney",
            "window": window,
            "mannWhitney": {"step": step},
            "metrics": [
                {"name": f"m{i}", "query": f'sum(m{i}_x{{track="{{{{track}}}}"}})'}
                for i in range(METRICS)
            ],
        }
    )


def time_to_verdict(rng: random.Random, checks: int = 50) -> list[float]:
    s, src = spec(), DrawingSource(rng, 60)
    run_check(s, src, "bench", "gin", "c", "s", NOW)  # scipy imported here
    took = []
    for _ in range(checks):
        t0 = time.perf_counter()
        run_check(s, src, "bench", "gin", "c", "s", NOW)
        took.append(time.perf_counter() - t0)
    return took


def false_rollbacks(rng: random.Random, runs: int, checks: int) -> tuple[int, dict[str, int]]:
    s = spec(window="30s", step="2s")
    src = DrawingSource(rng, 15)
    rolled, verdicts = 0, {"Pass": 0, "Inconclusive": 0, "Fail": 0, "Error": 0}
    for _ in range(runs):
        counts = AnalysisStatus()
        for _ in range(checks):
            outcome = run_check(s, src, "bench", "gin", "c", "s", NOW)
            verdicts[outcome.verdict] += 1
            counts = next_counters(counts, outcome)
            if limit_reached(s, counts) == "rollback":
                rolled += 1
                break
    return rolled, verdicts


def sequential_at_the_max(rng: random.Random, runs: int, requests: int) -> int:
    s = AnalysisSpec.model_validate({"metrics": [{"name": "error-rate", "max": 0.01}]})
    rolled = 0
    for _ in range(runs):
        errors = 0
        for n in range(1, requests + 1):
            errors += rng.random() < 0.01
            if errors:
                out = sequential.judge(s, sequential.Counts(errors, n), NOW)
                if out is not None and out.rejects:
                    rolled += 1
                    break
    return rolled


def requests_to_catch(rng: random.Random, rate: float, runs: int) -> list[int]:
    s = AnalysisSpec.model_validate({"metrics": [{"name": "error-rate", "max": 0.01}]})
    needed = []
    for _ in range(runs):
        errors = 0
        for n in range(1, 10_000):
            errors += rng.random() < rate
            out = sequential.judge(s, sequential.Counts(errors, n), NOW) if errors else None
            if out is not None and out.rejects:
                needed.append(n)
                break
    return needed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--checks", type=int, default=10)
    ap.add_argument("--seed", type=int, default=14)
    args = ap.parse_args()
    rng = random.Random(args.seed)

    cold = subprocess.run(
        [
            sys.executable,
            "-c",
            "import time; t=time.perf_counter(); import scipy.stats; print(time.perf_counter()-t)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    print(f"import scipy.stats, fresh process: {float(cold.stdout):.2f} s")
    took = time_to_verdict(rng)
    p95 = statistics.quantiles(took, n=20)[-1]
    print(
        f"verdict, {METRICS} metrics x 60 samples x 2 tracks: median "
        f"{statistics.median(took) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms ({len(took)} checks)"
    )
    rolled, verdicts = false_rollbacks(rng, args.runs, args.checks)
    print(
        f"false rollbacks, identical canary and stable: {rolled} of {args.runs} runs "
        f"({args.checks} checks each, 15 samples per metric); check verdicts {verdicts}"
    )
    at_max = sequential_at_the_max(rng, args.runs * 20, 2000)
    print(
        f"sequential test, canary at exactly the 1% max, looked at after every request: "
        f"{at_max} of {args.runs * 20} runs of 2000 requests rolled back "
        f"({at_max / (args.runs * 20):.1%}; bound 2%)"
    )
    needed = requests_to_catch(rng, 0.2, args.runs)
    p95_needed = statistics.quantiles(needed, n=20)[-1]
    print(
        f"sequential test, canary at 20% errors: verdict after median "
        f"{statistics.median(needed):.0f} requests (p95 {p95_needed:.0f},"
        f" max {max(needed)}); at 4 canary requests/s that is "
        f"{statistics.median(needed) / 4:.1f} s of traffic"
    )


if __name__ == "__main__":
    main()
