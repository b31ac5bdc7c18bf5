"""End to end, real traffic: first failing request to weight 0, and healthy canaries kept.

    hack/cluster/exec.sh .venv/bin/python -m pytest -q -s -p no:cacheprovider \\
        tests/bench/bench_e2e_detection.py     # BAD_RUNS=5 HEALTHY_RUNS=20 by default

The e2e scenario of issue 14 on the local cluster (real node, Traefik, Prometheus scraping
every second, the operator as in tests/e2e): 80 requests/s through the Gateway, so 4 canary
requests/s at the first step (5%); analysis as tests/e2e sets it (error-rate max 1%, the
sequential test at its defaults, checks every 3 s over 12 s, 20 requests at least).

- bad: v2 with ERROR_RATE=0.2. From the send time of the first request v2 answered 500 to
  the first poll (every 50 ms) that saw the route at weight 0.
- healthy: v2 without errors, the whole rollout (5, 25, 50, 100%); rolled back or not.

Prints each run and the median; numbers, not asserts (a run that never finishes fails).
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterator
from typing import Any

import pytest
from tests.e2e.e2e_fixtures import (
    Scenario,
    TimedWeightRecorder,
    Traffic,
    e2e_operator,
    scenario,
)
from tests.integration.conftest import apps, cluster, core, namespace
from tests.integration.dataplane_fixtures import dataplane, record

__all__ = ["apps", "cluster", "core", "dataplane", "e2e_operator", "namespace", "scenario"]

RESULTS: dict[str, list[Any]] = {"bad": [], "healthy": []}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for kind, default in (("bad", 5), ("healthy", 20)):
        if f"{kind}_run" in metafunc.fixturenames:
            runs = int(os.environ.get(f"{kind.upper()}_RUNS", default))
            metafunc.parametrize(f"{kind}_run", range(runs))


@pytest.fixture(scope="module", autouse=True)
def summary() -> Iterator[None]:
    yield
    bad = [r for r in RESULTS["bad"] if r is not None]
    if bad:
        print(
            f"\n[bench] first failing request -> weight 0: median {statistics.median(bad):.2f} s "
            f"over {len(bad)} runs: {[round(x, 2) for x in bad]}"
        )
    if RESULTS["healthy"]:
        kept = RESULTS["healthy"].count("Healthy")
        print(f"[bench] healthy canaries promoted: {kept} of {len(RESULTS['healthy'])}")


def test_bad_canary(scenario: Scenario, bad_run: int) -> None:
    sc = scenario
    sc.start_v1()
    with Traffic(sc.host) as traffic:
        traffic.wait_only({"v1"})
        with TimedWeightRecorder(sc.kit, sc.name) as rec:
            sc.set_version("v2", env={"ERROR_RATE": "0.2"})
            status = sc.kit.wait_phase(sc.name, "RolledBack", timeout=120)
    failing = [s.at for s in traffic.samples() if s.version == "v2" and s.status == "500"]
    t_zero = rec.first_time(0, after=rec.first_time(5))
    took = t_zero - min(failing)
    RESULTS["bad"].append(took)
    record(sc.dp, f"bench_first_failure_to_weight_0_run_{bad_run}", round(took, 2))
    print(f"\n[bench] bad run {bad_run}: {took:.2f} s; {status['message']}")


def test_healthy_canary(scenario: Scenario, healthy_run: int) -> None:
    sc = scenario
    sc.start_v1()
    with Traffic(sc.host):
        sc.set_version("v2")
        phase = "Healthy"
        try:
            sc.kit.wait_promoted(sc.name, sc.image("v2"), timeout=240)
        except AssertionError:
            phase = str(sc.kit.status(sc.name).get("phase"))
    RESULTS["healthy"].append(phase)
    print(f"\n[bench] healthy run {healthy_run}: {phase}")
