"""End to end, issue 13: header-routed canaries, blue-green and the GatewayClass feature check,
with real traffic through Traefik's Gateway to the Gin service's real containers.

Each test keeps two streams of GETs flowing through the Gateway (e2e_fixtures.Traffic): plain
live requests, and requests carrying the header a step routes by. Every answer is kept with its
send time and the version that answered, so "only the canary", "only stable" and "zero failed
requests" are asserted over exact intervals. The user's HTTPRoute is compared with what it was
before the rollout as the API server stores it (its JSON, key order included).

    hack/cluster/exec.sh .venv/bin/python -m pytest -q tests/e2e/test_e2e_strategies.py
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kubernetes.client import ApiException

from tests.integration.conftest import apps, cluster, core, namespace, wait_until
from tests.integration.dataplane_fixtures import dataplane, record
from tests.integration.test_operator import GW

from .e2e_fixtures import (
    TRAFFIC_LAG_S,
    Sample,
    Scenario,
    TimedWeightRecorder,
    Traffic,
    analysis_spec,
    e2e_operator,
    failures,
    kwok_scenario,
    scenario,
    statuses,
    versions,
)
from .test_e2e_converge import _example, _new_version

# pytest fixtures, imported for the tests below
__all__ = [
    "apps",
    "cluster",
    "core",
    "dataplane",
    "e2e_operator",
    "kwok_scenario",
    "namespace",
    "scenario",
]

pytestmark = pytest.mark.e2e

CANARY_HEADER = {"X-Canary": "always"}
PREVIEW_HEADER = {"X-Preview": "1"}


def _match(headers: dict[str, str]) -> list[dict[str, Any]]:
    return [{"headerName": k, "headerValue": {"exact": v}} for k, v in headers.items()]


def _only(samples: list[Sample], version: str) -> None:
    assert samples, "no requests in this interval"
    assert statuses(samples) == {"200": len(samples)}, failures(samples)
    assert versions(samples) == {version: len(samples)}, versions(samples)


def _route(sc: Scenario) -> dict[str, Any]:
    route: dict[str, Any] = sc.kit.custom.get_namespaced_custom_object(
        GW[0], GW[1], sc.ns, GW[2], sc.name
    )
    return route


def _route_json(sc: Scenario) -> str:
    """The route's spec as stored, key order included."""
    return json.dumps(_route(sc)["spec"])


def _kanary_rules(sc: Scenario) -> list[dict[str, Any]]:
    rules = _route(sc)["spec"]["rules"]
    return [r for r in rules if r.get("name") == f"kanary-{sc.name}-header"]


def _wait_route_is(sc: Scenario, expected: str, why: str) -> None:
    wait_until(f"{why}: the route is the user's again", lambda: _route_json(sc) == expected, 30)


# ------------------------------------------------------------------------------ 1 ---
def test_header_canary_reaches_only_the_canary_and_leaves_the_users_route(
    scenario: Scenario,
) -> None:
    sc = scenario
    sc.start_v1(
        steps=[
            {"setHeaderRoute": {"match": _match(CANARY_HEADER)}},
            {"pause": {}},
            {"setWeight": 100},
        ],
        # as abortScaleDownDelaySeconds (start_v1): time for Traefik to apply the write that
        # removes the header rule before the old canary's pods stop (3s lost 78 header
        # requests to 503 once in CI)
        scaleDownDelaySeconds=10,
    )
    users = _route_json(sc)
    with Traffic(sc.host) as live, Traffic(sc.host, rate=40, headers=CANARY_HEADER) as flagged:
        t_serving = live.wait_only({"v1"})
        flagged.wait_only({"v1"})
        sc.set_version("v2")
        paused = sc.kit.wait_phase(sc.name, "Paused", timeout=120)
        t_header = flagged.wait_only({"v2"}, n=100)
        # while the header route is in force: the user's rules untouched (weights 100 / 0),
        # kanary's one rule appended
        [rule] = _kanary_rules(sc)
        assert rule["backendRefs"][0]["name"] == f"{sc.name}-canary", rule
        spec = _route(sc)["spec"]
        assert json.dumps({**spec, "rules": spec["rules"][:-1]}) == users
        assert "X-Canary: always -> canary" in paused["routing"], paused
        assert "header route X-Canary: always" in paused["message"], paused
        t_promote = time.monotonic()
        out = sc.kanary("promote", sc.name)
        assert out.returncode == 0, out.stderr
        sc.kit.wait_promoted(sc.name, sc.image("v2"), timeout=180)
        _wait_route_is(sc, users, "after promotion")
        t_promoted = live.wait_only({"v2"})

        # a second rollout, aborted while the header route is in force
        sc.set_version("v3")
        sc.kit.wait_phase(sc.name, "Paused", timeout=120)
        t_v3 = flagged.wait_only({"v3"}, n=50)
        assert len(_kanary_rules(sc)) == 1
        t_abort = time.monotonic()
        out = sc.kanary("abort", sc.name)
        assert out.returncode == 0, out.stderr
        sc.kit.wait_phase(sc.name, "RolledBack", timeout=60)
        _wait_route_is(sc, users, "after rollback")
        t_back = flagged.wait_only({"v2"}, n=50)
        t_end = time.monotonic()
    # without the header: stable only until the promotion, and through the whole second rollout
    _only(live.samples(t_serving, t_promote), "v1")
    _only(live.samples(t_promoted, t_end), "v2")
    # with it: the canary only while the header route is in force, stable again after rollback
    _only(flagged.samples(t_header, t_promote), "v2")
    _only(flagged.samples(t_v3, t_abort), "v3")
    _only(flagged.samples(t_back, t_end), "v2")
    marks = {"header": t_header, "promote": t_promote, "promoted": t_promoted, "v3": t_v3}
    marks.update(abort=t_abort, back=t_back)
    failed = [
        (stream, round(s.at - t_serving, 2))
        for stream, got in (("live", live), ("header", flagged))
        for s in got.samples(t_serving)
        if s.status != "200"
    ]
    assert not failed, (
        f"{len(failed)} failed: {failed[:3]}...{failed[-3:]}; "
        f"marks { ({k: round(v - t_serving, 2) for k, v in marks.items()}) }"
    )
    reasons = sc.reasons()
    assert reasons.count("Promoted") == 1 and reasons.count("RolledBack") == 1, reasons
    record(
        sc.dp,
        "e2e_header_canary_requests",
        {"live": len(live.samples(t_serving)), "header": len(flagged.samples(t_serving))},
    )
    in_force = flagged.samples(t_header, t_promote)
    record(
        sc.dp,
        "e2e_header_canary_v2_only_while_in_force",
        {"requests": len(in_force), "seconds": round(t_promote - t_header, 1)},
    )


# ------------------------------------------------------------------------------ 2 ---
def test_blue_green_example_preview_by_header_then_one_switch_without_a_failed_request(
    scenario: Scenario,
) -> None:
    """manifests/examples/rollout-blue-green.yaml and its route, applied unchanged."""
    sc = scenario
    kit = sc.kit
    route, rollout = _example("httproute-blue-green.yaml"), _example("rollout-blue-green.yaml")
    name = rollout["metadata"]["name"]
    kit.custom.create_namespaced_custom_object(GW[0], GW[1], sc.ns, GW[2], route)
    kit.custom.create_namespaced_custom_object("kanary.dev", "v1alpha1", sc.ns, "rollouts", rollout)
    kit.wait_phase(name, "Healthy", timeout=120)
    sc.name = name
    users = _route_json(sc)
    host = f"examples.{sc.ns}.test"  # the example route has no hostname: any Host reaches it
    with Traffic(host) as live, Traffic(host, rate=40, headers=PREVIEW_HEADER) as preview:
        t_serving = live.wait_only({"v1"}, timeout=90)
        with TimedWeightRecorder(kit, name) as rec:
            _set_example_version(sc, "v2")
            paused = kit.wait_phase(name, "Paused", timeout=180)
            t_preview = preview.wait_only({"v2"}, n=100)
            # the preview at full size beside the old version, no live traffic on it
            canary, stable = kit.deployment(f"{name}-canary"), kit.deployment(f"{name}-stable")
            assert canary is not None and canary.spec.replicas == 2
            assert stable is not None and stable.spec.replicas == 2
            assert (paused["strategy"], paused["step"]) == ("blueGreen", "2/4"), paused
            assert "X-Preview: 1 -> canary" in paused["routing"], paused
            assert kit.weights(name) == (100, 0)
            t_promote = time.monotonic()
            out = sc.kanary("promote", name)
            assert out.returncode == 0, out.stderr
            t_green = live.wait_only({"v2"}, n=100)
            final = kit.wait_promoted(name, "kanary/gin-demo:v2", timeout=300)
            _wait_route_is(sc, users, "after promotion")
            t_end = live.wait_only({"v2"}, n=50)
    everything = live.samples(t_serving, t_end) + preview.samples(t_serving, t_end)

    # the route: one switch to green, then back to the stable Deployment, now green
    assert rec.canary() == [0, 100, 0], rec.seen
    t_switch = rec.first_time(100)
    _only(live.samples(t_serving, min(t_promote, t_switch - 1.0)), "v1")  # blue until the switch
    _only(live.samples(t_switch + TRAFFIC_LAG_S, t_end), "v2")  # then green only
    _only(preview.samples(t_preview, t_end), "v2")
    assert t_green - t_switch < 10, (t_green, t_switch)
    assert not failures(everything), dict(failures(everything))
    assert final["history"][-1]["outcome"] == "Promoted"
    assert not [r for t, r, _ in sc.events() if t == "Warning"], sc.events()
    record(sc.dp, "e2e_blue_green_requests", dict(statuses(everything)))
    record(sc.dp, "e2e_blue_green_switch_to_green_only_seconds", round(t_green - t_switch, 2))


def _set_example_version(sc: Scenario, tag: str) -> None:
    for _ in range(5):
        body = sc.kit.rollout(sc.name)
        _new_version(body, tag)
        try:
            sc.kit.custom.replace_namespaced_custom_object(
                "kanary.dev", "v1alpha1", sc.ns, "rollouts", sc.name, body
            )
            return
        except ApiException as e:
            if e.status != 409:
                raise
    raise AssertionError("5 conflicts in a row writing the template")


# ------------------------------------------------------------------------------ 3 ---
def test_blue_green_bad_green_switched_back_by_post_promotion_analysis_in_one_write(
    scenario: Scenario,
) -> None:
    sc = scenario
    # no preview header: the green gets no request before the switch, so only the analysis
    # after it can catch it
    sc.start_v1(blueGreen={}, scaleDownDelaySeconds=60, analysis=analysis_spec())
    stable_before = sc.kit.deployment(f"{sc.name}-stable")
    assert stable_before is not None and stable_before.metadata is not None
    with Traffic(sc.host) as live:
        t_serving = live.wait_only({"v1"})
        with TimedWeightRecorder(sc.kit, sc.name) as rec:
            sc.set_version("v2", env={"ERROR_RATE": "0.3"})
            sc.kit.wait_phase(sc.name, "Paused", timeout=180)
            _only(live.samples(t_serving), "v1")
            out = sc.kanary("promote", sc.name)
            assert out.returncode == 0, out.stderr
            status = sc.kit.wait_phase(sc.name, "RolledBack", timeout=120)
            t_blue = live.wait_only({"v1"}, n=100)
    everything = live.samples(t_serving)

    assert rec.canary() == [0, 100, 0], rec.seen  # the switch, and one write back
    rolled = sc.condition(status, "RolledBack")
    assert rolled["reason"] == "AnalysisFailed" and "error-rate" in rolled["message"], rolled
    assert "step 4/4" in rolled["message"] or "step 3/4" in rolled["message"], rolled
    # blue was never touched: same generation, still v1, still full size
    stable_after = sc.kit.deployment(f"{sc.name}-stable")
    assert stable_after is not None and stable_after.metadata is not None
    assert stable_after.metadata.generation == stable_before.metadata.generation
    assert sc.stable_image() == sc.image("v1") and stable_after.spec.replicas == 2
    assert set(failures(everything)) <= {"v2 500"}, failures(everything)
    _only(live.samples(t_blue), "v1")
    t_back = rec.first_time(0, after=rec.first_time(100))
    record(
        sc.dp, "e2e_blue_green_bad_green_seconds_on_green", round(t_back - rec.first_time(100), 2)
    )


# ------------------------------------------------------------------------------ 4 ---
def test_a_mirror_step_is_refused_on_traefiks_gateway_class_naming_the_feature(
    kwok_scenario: Scenario,
) -> None:
    sc = kwok_scenario
    sc.start_v1(steps=[{"setWeight": 50}, {"setWeight": 100}])
    users = _route_json(sc)
    with Traffic(sc.host) as live:
        t_serving = live.wait_only({"v1"})
        for _ in range(5):
            body = sc.kit.rollout(sc.name)
            body["spec"]["strategy"]["steps"] = [
                {"setWeight": 10},
                {"setMirror": {"percent": 50}},
                {"setWeight": 100},
            ]
            body["spec"]["template"]["spec"]["containers"][0]["image"] = sc.image("v2")
            try:
                sc.kit.custom.replace_namespaced_custom_object(
                    "kanary.dev", "v1alpha1", sc.ns, "rollouts", sc.name, body
                )
                break
            except Exception as e:  # a conflict with the operator's status write: read again
                if "409" not in str(e):
                    raise
        status = sc.kit.wait_phase(sc.name, "Invalid", timeout=60)
        time.sleep(5)  # nothing is written in the next ticks either
        t_end = time.monotonic()
    message = status["message"]
    assert "spec.strategy.steps[1].setMirror needs HTTPRouteRequestMirror" in message, message
    assert "(traefik.io/gateway-controller) does not list" in message, message
    assert _route_json(sc) == users
    assert sc.kit.deployment(f"{sc.name}-canary") is None or (
        sc.kit.deployment(f"{sc.name}-canary").spec.replicas == 0  # type: ignore[union-attr]
    )
    _only(live.samples(t_serving, t_end), "v1")
    assert any(r == "Invalid" and "HTTPRouteRequestMirror" in m for _, r, m in sc.events())
