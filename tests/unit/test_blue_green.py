"""strategy.blueGreen (issue 13) through reconcile against FakeKube: the preview at full size
with no live traffic, one switch, the old version kept for scaleDownDelaySeconds while a switch
back is one route write, then promotion."""

from __future__ import annotations

from typing import Any

from tests.unit.fake_kube import FakeKube, Harness
from tests.unit.test_header_routes import CANARY_HEADER, canary_rule, rules, user_route
from tests.unit.test_reconcile import NAME, NS, analysed_harness, new_version, rollout

from kanary.spec import RolloutSpec


def blue_green(**blue_green: Any) -> dict[str, Any]:
    body = rollout()
    del body["spec"]["strategy"]["steps"]
    body["spec"]["strategy"]["blueGreen"] = blue_green
    body["spec"]["strategy"]["scaleDownDelaySeconds"] = 20
    return body


def started(**spec: Any) -> Harness:
    kube = FakeKube()
    kube.put(blue_green(**spec))
    kube.put(user_route())
    h = Harness(kube)
    h.run_until(lambda s: s.phase == "Healthy")
    new_version(h)
    return h


def live_split(h: Harness) -> tuple[int, int]:
    refs = rules(h)[0]["backendRefs"]
    return int(refs[0]["weight"]), int(refs[1]["weight"])


def replicas(h: Harness, track: str) -> int:
    dep = h.kube.get("Deployment", NS, f"demo-{track}")
    assert dep is not None
    return int(dep["spec"]["replicas"])


def image(h: Harness, track: str) -> str:
    dep = h.kube.get("Deployment", NS, f"demo-{track}")
    assert dep is not None
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


def promote(h: Harness) -> None:
    h.kube.annotate(NS, NAME, **{"kanary.dev/action": "promote"})
    h.tick()


def test_the_plan_is_preview_wait_switch_and_the_post_promotion_window() -> None:
    spec = RolloutSpec.model_validate(blue_green(autoPromotionSeconds=60)["spec"])
    described = [s.model_dump(by_alias=True, exclude_none=True) for s in spec.strategy.plan()]
    assert described == [
        {"setHeaderRoute": {"match": []}},
        {"pause": {"duration": "60s"}},
        {"setWeight": 100},
        {"pause": {"duration": "20s"}},
    ]


def test_the_preview_runs_at_full_size_reachable_by_header_only_until_promote() -> None:
    h = started(previewHeader=[CANARY_HEADER])
    h.run_until(lambda s: s.phase == "Paused")
    assert replicas(h, "canary") == 4 and image(h, "canary") == "demo:v2"
    assert live_split(h) == (100, 0)
    assert canary_rule(h) is not None
    assert h.status.step == "2/4" and h.status.strategy == "blueGreen"
    assert h.status.routing == "stable 100% / canary 0% + X-Canary: always -> canary"
    for _ in range(30):  # no auto-promotion: it waits for `kanary promote`
        h.tick()
    assert h.status.phase == "Paused"


def test_promote_switches_all_traffic_in_one_write_keeps_blue_then_promotes() -> None:
    h = started(previewHeader=[CANARY_HEADER])
    h.run_until(lambda s: s.phase == "Paused")
    patches = h.kube.log.count("patch HTTPRoute demo")
    promote(h)
    h.run_until(lambda s: s.canary_weight == 100)
    assert live_split(h) == (0, 100)
    assert h.kube.log.count("patch HTTPRoute demo") == patches + 1
    # blue is kept, at full size and on its template, for the post-promotion window
    h.run_until(lambda s: s.current_step_index == 3)
    assert replicas(h, "stable") == 4 and image(h, "stable") == "demo:v1"
    h.run_until(lambda s: s.phase == "Healthy", limit=120)
    assert image(h, "stable") == "demo:v2" and live_split(h) == (100, 0)
    assert canary_rule(h) is None
    h.run_until(lambda s: s.scale_down_at is None, limit=60)
    assert replicas(h, "canary") == 0


def test_a_switch_back_after_the_switch_is_one_write_and_blue_is_untouched() -> None:
    h = started(previewHeader=[CANARY_HEADER])
    h.run_until(lambda s: s.phase == "Paused")
    promote(h)
    h.run_until(lambda s: s.current_step_index == 3)
    patches = h.kube.log.count("patch HTTPRoute demo")
    stable_writes = [e for e in h.kube.log if "Deployment demo-stable" in e]
    h.kube.annotate(NS, NAME, **{"kanary.dev/action": "abort"})
    h.tick()
    assert h.status.phase == "RolledBack"
    assert live_split(h) == (100, 0) and canary_rule(h) is None
    assert h.kube.log.count("patch HTTPRoute demo") == patches + 1
    assert [e for e in h.kube.log if "Deployment demo-stable" in e] == stable_writes
    assert image(h, "stable") == "demo:v1" and replicas(h, "stable") == 4


def test_auto_promotion_switches_after_the_seconds_without_a_promote() -> None:
    h = started(autoPromotionSeconds=10)
    h.run_until(lambda s: s.current_step_index == 1)
    assert canary_rule(h) is None  # no previewHeader: the preview is Service demo-canary only
    assert live_split(h) == (100, 0)
    h.run_until(lambda s: s.canary_weight == 100, limit=20)
    assert h.status.phase == "Progressing"


def test_with_analysis_and_no_preview_traffic_the_preview_still_waits_for_promote() -> None:
    """Found in review: the preview step waited for a passing check, so a preview nobody sent
    requests to never reached the promote pause."""
    body = blue_green(previewHeader=[CANARY_HEADER])
    body["spec"]["strategy"]["analysis"] = {
        "interval": "1s",
        "metrics": [{"name": "error-rate", "max": 0.01}],
    }
    h, asked = analysed_harness(body)
    h.kube.put(user_route())
    h.run_until(lambda s: s.phase == "Healthy")
    new_version(h)
    h.run_until(lambda s: s.phase == "Paused", limit=60)
    assert h.status.current_step_index == 1 and canary_rule(h) is not None
    for _ in range(5):
        h.tick()
    assert asked  # the preview is judged (no data: never a pass) while it waits for promote
    assert h.status.phase == "Paused"
