"""setHeaderRoute (issue 13): the rule kanary adds to the user's HTTPRoute, built purely
(routers/header_rules.py) and driven by the engine through reconcile against FakeKube's route,
which applies the JSON patches for real (jsonpatch) and bumps resourceVersion."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from tests.unit.fake_kube import FakeKube, Harness
from tests.unit.test_reconcile import NAME, NS, httproute, new_version, rollout

from kanary.routers import header_rules
from kanary.spec import HeaderRoute

CANARY_HEADER = {"headerName": "X-Canary", "headerValue": {"exact": "always"}}
STEPS = [
    {"setHeaderRoute": {"match": [CANARY_HEADER]}},
    {"pause": {}},
    {"setWeight": 50},
    {"pause": {}},
    {"setWeight": 100},
]


def header(*match: dict[str, Any]) -> HeaderRoute:
    return HeaderRoute.model_validate({"match": list(match)})


def user_route() -> dict[str, Any]:
    """A user's route with matches, a filter and timeouts on the rule kanary weighs."""
    route = httproute()
    rule = route["spec"]["rules"][0]
    rule["matches"] = [
        {"path": {"type": "PathPrefix", "value": "/api"}, "method": "GET"},
        {"path": {"type": "Exact", "value": "/"}, "headers": [{"name": "X-Tier", "value": "gold"}]},
    ]
    rule["filters"] = [
        {
            "type": "RequestHeaderModifier",
            "requestHeaderModifier": {"add": [{"name": "X-Via", "value": "edge"}]},
        }
    ]
    rule["timeouts"] = {"request": "10s"}
    route["spec"]["rules"].append(
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/static"}}],
            "backendRefs": [{"name": "files", "port": 80}],
        }
    )
    return route


# ---- the rule, pure ----------------------------------------------------------------------------


def test_the_rule_copies_the_users_rule_adds_the_headers_and_points_at_the_canary() -> None:
    route = user_route()
    rule = header_rules.header_rule(route, 0, 1, NAME, header(CANARY_HEADER))
    assert isinstance(rule, dict)
    user = route["spec"]["rules"][0]
    assert rule["name"] == "kanary-demo-header"
    assert rule["filters"] == user["filters"] and rule["timeouts"] == user["timeouts"]
    assert rule["backendRefs"] == [{"name": "demo-canary", "port": 80, "weight": 1}]
    added = {"type": "Exact", "name": "X-Canary", "value": "always"}
    assert rule["matches"] == [
        {**user["matches"][0], "headers": [added]},
        {**user["matches"][1], "headers": [{"name": "X-Tier", "value": "gold"}, added]},
    ]
    assert route == user_route()  # the input is not changed


def test_a_rule_without_matches_gets_the_default_match_written_out() -> None:
    rule = header_rules.header_rule(httproute(), 0, 1, NAME, header(CANARY_HEADER))
    assert isinstance(rule, dict)
    assert rule["matches"][0]["path"] == {"type": "PathPrefix", "value": "/"}


@pytest.mark.parametrize(
    ("match", "value", "yes", "no"),
    [
        ({"headerName": "X-V", "headerValue": {"prefix": "1.2+"}}, "^1\\.2\\+", "1.2+rc", "1.22"),
        ({"cookie": {"name": "beta", "value": "on"}}, None, "a=b; beta=on", "beta=onx"),
        ({"headerName": "X-V", "headerValue": {"regex": "^b.t"}}, "^b.t", "bat", "abat"),
    ],
)
def test_prefix_and_cookie_are_anchored_regexes(
    match: dict[str, Any], value: str | None, yes: str, no: str
) -> None:
    written = header_rules.gateway_header(header(match).match[0])
    assert written["type"] == "RegularExpression"
    if value is not None:
        assert written["value"] == value
    assert re.search(written["value"], yes) and not re.search(written["value"], no)


def test_a_header_the_users_match_already_has_is_refused_by_name() -> None:
    route = user_route()
    tier = {"headerName": "x-tier", "headerValue": {"exact": "silver"}}
    problem = header_rules.header_rule(route, 0, 1, NAME, header(tier))
    assert isinstance(problem, str) and "matches[1]" in problem and "x-tier" in problem


def test_a_route_with_sixteen_rules_has_no_room() -> None:
    route = httproute()
    route["spec"]["rules"] += [{"backendRefs": [{"name": f"s{i}", "port": 80}]} for i in range(15)]
    problem = header_rules.header_rule(route, 0, 1, NAME, header(CANARY_HEADER))
    assert isinstance(problem, str) and "16" in problem


# ---- the engine and the route ------------------------------------------------------------------


def started(steps: list[dict[str, Any]] | None = None, **strategy: Any) -> Harness:
    kube = FakeKube()
    kube.put(rollout(steps or STEPS, **strategy))
    kube.put(user_route())
    h = Harness(kube)
    h.run_until(lambda s: s.phase == "Healthy")
    new_version(h)
    return h


def rules(h: Harness) -> list[dict[str, Any]]:
    route = h.kube.get("HTTPRoute", NS, "demo")
    assert route is not None
    return list(route["spec"]["rules"])


def users_rules(h: Harness) -> list[dict[str, Any]]:
    return [r for r in rules(h) if r.get("name") != "kanary-demo-header"]


def canary_rule(h: Harness) -> dict[str, Any] | None:
    return next((r for r in rules(h) if r.get("name") == "kanary-demo-header"), None)


def test_a_header_step_gives_the_canary_one_pod_then_the_rule_and_leaves_the_users_rules() -> None:
    h = started()
    before = copy.deepcopy(users_rules(h))
    h.run_until(lambda s: s.phase == "Paused")
    canary = h.kube.get("Deployment", NS, "demo-canary")
    assert canary is not None and canary["spec"]["replicas"] == 1
    assert canary_rule(h) is not None
    assert users_rules(h) == before  # weights included: still 100 / 0
    assert h.status.header_route == header(CANARY_HEADER)
    assert h.status.canary_weight == 0
    assert "header route X-Canary: always" in h.status.message
    assert any("requests with X-Canary: always go to the canary" in m for m in h.messages())


def test_the_rule_is_gone_after_promotion_and_the_route_is_the_users_again() -> None:
    h = started()
    before = copy.deepcopy(users_rules(h))
    h.run_until(lambda s: s.phase == "Paused")
    for _ in range(2):
        h.kube.annotate(NS, NAME, **{"kanary.dev/action": "promote"})
        h.run_until(lambda s: s.phase != "Paused")
        h.run_until(lambda s: s.phase in ("Paused", "Healthy"))
    h.run_until(lambda s: s.phase == "Healthy")
    assert canary_rule(h) is None
    assert rules(h) == before


def test_a_rollback_removes_the_rule_in_the_same_write_as_weight_zero() -> None:
    h = started()
    h.run_until(lambda s: s.phase == "Paused")
    before = h.kube.log.count("patch HTTPRoute demo")
    h.kube.annotate(NS, NAME, **{"kanary.dev/action": "abort"})
    h.tick()
    assert h.status.phase == "RolledBack"
    assert canary_rule(h) is None
    assert h.kube.log.count("patch HTTPRoute demo") == before + 1


def test_a_rule_deleted_or_edited_by_hand_is_written_back() -> None:
    h = started()
    h.run_until(lambda s: s.phase == "Paused")
    route = h.kube.get("HTTPRoute", NS, "demo")
    assert route is not None
    route["spec"]["rules"] = users_rules(h)
    h.kube.put(route)
    h.tick()
    assert canary_rule(h) is not None
    assert "HeaderRouteRestored" in h.reasons()
    route = h.kube.get("HTTPRoute", NS, "demo")
    assert route is not None
    route["spec"]["rules"][-1]["backendRefs"][0]["name"] = "demo-stable"
    h.kube.put(route)
    h.tick()
    rule = canary_rule(h)
    assert rule is not None and rule["backendRefs"][0]["name"] == "demo-canary"


def test_a_filter_removed_from_the_users_rule_is_removed_from_the_copy() -> None:
    h = started()
    h.run_until(lambda s: s.phase == "Paused")
    route = h.kube.get("HTTPRoute", NS, "demo")
    assert route is not None
    del route["spec"]["rules"][0]["filters"]
    h.kube.put(route)
    h.tick()
    rule = canary_rule(h)
    assert rule is not None and "filters" not in rule


def test_a_converged_header_route_makes_no_writes() -> None:
    h = started()
    h.run_until(lambda s: s.phase == "Paused")
    h.tick()
    writes = h.kube.writes
    for _ in range(3):
        h.tick()
    assert h.kube.writes == writes


def test_a_canary_without_a_ready_pod_loses_the_header_route_and_gets_it_back() -> None:
    h = started(unavailableGraceSeconds=30)
    h.run_until(lambda s: s.phase == "Paused")
    h.kube.unready.add("demo-canary")
    h.kube.settle()
    h.tick()
    assert canary_rule(h) is None
    h.kube.unready.clear()
    h.kube.settle()
    h.tick()
    assert canary_rule(h) is not None


def test_a_clash_with_the_users_headers_makes_the_rollout_invalid_naming_the_step() -> None:
    steps = [
        {"setHeaderRoute": {"match": [{"headerName": "X-Tier", "headerValue": {"exact": "a"}}]}},
        *STEPS[1:],
    ]
    h = started()
    body = h.body
    body["spec"]["strategy"]["steps"] = steps
    h.kube.put(body)
    h.tick()
    assert h.status.phase == "Invalid"
    assert "steps[0].setHeaderRoute" in h.status.message and "x-tier" in h.status.message
    assert canary_rule(h) is None
    assert h.kube.get("Deployment", NS, "demo-canary") is None


def test_a_header_route_with_no_match_removes_it_and_the_canary_keeps_its_weight() -> None:
    steps = [
        {"setWeight": 25},
        {"setHeaderRoute": {"match": [CANARY_HEADER]}},
        {"pause": {}},
        {"setHeaderRoute": {}},
        {"pause": {}},
        {"setWeight": 100},
    ]
    h = started(steps)
    h.run_until(lambda s: s.phase == "Paused")
    assert canary_rule(h) is not None and h.status.canary_weight == 25
    h.kube.annotate(NS, NAME, **{"kanary.dev/action": "promote"})
    h.run_until(lambda s: s.current_step_index == 4)
    assert canary_rule(h) is None and h.status.header_route is None
    assert h.status.canary_weight == 25
