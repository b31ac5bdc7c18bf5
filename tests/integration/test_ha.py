"""Two operator processes, one Lease: the leader is killed at five random points of a rollout
(SIGKILL), or stopped for longer than its Lease (SIGSTOP, then SIGCONT).

Both processes run through tests/bench/bench_operator.py's wrapper, which logs every API
request they make; the writes of each process are counted from those logs. Timings are shorter
than the defaults (lease 8 s, renew deadline 5 s, retry 1 s) so five failovers fit in minutes;
the rules they check are the same.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Cluster, wait_until
from tests.integration.operator_fixtures import (
    OperatorProcess,
    install_operator_manifests,
    service_account_kubeconfig,
    stop_shared_operator,
)
from tests.integration.rollout_objects import rollout_body
from tests.integration.test_operator import Kit, WeightRecorder

LEASE, RENEW, RETRY, TICK = 8.0, 5.0, 1.0, 1.0
TIMINGS = (
    f"--lease-duration={LEASE:g}",
    f"--lease-renew-deadline={RENEW:g}",
    f"--lease-retry-period={RETRY:g}",
)
WRITES = ("POST", "PUT", "PATCH", "DELETE")


class Pair:
    def __init__(self, cluster: Cluster, workdir: Path) -> None:
        kubeconfig = service_account_kubeconfig(cluster, workdir / "kubeconfig")
        self.replicas = [
            OperatorProcess(
                kubeconfig=kubeconfig,
                log_path=workdir / f"{name}.log",
                identity=name,
                liveness_port=18580 + 100 * i,
                metrics_port=18581 + 100 * i,
                extra_args=TIMINGS,
                requests_log=workdir / f"{name}.requests.jsonl",
            )
            for i, name in enumerate(("replica-a", "replica-b"))
        ]

    def leader(self, timeout: float = 3 * LEASE) -> OperatorProcess:
        def one() -> OperatorProcess | None:
            leading = [r for r in self.replicas if r.leads()]
            assert len(leading) <= 1, [r.identity for r in leading]
            return leading[0] if leading else None

        return wait_until("one leader", one, timeout=timeout)

    def other(self, replica: OperatorProcess) -> OperatorProcess:
        return next(r for r in self.replicas if r is not replica)

    def writes(self) -> list[dict[str, Any]]:
        """Every API write that succeeded, of both processes, with who made it."""
        out = []
        for r in self.replicas:
            assert r.requests_log is not None
            for line in r.requests_log.read_text().splitlines():
                rec = json.loads(line)
                if rec.get("type") != "request" or rec.get("method") not in WRITES:
                    continue
                if rec.get("status") is not None and int(rec["status"]) < 400:
                    out.append({**rec, "identity": r.identity})
        return sorted(out, key=lambda rec: float(rec["t"]))


@pytest.fixture
def pair(cluster: Cluster, tmp_path: Path) -> Iterator[Pair]:
    stop_shared_operator()
    install_operator_manifests(cluster)
    p = Pair(cluster, tmp_path)
    for r in p.replicas:
        r.start()
    try:
        yield p
    finally:
        for r in p.replicas:
            r.kill(signal.SIGTERM)  # releases the Lease for the next test's operator
        for r in p.replicas:
            print(f"\n--- {r.identity} log tail ---\n{r.tail(15)}")


def seconds_with_two_writers(writes: list[dict[str, Any]]) -> dict[int, set[str]]:
    by_second: dict[int, set[str]] = {}
    for w in writes:
        by_second.setdefault(int(float(w["t"])), set()).add(w["identity"])
    return {s: ids for s, ids in by_second.items() if len(ids) > 1}


STEPS = [
    step
    for w in (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90)
    for step in ({"setWeight": w}, {"pause": {"duration": "3s"}})
] + [{"setWeight": 100}]


def test_leader_killed_five_times_the_standby_takes_over_and_no_step_repeats(
    cluster: Cluster, namespace: str, pair: Pair
) -> None:
    kit = Kit(cluster, namespace)
    rng = random.Random()
    kit.create_route("ha")
    kit.create(rollout_body("ha", "kanary/gin-demo:v1", STEPS))
    kit.wait_phase("ha", "Healthy")
    takeovers: list[float] = []
    with WeightRecorder(kit, "ha") as rec:
        kit.set_image("ha", "kanary/gin-demo:v2")
        wait_until("weight 5", lambda: kit.weights("ha")[1] == 5, timeout=60)
        for _ in range(5):
            time.sleep(rng.uniform(0.2, 3.0))  # a random point of the rollout
            leader = pair.leader()
            standby = pair.other(leader)
            leader.kill(signal.SIGKILL)
            killed = time.monotonic()
            wait_until("the standby leads", standby.leads, timeout=3 * LEASE, interval=0.1)
            takeovers.append(time.monotonic() - killed)
            assert kit.status("ha").get("phase") != "Healthy", "the rollout ended too soon"
            leader.start()  # back, as the standby
        kit.wait_promoted("ha", "kanary/gin-demo:v2", timeout=240)
    print(f"\ntakeover after SIGKILL (s): {[round(t, 1) for t in takeovers]}")
    # the standby's clock starts when it reads the last renewal (up to one retry late), and it
    # notices the expiry at its next round (one more retry); then one tick
    assert max(takeovers) <= LEASE + 2 * RETRY + TICK, takeovers
    weights = [w for w in (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 100)]
    assert rec.canary() == [0, *weights, 0], rec.seen
    step_events = [
        (e.reason, e.message.split(":")[0])
        for e in kit.events("ha")
        if e.reason in ("Step", "WeightSet")
    ]
    assert len(step_events) == len(set(step_events)), step_events
    both = seconds_with_two_writers(pair.writes())
    assert not both, f"two processes wrote in the same second: {both}"


def test_a_leader_stopped_longer_than_its_lease_never_writes_after_it_lost_it(
    cluster: Cluster, namespace: str, pair: Pair
) -> None:
    kit = Kit(cluster, namespace)
    kit.create_route("stop")
    kit.create(rollout_body("stop", "kanary/gin-demo:v1", STEPS))
    kit.wait_phase("stop", "Healthy")
    kit.set_image("stop", "kanary/gin-demo:v2")
    wait_until("weight 10", lambda: kit.weights("stop")[1] == 10, timeout=60)
    leader = pair.leader()
    standby = pair.other(leader)
    assert leader.proc is not None
    leader.proc.send_signal(signal.SIGSTOP)
    stopped = time.time()
    try:
        wait_until("the standby leads", standby.leads, timeout=3 * LEASE, interval=0.1)
        time.sleep(2)  # longer than the Lease in all
    finally:
        leader.proc.send_signal(signal.SIGCONT)
    resumed = time.time()
    kit.wait_promoted("stop", "kanary/gin-demo:v2", timeout=240)
    assert not leader.leads()
    writes = pair.writes()
    took_over = min(
        float(w["t"]) for w in writes if w["identity"] == standby.identity and w["t"] > stopped
    )
    late = [w for w in writes if w["identity"] == leader.identity and float(w["t"]) >= took_over]
    assert not late, f"the stopped leader wrote after it lost the Lease: {late[:5]}"
    # and it had stopped writing before the standby could take over: nothing from it between
    # its renew deadline and SIGCONT either
    fenced = [
        w
        for w in writes
        if w["identity"] == leader.identity and stopped + RENEW <= float(w["t"]) <= resumed
    ]
    assert not fenced, fenced
    assert not seconds_with_two_writers(writes)
