"""The step engine's table of transitions, driven through a small simulated world (conftest)."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from conftest import (
    T0,
    Driver,
    World,
    analysis_spec,
    healthy_driver,
    image_template,
    make_spec,
    new_template,
    persist,
)

from kanary.actions import (
    Action,
    ApplyCanary,
    ApplyStable,
    EmitEvent,
    EnsureServices,
    ScaleStable,
    SetWeight,
)
from kanary.engine import Decision, analysis_due, decide, template_hash
from kanary.observation import AnalysisOutcome, ManualAction, ReadinessFigures, TrackState
from kanary.spec import PodTemplate, RolloutSpec
from kanary.status import RolloutStatus, Verdict
from kanary.wakeups import next_tick

STEPS_WITH_PROMOTE = [
    {"setWeight": 5},
    {"pause": {"duration": "30s"}},
    {"setWeight": 50},
    {"pause": {}},
    {"setWeight": 100},
]


def writes(actions: Sequence[Action]) -> list[Action]:
    return [a for a in actions if not isinstance(a, EmitEvent)]


def events(actions: Sequence[Action]) -> list[EmitEvent]:
    return [a for a in actions if isinstance(a, EmitEvent)]


def weights(actions: Sequence[Action]) -> list[int]:
    return [a.weight for a in actions if isinstance(a, SetWeight)]


def at_step(spec: RolloutSpec, index: int, **driver_args: Any) -> Driver:
    """A Healthy rollout given a new template, run until step `index` has just begun."""
    driver = healthy_driver(spec, **driver_args)
    new_template(driver, "v2")
    driver.run_until(lambda s: s.stage == "Stepping" and s.current_step_index == index)
    return driver


def promoting(spec: RolloutSpec) -> Driver:
    driver = healthy_driver(spec)
    new_template(driver, "v2")
    driver.world.stable_healthy = False
    driver.run_until(lambda s: s.stage == "Promoting")
    driver.tick()  # the canary carried 100% since the last tick: now stable is re-templated
    return driver


def rolled_back(spec: RolloutSpec) -> Driver:
    driver = at_step(spec, 1)
    driver.tick(manual="abort")
    assert driver.status.phase == "RolledBack"
    return driver


def segments_between_resets(values: list[int]) -> list[list[int]]:
    """Weights split at each 0 (rollback, promotion, supersede: the only writes of 0)."""
    out: list[list[int]] = [[]]
    for value in values:
        if value == 0:
            out.append([])
        else:
            out[-1].append(value)
    return out


def condition(status: RolloutStatus, kind: str) -> tuple[str, str]:
    found = next(c for c in status.conditions if c.type == kind)
    return found.status, found.reason


# ---- creation ----------------------------------------------------------------------------------


def test_first_creation_applies_the_stable_track_and_no_canary() -> None:
    world = World(make_spec())
    decision = decide(world.spec, RolloutStatus(), world.observe())
    assert writes(decision.actions) == [
        ApplyStable(revision=world.template_hash, replicas=4),
        EnsureServices(names=("demo-stable", "demo-canary")),
    ]
    assert decision.status.phase == "Progressing"
    assert decision.status.stage == "Creating"
    assert decision.status.stable_revision == world.template_hash


def test_creation_becomes_healthy_only_once_the_stable_track_is_ready() -> None:
    driver = Driver(World(make_spec(), stable_healthy=False))
    driver.run(20)
    assert driver.status.phase == "Progressing"
    assert "0/4 pods Ready" in driver.status.message
    driver.world.stable_healthy = True
    driver.run(2)
    assert driver.status.phase == "Healthy"
    assert driver.world.weights == [0]
    assert condition(driver.status, "Completed") == ("True", "UpToDate")
    assert condition(driver.status, "Available") == ("True", "PodsReady")
    assert not any(isinstance(w, ApplyCanary) for w in driver.world.writes)


def test_creation_past_the_deadline_is_reported_once_not_rolled_back() -> None:
    driver = Driver(World(make_spec(progressDeadlineSeconds=10), stable_healthy=False))
    driver.run(30)
    assert driver.status.phase == "Progressing"
    assert condition(driver.status, "Progressing") == ("False", "ProgressDeadlineExceeded")
    assert driver.world.event_reasons().count("ProgressDeadlineExceeded") == 1


def test_an_existing_stable_track_is_adopted_when_status_is_empty() -> None:
    world = World(make_spec())
    world.stable = TrackState(True, world.template_hash, 4, ready=4, settled=True)
    decision = decide(world.spec, RolloutStatus(), world.observe())
    assert decision.status.phase == "Healthy"
    assert not any(isinstance(a, ApplyStable | ScaleStable) for a in decision.actions)
    assert weights(decision.actions) == [0]


def test_adopting_an_older_stable_track_starts_a_rollout() -> None:
    world = World(make_spec())
    world.stable = TrackState(True, "older00000", 4, ready=4, settled=True)
    decision = decide(world.spec, RolloutStatus(), world.observe())
    assert decision.status.phase == "Progressing"
    assert decision.status.stable_revision == "older00000"
    assert decision.status.canary_revision == world.template_hash
    assert ApplyCanary(revision=world.template_hash, replicas=1) in decision.actions


def test_a_deleted_stable_deployment_is_recreated() -> None:
    driver = healthy_driver(make_spec())
    driver.world.stable = TrackState()
    decision = driver.tick()
    assert ApplyStable(revision=driver.world.template_hash, replicas=4) in decision.actions
    assert "StableMissing" in driver.world.event_reasons()
    assert condition(driver.status, "Available") == ("False", "NoReadyPods")
    driver.run(2)
    assert driver.status.phase == "Healthy"
    assert condition(driver.status, "Available") == ("True", "PodsReady")


def test_a_hand_edited_stable_deployment_gets_its_template_back() -> None:
    driver = healthy_driver(make_spec())
    driver.world.stable = dataclasses.replace(driver.world.stable, revision="handmade00")
    assert writes(driver.tick().actions) == [
        ApplyStable(revision=driver.world.template_hash, replicas=4)
    ]
    assert writes(driver.tick().actions) == []


def test_a_replicas_change_while_healthy_scales_the_stable_track() -> None:
    driver = healthy_driver(make_spec())
    driver.world.spec = driver.world.spec.model_copy(update={"replicas": 6})
    assert writes(driver.tick().actions) == [ScaleStable(replicas=6)]
    assert writes(driver.tick().actions) == []


# ---- a healthy rollout -------------------------------------------------------------------------


def test_a_healthy_rollout_walks_every_step_and_promotes() -> None:
    driver = healthy_driver(make_spec())
    old = driver.status.stable_revision
    new_template(driver, "v2")
    new = driver.world.template_hash
    driver.run_until(lambda s: s.phase == "Healthy")
    assert driver.world.weights == [0, 5, 25, 50, 100, 0]
    assert driver.status.stable_revision == new != old
    assert driver.status.canary_revision is None
    assert driver.status.history[-1].outcome == "Promoted"
    assert driver.status.history[-1].revision == new
    assert condition(driver.status, "Completed") == ("True", "Promoted")
    # step 1 is announced in RolloutStarted, each later one in its own Event (fewer writes)
    announced = [e for e in driver.world.events if e.reason in ("RolloutStarted", "Step", "Paused")]
    steps = [
        e.message.split("; ")[-1] if e.reason == "RolloutStarted" else e.message for e in announced
    ]
    assert [m.split(":")[0] for m in steps] == [f"step {i}/7" for i in range(1, 8)]
    assert "WeightSet" not in driver.world.event_reasons()  # said by the next step's Event
    assert any("canary weight 5% (step 1/7 done)" in m for m in steps), steps


def test_promotion_moves_traffic_only_after_the_stable_track_is_ready() -> None:
    driver = promoting(make_spec())
    rev = driver.status.canary_revision
    assert ApplyStable(revision=rev or "", replicas=4) in driver.world.writes
    driver.run(50)
    assert driver.status.phase == "Progressing"
    assert driver.world.weights[-1] == 100
    driver.world.stable_healthy = True
    driver.tick()  # the stable track becomes Ready during this tick
    decision = driver.tick()
    assert writes(decision.actions) == [SetWeight(0)]
    assert driver.status.phase == "Healthy"
    # The old canary keeps its pods for scaleDownDelaySeconds (30s): the router drains first.
    scaled_down = ApplyCanary(revision=rev or "", replicas=0)
    driver.run(28)
    assert scaled_down not in driver.world.writes
    driver.run(4)
    assert scaled_down in driver.world.writes


def test_promotion_past_the_deadline_is_reported_and_keeps_waiting() -> None:
    driver = promoting(make_spec(progressDeadlineSeconds=20))
    driver.run(40)
    assert driver.status.phase == "Progressing"
    assert condition(driver.status, "Progressing") == ("False", "ProgressDeadlineExceeded")
    assert driver.world.event_reasons().count("ProgressDeadlineExceeded") == 1
    assert "RolledBack" not in driver.world.event_reasons()


def test_a_weight_is_written_only_once_the_canary_pods_are_ready() -> None:
    driver = healthy_driver(make_spec())
    driver.world.canary_healthy = False
    new_template(driver, "v2")
    driver.run(30)
    assert driver.world.weights == [0]
    assert "waiting for canary pods (0/1 Ready" in driver.status.message
    driver.world.canary_healthy = True
    driver.run(2)
    assert driver.world.weights == [0, 5]


@pytest.mark.parametrize(("index", "pods"), [(0, 1), (2, 1), (4, 2), (6, 4)])
def test_each_weight_step_scales_the_canary_to_the_ceiling(index: int, pods: int) -> None:
    driver = at_step(make_spec(), index)
    canary = driver.world.canary
    assert (canary.revision, canary.replicas) == (driver.status.canary_revision, pods)
    assert driver.world.stable.replicas == 4  # gateway mode: stable keeps full capacity


def test_the_stable_track_is_never_written_before_promotion_in_gateway_mode() -> None:
    driver = healthy_driver(make_spec())
    before = len(driver.world.writes)
    new_template(driver, "v2")
    driver.run_until(lambda s: s.stage == "Promoting")
    during = driver.world.writes[before:-1]
    assert not any(isinstance(w, ApplyStable | ScaleStable) for w in during)


def test_pause_ends_after_its_duration_not_before() -> None:
    driver = at_step(make_spec(), 1)
    started = driver.status.step_started_at
    driver.run_until(lambda s: s.current_step_index != 1)
    assert started is not None
    assert driver.world.now - started >= timedelta(seconds=30)
    assert driver.world.now - started <= timedelta(seconds=32)


def test_status_message_says_where_the_rollout_is() -> None:
    driver = at_step(make_spec(), 1)
    started = driver.status.step_started_at
    assert started is not None
    end = (started + timedelta(seconds=30)).strftime("%H:%M:%S")
    assert driver.status.message == f"step 2/7: weight 5%; pause 30s until {end}Z"
    assert driver.status.canary_weight == 5


def test_a_waiting_rollout_does_not_rewrite_its_status() -> None:
    driver = at_step(make_spec(), 1)
    waiting = driver.status
    for _ in range(20):
        assert driver.tick().status == waiting
    unready = at_step(make_spec(), 2)
    unready.world.canary_healthy = False
    unready.world.canary = dataclasses.replace(unready.world.canary, ready=0, settled=False)
    unready.tick()
    waiting = unready.status
    for _ in range(20):
        assert unready.tick().status == waiting


# ---- the table of transitions ------------------------------------------------------------------


def _healthy() -> Driver:
    return healthy_driver(make_spec())


def _healthy_new_template() -> Driver:
    driver = healthy_driver(make_spec())
    new_template(driver, "v2")
    return driver


def _weight_step_ready() -> Driver:
    driver = at_step(make_spec(), 0)
    driver.world.pass_time(0)
    return driver


def _weight_step_unready() -> Driver:
    driver = at_step(make_spec(), 0)
    driver.world.canary = dataclasses.replace(driver.world.canary, ready=0, settled=False)
    return driver


def _timed_pause_running() -> Driver:
    return at_step(make_spec(), 1)


def _timed_pause_elapsed() -> Driver:
    driver = at_step(make_spec(), 1)
    driver.world.pass_time(40)
    return driver


def _pause_until_promote() -> Driver:
    return at_step(make_spec(steps=STEPS_WITH_PROMOTE), 3)


def _paused_by_user() -> Driver:
    driver = at_step(make_spec(), 1)
    driver.tick(manual="pause")
    return driver


def _promoting_stable_unready() -> Driver:
    return promoting(make_spec())


def _promoting_stable_ready() -> Driver:
    driver = promoting(make_spec())
    driver.world.stable_healthy = True
    driver.world.pass_time(0)
    return driver


def _rolled_back_before_delay() -> Driver:
    return rolled_back(make_spec())


def _rolled_back_after_delay() -> Driver:
    driver = rolled_back(make_spec())
    driver.world.pass_time(30)
    return driver


TABLE: list[tuple[str, Any, ManualAction | None, str, int | None, list[str]]] = [
    # (situation, setup, manual action, phase after, step index after, writes after)
    ("healthy, same template", _healthy, None, "Healthy", None, []),
    (
        "healthy, new template",
        _healthy_new_template,
        None,
        "Progressing",
        0,
        ["ApplyCanary(new,1)"],
    ),
    ("setWeight, canary unready", _weight_step_unready, None, "Progressing", 0, []),
    ("setWeight, canary ready", _weight_step_ready, None, "Progressing", 1, ["SetWeight(5)"]),
    ("timed pause running", _timed_pause_running, None, "Progressing", 1, []),
    ("timed pause elapsed", _timed_pause_elapsed, None, "Progressing", 2, []),
    ("timed pause, promote", _timed_pause_running, "promote", "Progressing", 2, []),
    # promote --full: the canary takes 100% before stable is re-templated
    (
        "timed pause, promote-full",
        _timed_pause_running,
        "promote-full",
        "Progressing",
        7,
        ["ApplyCanary(new,4)"],
    ),
    ("timed pause, abort", _timed_pause_running, "abort", "RolledBack", 1, ["SetWeight(0)"]),
    ("timed pause, pause", _timed_pause_running, "pause", "Paused", 1, []),
    ("setWeight, abort", _weight_step_unready, "abort", "RolledBack", 0, ["SetWeight(0)"]),
    ("setWeight ready, promote", _weight_step_ready, "promote", "Progressing", 1, ["SetWeight(5)"]),
    ("pause {}", _pause_until_promote, None, "Paused", 3, []),
    (
        "pause {}, promote",
        _pause_until_promote,
        "promote",
        "Progressing",
        4,
        ["ApplyCanary(new,4)"],
    ),
    ("pause {}, resume", _pause_until_promote, "resume", "Paused", 3, []),
    ("pause {}, abort", _pause_until_promote, "abort", "RolledBack", 3, ["SetWeight(0)"]),
    ("paused by user", _paused_by_user, None, "Paused", 1, []),
    ("paused by user, resume", _paused_by_user, "resume", "Progressing", 1, []),
    ("paused by user, promote", _paused_by_user, "promote", "Progressing", 2, []),
    ("paused by user, abort", _paused_by_user, "abort", "RolledBack", 1, ["SetWeight(0)"]),
    ("promoting, stable unready", _promoting_stable_unready, None, "Progressing", 7, []),
    # the old canary keeps its pods for scaleDownDelaySeconds after the weight write
    ("promoting, stable ready", _promoting_stable_ready, None, "Healthy", None, ["SetWeight(0)"]),
    # abort during promotion: weight 0 at once, stable gets its old template back
    (
        "promoting, abort",
        _promoting_stable_unready,
        "abort",
        "RolledBack",
        7,
        ["SetWeight(0)", "ApplyStable(old,4)"],
    ),
    ("rolled back, before delay", _rolled_back_before_delay, None, "RolledBack", 1, []),
    (
        "rolled back, after delay",
        _rolled_back_after_delay,
        None,
        "RolledBack",
        1,
        ["ApplyCanary(new,0)"],
    ),
    ("rolled back, retry", _rolled_back_before_delay, "retry", "Progressing", 0, []),
    ("rolled back, abort", _rolled_back_before_delay, "abort", "RolledBack", 1, []),
    ("healthy, promote", _healthy, "promote", "Healthy", None, []),
    ("healthy, retry", _healthy, "retry", "Healthy", None, []),
]


def _named(action: Action, new: str) -> str:
    match action:
        case SetWeight(weight=w):
            return f"SetWeight({w})"
        case ApplyCanary(revision=r, replicas=n):
            return f"ApplyCanary({'new' if r == new else r},{n})"
        case ApplyStable(revision=r, replicas=n):
            return f"ApplyStable({'new' if r == new else 'old'},{n})"
        case ScaleStable(replicas=n):
            return f"ScaleStable({n})"
        case _:
            return type(action).__name__


@pytest.mark.parametrize(
    ("situation", "setup", "manual", "phase", "step", "expected"),
    TABLE,
    ids=[row[0] for row in TABLE],
)
def test_transition_table(
    situation: str,
    setup: Any,
    manual: ManualAction | None,
    phase: str,
    step: int | None,
    expected: list[str],
) -> None:
    driver: Driver = setup()
    new = driver.world.template_hash
    decision = decide(driver.world.spec, driver.status, driver.world.observe(manual=manual))
    assert [_named(a, new) for a in writes(decision.actions)] == expected, situation
    assert decision.status.phase == phase, decision.status.message
    assert decision.status.current_step_index == step


# ---- manual actions that make no sense ---------------------------------------------------------


def _creating() -> Driver:
    driver = Driver(World(make_spec(), stable_healthy=False))
    driver.run(3)
    return driver


REFUSALS: list[tuple[str, Any, ManualAction]] = [
    ("creating", _creating, "abort"),
    ("creating", _creating, "promote"),
    ("creating", _creating, "pause"),
    ("healthy", _healthy, "promote"),
    ("healthy", _healthy, "promote-full"),
    ("healthy", _healthy, "abort"),
    ("healthy", _healthy, "retry"),
    ("healthy", _healthy, "pause"),
    ("healthy", _healthy, "resume"),
    ("setWeight step", _weight_step_unready, "promote"),
    ("setWeight step", _weight_step_unready, "retry"),
    ("setWeight step", _weight_step_unready, "resume"),
    ("pause {}", _pause_until_promote, "pause"),
    ("pause {}", _pause_until_promote, "resume"),
    ("paused by user", _paused_by_user, "pause"),
    ("promoting", _promoting_stable_unready, "promote-full"),
    ("promoting", _promoting_stable_unready, "pause"),
    ("rolled back", _rolled_back_before_delay, "abort"),
    ("rolled back", _rolled_back_before_delay, "promote"),
    ("rolled back", _rolled_back_before_delay, "resume"),
]


@pytest.mark.parametrize(
    ("situation", "setup", "manual"), REFUSALS, ids=[f"{r[0]}-{r[2]}" for r in REFUSALS]
)
def test_a_manual_action_that_makes_no_sense_is_refused_with_a_warning(
    situation: str, setup: Any, manual: ManualAction
) -> None:
    driver: Driver = setup()
    plain = decide(driver.world.spec, driver.status, driver.world.observe())
    asked = decide(driver.world.spec, driver.status, driver.world.observe(manual=manual))
    refusals = [e for e in events(asked.actions) if e.reason == "ManualActionRefused"]
    assert len(refusals) == 1 and refusals[0].type == "Warning"
    assert refusals[0].message.startswith(f"{manual}: ")
    assert writes(asked.actions) == writes(plain.actions)
    answer = asked.status.last_action
    assert answer is not None and answer.result == "Refused" and answer.action == manual
    assert answer.reason and refusals[0].message.endswith(answer.reason)
    assert asked.status.model_copy(update={"last_action": plain.status.last_action}) == plain.status


def test_a_manual_request_with_an_id_applies_once() -> None:
    driver = at_step(make_spec(steps=STEPS_WITH_PROMOTE), 1)
    driver.tick(manual="promote", manual_id="req-1")
    assert driver.status.current_step_index == 2
    driver.run_until(lambda s: s.current_step_index == 3)
    driver.tick(manual="promote", manual_id="req-1")  # seen again, e.g. after a restart
    assert driver.status.current_step_index == 3
    assert driver.status.phase == "Paused"
    driver.tick(manual="promote", manual_id="req-2")
    assert driver.status.current_step_index == 4


# ---- pause {} ----------------------------------------------------------------------------------


def test_pause_without_duration_waits_for_promote_forever() -> None:
    driver = at_step(make_spec(steps=STEPS_WITH_PROMOTE), 3)
    driver.run(600)
    assert driver.status.phase == "Paused"
    assert driver.status.current_step_index == 3
    assert driver.world.weights == [0, 5, 50]
    assert condition(driver.status, "Paused") == ("True", "PauseStep")
    assert driver.status.message == "step 4/5: weight 50%; paused until `kanary promote`"


def test_pause_without_duration_continues_after_promote() -> None:
    driver = at_step(make_spec(steps=STEPS_WITH_PROMOTE), 3)
    driver.tick(manual="promote")
    assert driver.status.phase == "Progressing"
    assert condition(driver.status, "Paused")[0] == "False"
    driver.run_until(lambda s: s.phase == "Healthy")
    assert driver.world.weights == [0, 5, 50, 100, 0]
    assert "ManualPromote" in driver.world.event_reasons()


def test_promote_full_skips_the_remaining_steps() -> None:
    driver = at_step(make_spec(), 1)
    driver.tick(manual="promote-full")
    assert driver.status.stage == "Promoting"
    driver.run_until(lambda s: s.phase == "Healthy")
    # the canary takes all traffic before stable is re-templated, then stable takes it back
    assert driver.world.weights == [0, 5, 100, 0]
    assert driver.status.history[-1].outcome == "Promoted"


def test_user_pause_holds_a_timed_pause_past_its_end_until_resume() -> None:
    driver = at_step(make_spec(), 1)
    driver.tick(manual="pause")
    driver.run(100)
    assert driver.status.current_step_index == 1
    assert condition(driver.status, "Paused") == ("True", "PausedByUser")
    driver.tick(manual="resume")  # the pause ran out while paused: it ends at once
    assert driver.status.current_step_index == 2
    assert driver.status.phase == "Progressing"


# ---- abort -------------------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(7))
def test_abort_at_any_step_writes_weight_zero_first_and_never_touches_stable(index: int) -> None:
    driver = at_step(make_spec(), index)
    stable_before = driver.world.stable
    decision = driver.tick(manual="abort")
    assert writes(decision.actions) == [SetWeight(0)]
    assert driver.status.phase == "RolledBack"
    assert driver.status.canary_weight == 0
    assert condition(driver.status, "RolledBack") == ("True", "Aborted")
    warning = [e for e in events(decision.actions) if e.reason == "RolledBack"]
    assert warning and warning[0].type == "Warning" and "aborted by user" in warning[0].message
    assert driver.status.history[-1].outcome == "RolledBack"
    driver.run(60)
    assert driver.world.stable == stable_before
    assert driver.world.canary.replicas == 0


def test_abort_scales_the_canary_down_only_after_the_delay() -> None:
    driver = at_step(make_spec(), 4)
    driver.tick(manual="abort")
    aborted_at = driver.world.now - timedelta(seconds=1)
    first_scale_down: Decision | None = None
    while first_scale_down is None:
        decision = driver.tick()
        if any(isinstance(a, ApplyCanary) for a in decision.actions):
            first_scale_down = decision
    now = driver.world.now - timedelta(seconds=1)
    assert timedelta(seconds=30) <= now - aborted_at <= timedelta(seconds=31)
    rev = driver.status.canary_revision or ""
    assert writes(first_scale_down.actions) == [ApplyCanary(revision=rev, replicas=0)]
    assert "ScaledDown" in [e.reason for e in events(first_scale_down.actions)]
    assert driver.status.scale_down_at is None
    assert writes(driver.tick().actions) == []


def test_a_zero_delay_scales_the_canary_down_in_the_same_tick() -> None:
    driver = at_step(make_spec(abortScaleDownDelaySeconds=0), 2)
    decision = driver.tick(manual="abort")
    rev = driver.status.canary_revision or ""
    assert writes(decision.actions) == [SetWeight(0), ApplyCanary(revision=rev, replicas=0)]


def test_retry_starts_again_from_step_one() -> None:
    driver = rolled_back(make_spec())
    driver.tick(manual="retry")
    assert driver.status.phase == "Progressing"
    assert driver.status.current_step_index == 0
    assert condition(driver.status, "RolledBack")[0] == "False"
    driver.run_until(lambda s: s.phase == "Healthy")
    assert segments_between_resets(driver.world.weights) == [[], [5], [5, 25, 50, 100], []]


def test_a_rolled_back_rollout_stays_rolled_back_with_the_same_template() -> None:
    driver = rolled_back(make_spec())
    driver.run(200)
    assert driver.status.phase == "RolledBack"
    assert driver.status.message.startswith("rolled back: step 2/7: aborted by user")


def test_reverting_the_template_after_a_rollback_is_healthy_again() -> None:
    driver = rolled_back(make_spec())
    driver.world.spec = make_spec()
    driver.tick()
    assert driver.status.phase == "Healthy"
    assert condition(driver.status, "Completed")[0] == "True"
    assert condition(driver.status, "RolledBack")[0] == "False"


# ---- a new template during a rollout -----------------------------------------------------------


@pytest.mark.parametrize("index", range(7))
def test_a_new_template_mid_rollout_restarts_from_step_one(index: int) -> None:
    driver = at_step(make_spec(), index)
    old = driver.status.canary_revision
    weight_before = driver.status.canary_weight
    new_template(driver, "v3")
    decision = driver.tick()
    new = driver.world.template_hash
    assert driver.status.history[-1].outcome == "Superseded"
    assert driver.status.history[-1].revision == old
    assert driver.status.canary_revision == new
    assert driver.status.current_step_index == 0
    assert driver.status.canary_weight == 0
    first_writes = writes(decision.actions)
    if weight_before > 0:
        assert first_writes[0] == SetWeight(0)
    assert ApplyCanary(revision=new, replicas=1) in first_writes
    driver.run_until(lambda s: s.phase == "Healthy")
    assert driver.status.stable_revision == new
    assert segments_between_resets(driver.world.weights)[-2] == [5, 25, 50, 100]


def test_a_new_template_during_promotion_keeps_the_promoted_stable_and_restarts() -> None:
    driver = promoting(make_spec())
    promoted = driver.status.canary_revision
    new_template(driver, "v3")
    decision = driver.tick()
    assert weights(decision.actions) == [0]
    assert driver.status.stable_revision == promoted
    assert driver.status.current_step_index == 0
    assert driver.status.history[-1].outcome == "Superseded"


def test_reverting_the_template_mid_rollout_returns_to_healthy() -> None:
    driver = at_step(make_spec(), 3)
    driver.world.spec = make_spec()
    decision = driver.tick()
    assert weights(decision.actions) == [0]
    assert driver.status.phase == "Healthy"
    assert driver.status.history[-1].outcome == "Superseded"
    assert driver.world.canary.replicas == 1  # scaled down only after the abort delay
    driver.run(31)
    assert driver.world.canary.replicas == 0


# ---- weights never move backwards --------------------------------------------------------------


def _scenario_runs() -> list[Driver]:
    happy = healthy_driver(make_spec())
    new_template(happy, "v2")
    happy.run_until(lambda s: s.phase == "Healthy")

    superseded = at_step(make_spec(), 4)
    new_template(superseded, "v3")
    superseded.run_until(lambda s: s.phase == "Healthy")

    aborted = at_step(make_spec(), 5)
    aborted.tick(manual="abort")
    aborted.tick(manual="retry")
    aborted.run_until(lambda s: s.phase == "Healthy")

    ratio = healthy_driver(make_spec(trafficRouting=None))
    new_template(ratio, "v2")
    ratio.run_until(lambda s: s.phase == "Healthy")
    return [happy, superseded, aborted, ratio]


def test_weights_never_move_backwards_except_on_rollback_or_reset() -> None:
    for driver in _scenario_runs():
        for segment in segments_between_resets(driver.world.weights):
            assert segment == sorted(segment), driver.world.weights
        previous = 0
        for decision in driver.decisions:
            status = decision.status
            if status.stage == "Stepping" and status.canary_weight < previous:
                assert status.current_step_index == 0 and status.canary_weight == 0
            previous = status.canary_weight if status.stage == "Stepping" else 0


# ---- restarts ----------------------------------------------------------------------------------


def _promoted(status: RolloutStatus, revision: str) -> bool:
    return (
        bool(status.history)
        and status.history[-1].outcome == "Promoted"
        and (status.history[-1].revision == revision)
    )


def _full_run(
    spec: RolloutSpec, crash_at: int | None = None, restart_every_tick: bool = False
) -> Driver:
    """A rollout from Healthy to Healthy; at tick `crash_at` the actions run but the status is
    lost (the operator died before writing it)."""
    driver = healthy_driver(spec)
    new_template(driver, "v2")
    for tick in range(2000):
        if _promoted(driver.status, driver.world.template_hash):
            return driver
        if tick == crash_at:
            kept = driver.status
            driver.tick()
            driver.status = kept
        elif restart_every_tick:
            driver = Driver(driver.world, status=persist(driver.status), decisions=driver.decisions)
            driver.tick()
        else:
            driver.tick()
    raise AssertionError("rollout did not finish")


def test_restarting_at_every_tick_gives_exactly_the_uninterrupted_run() -> None:
    spec = make_spec(steps=STEPS_WITH_PROMOTE[:3] + STEPS_WITH_PROMOTE[4:])
    steady = _full_run(spec)
    restarted = _full_run(spec, restart_every_tick=True)
    assert restarted.world.weights == steady.world.weights == [0, 5, 50, 100, 0]
    assert restarted.world.writes == steady.world.writes
    assert restarted.world.events == steady.world.events


def test_a_restart_at_every_step_boundary_repeats_no_step() -> None:
    driver = healthy_driver(make_spec())
    new_template(driver, "v2")
    boundaries = 0
    while not _promoted(driver.status, driver.world.template_hash):
        before = driver.status.current_step_index
        decision = driver.tick()
        if driver.status.current_step_index == before:
            continue
        boundaries += 1
        # The operator restarts here: a fresh decide from the written status only.
        again = decide(driver.world.spec, persist(driver.status), driver.world.observe())
        assert again.status.current_step_index in (
            driver.status.current_step_index,
            (driver.status.current_step_index or 0) + 1,
            None,
        )
        written = weights(decision.actions)
        assert not [w for w in weights(again.actions) if w in written and w != 0]
        entered = {e.message for e in events(decision.actions) if e.reason in ("Step", "Paused")}
        assert not entered & {e.message for e in events(again.actions)}
    assert boundaries == 9  # start, 6 more steps, promotion, promoted


@pytest.mark.parametrize("crash_at", range(0, 100, 3))
def test_a_crash_between_writes_and_status_neither_repeats_nor_skips_a_step(crash_at: int) -> None:
    driver = _full_run(make_spec(), crash_at=crash_at)
    deduped = [
        w for i, w in enumerate(driver.world.weights) if i == 0 or w != driver.world.weights[i - 1]
    ]
    assert deduped == [0, 5, 25, 50, 100, 0]
    assert driver.status.history[-1].outcome == "Promoted"


def test_decide_is_idempotent_for_every_tick_of_a_rollout() -> None:
    driver = at_step(make_spec(analysis=analysis_spec()), 0, analyst=lambda w: "Pass")
    for _ in range(120):
        obs = driver.world.observe()
        first = decide(driver.world.spec, driver.status, obs)
        second = decide(driver.world.spec, driver.status, obs)
        assert first == second
        driver.tick()


# ---- readiness and the progress deadline -------------------------------------------------------


def test_a_canary_pod_slower_than_the_limit_rolls_back_with_the_measured_time() -> None:
    driver = at_step(make_spec(readiness={"maxPodReadySeconds": 5}), 2)
    driver.world.readiness = ReadinessFigures(
        count=2, p50_seconds=3.0, max_seconds=8.2, slowest_pod="demo-canary-7f9c-x2"
    )
    decision = driver.tick()
    assert weights(decision.actions) == [0]
    assert driver.status.phase == "RolledBack"
    assert condition(driver.status, "RolledBack") == ("True", "PodReadyTooSlow")
    assert "8.2s" in driver.status.message and "demo-canary-7f9c-x2" in driver.status.message
    assert driver.status.readiness.max_seconds == 8.2
    assert driver.status.readiness.slowest_pod == "demo-canary-7f9c-x2"


def test_an_unready_canary_pod_older_than_the_limit_rolls_back() -> None:
    driver = at_step(make_spec(readiness={"maxPodReadySeconds": 5}), 0)
    driver.world.readiness = ReadinessFigures(
        oldest_unready_seconds=6.04, oldest_unready_pod="demo-canary-abc"
    )
    driver.tick()
    assert driver.status.phase == "RolledBack"
    assert "demo-canary-abc not Ready after 6.0s" in driver.status.message


def test_a_late_pod_rolled_back_while_unready_still_gets_its_measured_time() -> None:
    driver = at_step(make_spec(readiness={"maxPodReadySeconds": 5}), 0)
    driver.world.readiness = ReadinessFigures(
        oldest_unready_seconds=5.3, oldest_unready_pod="demo-canary-abc"
    )
    driver.tick()
    assert driver.status.phase == "RolledBack"
    driver.world.readiness = ReadinessFigures(
        count=1, p50_seconds=8.1, max_seconds=8.1, slowest_pod="demo-canary-abc"
    )
    driver.tick()
    assert driver.status.readiness.max_seconds == 8.1
    assert driver.status.readiness.slowest_pod == "demo-canary-abc"
    assert "not Ready after 5.3s" in driver.status.message


def test_canary_pods_within_the_limit_do_not_roll_back() -> None:
    driver = at_step(make_spec(readiness={"maxPodReadySeconds": 5}), 0)
    driver.world.readiness = ReadinessFigures(count=1, p50_seconds=4.9, max_seconds=4.9)
    driver.run(5)
    assert driver.status.phase == "Progressing"
    assert driver.status.readiness.p50_seconds == 4.9


def test_a_never_ready_canary_rolls_back_at_the_progress_deadline() -> None:
    driver = healthy_driver(make_spec(progressDeadlineSeconds=60))
    driver.world.canary_healthy = False
    new_template(driver, "v2")
    driver.run(60)
    assert driver.status.phase == "Progressing"
    driver.run(3)
    assert driver.status.phase == "RolledBack"
    assert condition(driver.status, "RolledBack") == ("True", "ProgressDeadlineExceeded")
    assert "canary not Ready after 60s (0/1 pods Ready)" in driver.status.message
    assert driver.world.weights == [0, 0]


def test_the_rollback_message_names_a_crashing_canary_container() -> None:
    driver = healthy_driver(make_spec(progressDeadlineSeconds=60))
    driver.world.canary_healthy = False
    driver.world.canary_trouble = (
        "pod demo-canary-x: container app exited with code 2 - CrashLoopBackOff after 3 restarts"
    )
    new_template(driver, "v2")
    driver.run(63)
    assert driver.status.phase == "RolledBack"
    assert (
        "(0/1 pods Ready); pod demo-canary-x: container app exited with code 2"
        " - CrashLoopBackOff after 3 restarts;" in driver.status.message
    )


# ---- analysis ----------------------------------------------------------------------------------


def verdicts(*sequence: Verdict) -> Any:
    """An analyst giving these verdicts in turn, then repeating the last."""
    remaining = list(sequence)

    def analyst(world: World) -> Verdict:
        return remaining.pop(0) if len(remaining) > 1 else remaining[0]

    return analyst


def analysed(**analysis: Any) -> RolloutSpec:
    return make_spec(analysis=analysis_spec(**analysis))


def test_analysis_is_due_only_while_the_canary_takes_traffic() -> None:
    spec = analysed()
    driver = at_step(spec, 0)
    assert not analysis_due(spec, driver.status, driver.world.now)  # weight 0
    driver.tick()
    assert driver.status.canary_weight == 5
    assert analysis_due(spec, driver.status, driver.world.now)
    checked = driver.status.model_copy(
        update={"analysis": driver.status.analysis.model_copy(update={"last_check_at": T0})}
    )
    assert not analysis_due(spec, checked, T0 + timedelta(seconds=9))
    assert analysis_due(spec, checked, T0 + timedelta(seconds=10))
    user_paused = driver.status.model_copy(update={"pause_reason": "User"})
    assert not analysis_due(spec, user_paused, driver.world.now)
    step_paused = driver.status.model_copy(update={"pause_reason": "Step"})
    assert analysis_due(spec, step_paused, driver.world.now)
    assert not analysis_due(make_spec(), driver.status, driver.world.now)


def test_consecutive_failures_at_the_limit_roll_back_with_the_summary() -> None:
    driver = at_step(analysed(failureLimit=2), 0, analyst=verdicts("Fail"))
    driver.run_until(lambda s: s.phase == "RolledBack", limit=60)
    assert driver.status.analysis.consecutive_failures == 2
    assert condition(driver.status, "RolledBack") == ("True", "AnalysisFailed")
    assert "check Fail" in driver.status.message
    assert driver.world.weights == [0, 5, 0]


def test_a_failure_followed_by_a_pass_does_not_roll_back() -> None:
    driver = at_step(analysed(failureLimit=2), 0, analyst=verdicts("Pass", "Fail", "Pass"))
    driver.run_until(lambda s: s.phase == "Healthy")
    assert driver.status.history[-1].outcome == "Promoted"


def test_a_pause_ends_only_on_a_passing_check() -> None:
    driver = at_step(analysed(interval="5s", inconclusiveLimit=100), 1, analyst=verdicts("Pass"))
    driver.analyst = verdicts("Inconclusive")
    driver.run(120)
    assert driver.status.current_step_index == 1
    assert "waiting for a passing analysis check" in driver.status.message
    driver.analyst = verdicts("Pass")
    driver.run_until(lambda s: s.current_step_index == 2, limit=7)


def test_errors_block_advancing_and_roll_back_at_the_limit() -> None:
    driver = at_step(analysed(interval="10s", errorLimit=5), 1, analyst=verdicts("Pass"))
    driver.analyst = verdicts("Error")
    driver.run(35)
    assert driver.status.current_step_index == 1
    assert driver.status.phase == "Progressing"
    driver.run_until(lambda s: s.phase == "RolledBack", limit=60)
    assert condition(driver.status, "RolledBack") == ("True", "AnalysisError")
    assert driver.status.analysis.consecutive_errors == 5


def test_inconclusive_at_the_limit_pauses_and_resume_goes_on() -> None:
    driver = at_step(
        analysed(interval="5s", inconclusiveLimit=3), 0, analyst=verdicts("Inconclusive")
    )
    driver.run_until(lambda s: s.phase == "Paused", limit=60)
    assert condition(driver.status, "Paused") == ("True", "AnalysisInconclusive")
    assert "AnalysisInconclusive" in driver.world.event_reasons()
    assert not analysis_due(driver.world.spec, driver.status, driver.world.now + timedelta(1))
    driver.run(50)
    assert driver.status.phase == "Paused"
    driver.analyst = verdicts("Pass")
    driver.tick(manual="resume")
    assert driver.status.analysis.consecutive_inconclusive == 0
    driver.run_until(lambda s: s.phase == "Healthy")


def test_inconclusive_at_the_limit_rolls_back_when_configured() -> None:
    driver = at_step(
        analysed(inconclusiveLimit=2, onInconclusive="rollback"),
        0,
        analyst=verdicts("Inconclusive"),
    )
    driver.run_until(lambda s: s.phase == "RolledBack", limit=60)
    assert condition(driver.status, "RolledBack") == ("True", "AnalysisInconclusive")


def test_the_same_check_seen_twice_counts_once() -> None:
    driver = at_step(analysed(failureLimit=2), 1, analyst=verdicts("Pass"))
    outcome = AnalysisOutcome(at=driver.world.now, verdict="Fail", summary="bad")
    obs = driver.world.observe(analysis=outcome)
    once = decide(driver.world.spec, driver.status, obs)
    twice = decide(driver.world.spec, persist(once.status), obs)
    assert twice.status.analysis.consecutive_failures == 1
    assert twice.status.phase == "Progressing"


def test_a_check_about_a_superseded_canary_is_not_counted_for_the_new_one() -> None:
    driver = at_step(analysed(failureLimit=1), 1, analyst=verdicts("Pass"))
    new_template(driver, "v3")
    outcome = AnalysisOutcome(at=driver.world.now, verdict="Fail", summary="old canary")
    decision = decide(driver.world.spec, driver.status, driver.world.observe(analysis=outcome))
    assert decision.status.phase == "Progressing"
    assert decision.status.analysis.consecutive_failures == 0
    assert decision.status.history[-1].outcome == "RolledBack"  # the old one, judged first


def test_the_message_carries_the_latest_analysis_summary() -> None:
    driver = at_step(analysed(), 1, analyst=verdicts("Pass"))
    outcome = AnalysisOutcome(at=driver.world.now, verdict="Pass", summary="error-rate 0.21% <= 1%")
    decision = decide(driver.world.spec, driver.status, driver.world.observe(analysis=outcome))
    assert decision.status.message.endswith("; error-rate 0.21% <= 1%")
    assert decision.status.message.startswith("step 2/7: weight 5%; pause 30s until ")


# ---- replica-ratio mode ------------------------------------------------------------------------


def test_replica_ratio_mode_scales_both_tracks_and_reports_the_actual_ratio() -> None:
    driver = healthy_driver(make_spec(trafficRouting=None))
    new_template(driver, "v2")
    seen: list[tuple[int, int, int]] = []
    while driver.status.stage != "Promoting":
        driver.tick()
        shape = (
            driver.world.canary.replicas,
            driver.world.stable.replicas,
            driver.status.canary_weight,
        )
        if driver.status.stage == "Stepping" and (not seen or seen[-1] != shape):
            seen.append(shape)
    # setWeight 5 and 25 both mean 1 pod of 4 (25%); 50: 2 of 4; 100: all 4.
    assert seen == [(1, 4, 0), (1, 3, 25), (2, 3, 25), (2, 2, 50), (4, 2, 50)]
    # The last step hands over to promotion, which gives stable the new template at full size.
    assert driver.status.canary_weight == 100
    assert driver.world.writes[-1] == ApplyStable(revision=driver.world.template_hash, replicas=4)
    driver.run_until(lambda s: s.phase == "Healthy")
    assert (driver.world.stable.replicas, driver.world.canary.replicas) == (4, 0)


def test_replica_ratio_rollback_restores_stable_and_removes_the_canary_at_once() -> None:
    driver = at_step(make_spec(trafficRouting=None), 4)
    decision = driver.tick(manual="abort")
    rev = driver.status.canary_revision or ""
    assert writes(decision.actions) == [
        SetWeight(0),
        ScaleStable(replicas=4),
        ApplyCanary(revision=rev, replicas=0),
    ]


# ---- route problems and invalid specs ----------------------------------------------------------


def test_a_route_problem_holds_the_step_and_warns_once() -> None:
    driver = at_step(make_spec(), 2)
    driver.world.route_problem = "HTTPRoute demo has no backendRef to Service demo-canary"
    driver.run(20)
    assert driver.status.current_step_index == 2
    assert driver.world.weights[-1] == 5
    assert driver.world.event_reasons().count("RouteProblem") == 1
    assert "blocked: HTTPRoute demo has no backendRef" in driver.status.message
    driver.world.route_problem = None
    driver.run(2)
    assert driver.world.weights[-1] == 25
    assert "RouteFixed" in driver.world.event_reasons()


def test_a_rollback_still_tries_weight_zero_with_a_route_problem() -> None:
    driver = at_step(make_spec(), 3)
    driver.world.route_problem = "HTTPRoute demo not found"
    decision = driver.tick(manual="abort")
    assert weights(decision.actions) == [0]
    assert driver.status.phase == "RolledBack"


def test_a_rollback_with_a_broken_route_keeps_the_canary_until_weight_zero_is_written() -> None:
    driver = at_step(make_spec(), 4)
    driver.world.route_problem = "HTTPRoute demo has no backendRef to Service demo-stable"
    driver.tick(manual="abort")
    driver.world.weights.pop()  # the router could not write it
    driver.run(100)
    assert driver.world.canary.replicas == 2
    assert "canary scale-down waits for the route" in driver.status.message
    driver.world.route_problem = None
    fixed = driver.tick()
    assert writes(fixed.actions) == [SetWeight(0)]
    assert "RouteFixed" in [e.reason for e in events(fixed.actions)]
    driver.run(28)
    assert driver.world.canary.replicas == 2  # drain time counts from the weight write
    driver.run(3)
    assert driver.world.canary.replicas == 0


def test_a_fixed_route_gets_the_weight_in_force_written_again() -> None:
    driver = at_step(make_spec(), 3)
    driver.world.route_problem = "HTTPRoute demo not found"
    driver.tick()
    driver.world.route_problem = None
    assert weights(driver.tick().actions) == [25]


def test_an_invalid_spec_mid_rollout_takes_the_weight_off_the_canary() -> None:
    """Found: one PromQL typo at 50% froze the weight with no checks and no deadline."""
    driver = at_step(make_spec(), 3)
    assert driver.status.canary_weight == 25
    driver.world.invalid = "metric checkout: unknown template variable {{nope}}"
    first = driver.tick()
    assert writes(first.actions) == [SetWeight(0)]
    for _ in range(50):
        assert writes(driver.tick().actions) == []
    assert driver.status.phase == "Invalid"
    assert driver.status.stage == "Aborted" and driver.status.canary_weight == 0
    assert condition(driver.status, "RolledBack")[1] == "InvalidSpec"
    assert driver.world.event_reasons().count("Invalid") == 1
    driver.world.invalid = None
    driver.tick()
    assert driver.status.phase == "RolledBack"


def test_an_invalid_spec_without_canary_traffic_touches_nothing_and_resumes() -> None:
    steps = [{"pause": {"duration": "30s"}}, {"setWeight": 50}, {"setWeight": 100}]
    driver = at_step(make_spec(steps=steps), 0)
    driver.world.invalid = "metric checkout: unknown template variable {{nope}}"
    for _ in range(50):
        decision = driver.tick()
        assert writes(decision.actions) == []
    assert driver.status.phase == "Invalid"
    assert driver.status.message == driver.world.invalid
    assert condition(driver.status, "Progressing") == ("False", "Invalid")
    driver.world.invalid = None
    driver.tick()
    assert driver.status.phase == "Progressing"
    assert driver.status.current_step_index == 1  # the pause ran out while invalid


def test_an_invalid_spec_at_creation_creates_nothing() -> None:
    world = World(make_spec(), invalid="bad")
    decision = decide(world.spec, RolloutStatus(), world.observe())
    assert writes(decision.actions) == []
    assert decision.status.phase == "Invalid"
    assert decision.status.stage is None


# ---- conditions, history, hash -----------------------------------------------------------------


def test_conditions_change_transition_time_only_when_they_flip() -> None:
    driver = at_step(make_spec(), 0)
    progressing = next(c for c in driver.status.conditions if c.type == "Progressing")
    driver.run(20)
    again = next(c for c in driver.status.conditions if c.type == "Progressing")
    assert again.status == "True" and again.last_transition_time == progressing.last_transition_time
    driver.tick(manual="pause")
    paused = next(c for c in driver.status.conditions if c.type == "Progressing")
    assert paused.status == "False" and paused.last_transition_time > again.last_transition_time


def test_conditions_are_all_present_in_a_fixed_order() -> None:
    driver = at_step(make_spec(), 0)
    kinds = [c.type for c in driver.status.conditions]
    assert kinds == ["Available", "Progressing", "Paused", "Completed", "RolledBack"]
    assert condition(driver.status, "Completed")[0] == "False"


def test_history_keeps_the_last_ten() -> None:
    driver = healthy_driver(make_spec())
    for n in range(12):
        new_template(driver, f"v{n + 2}")
        driver.run(3)
        driver.tick(manual="abort")
    assert len(driver.status.history) == 10
    assert all(h.outcome == "RolledBack" for h in driver.status.history)
    expected = template_hash(PodTemplate.model_validate(image_template("v13")))
    assert driver.status.history[-1].revision == expected
    persist(driver.status)  # still valid against the status schema (maxItems 10)


def test_template_hash_is_short_stable_and_sensitive() -> None:
    a = PodTemplate.model_validate(image_template("v1"))
    reordered = PodTemplate.model_validate(
        {
            "spec": {"containers": [{"image": "demo:v1", "name": "app"}]},
            "metadata": {"labels": {"app": "demo"}},
        }
    )
    b = PodTemplate.model_validate(image_template("v2"))
    assert template_hash(a) == template_hash(reordered)
    assert template_hash(a) != template_hash(b)
    assert len(template_hash(a)) == 10
    assert int(template_hash(a), 16) >= 0


def test_status_survives_a_json_round_trip_at_every_stage() -> None:
    driver = at_step(make_spec(), 3)
    assert persist(driver.status) == driver.status
    assert driver.status.to_patch()["stage"] == "Stepping"
    assert "pauseReason" in driver.status.to_patch()
    assert "scaleDownAt" in driver.status.to_patch()


# ---- the plan edited under a running rollout ---------------------------------------------------


def _edit_steps(driver: Driver, steps: list[dict[str, Any]]) -> None:
    strategy = driver.world.spec.strategy.model_copy(
        update={"steps": make_spec(steps=steps).strategy.steps}
    )
    driver.world.spec = driver.world.spec.model_copy(update={"strategy": strategy})


def test_steps_shortened_past_the_current_one_promote_instead_of_crashing() -> None:
    driver = at_step(make_spec(), 5)
    _edit_steps(driver, [{"setWeight": 5}, {"setWeight": 100}])
    driver.tick()
    assert driver.status.stage == "Promoting"
    driver.run_until(lambda s: s.phase == "Healthy")
    assert driver.world.weights == [0, 5, 25, 50, 100, 0]


@pytest.mark.parametrize("routing", ["gateway", "ratio"])
def test_a_lowered_weight_in_an_edited_plan_never_takes_weight_back(routing: str) -> None:
    spec = make_spec() if routing == "gateway" else make_spec(trafficRouting=None)
    driver = at_step(spec, 5)
    written = driver.status.canary_weight
    canary_pods = driver.world.canary.replicas
    lowered: list[dict[str, Any]] = [
        {"setWeight": 5},
        {"pause": {"duration": "30s"}},
        {"setWeight": 10},
        {"pause": {"duration": "30s"}},
        {"setWeight": 10},
        {"pause": {"duration": "30s"}},
        {"setWeight": 20},
        {"pause": {}},
    ]
    _edit_steps(driver, lowered)
    driver.run_until(lambda s: s.current_step_index == 7)
    assert driver.status.canary_weight >= written
    assert driver.world.weights[-1] >= written
    assert driver.world.canary.replicas >= canary_pods


def test_a_replicas_change_mid_rollout_keeps_stable_at_full_size_in_gateway_mode() -> None:
    driver = at_step(make_spec(), 3)
    driver.world.spec = driver.world.spec.model_copy(update={"replicas": 8})
    decision = driver.tick()
    assert ScaleStable(replicas=8) in decision.actions
    assert ApplyCanary(revision=driver.status.canary_revision or "", replicas=2) in decision.actions


SHORT_PLAN = [
    {"setWeight": 5},
    {"pause": {"duration": "5s"}},
    {"setWeight": 50},
    {"pause": {}},
    {"setWeight": 100},
]


def _run_with_annotation(crash_at: int | None) -> tuple[Driver, int]:
    """A rollout through a pause {} released by `promote` as the CLI does it: an annotation with
    an id, removed in the same write as the status (so a crash leaves it in place)."""
    driver = healthy_driver(make_spec(steps=SHORT_PLAN))
    new_template(driver, "v2")
    annotation: tuple[ManualAction, str] | None = None
    for tick in range(300):
        if _promoted(driver.status, driver.world.template_hash):
            return driver, tick
        if driver.status.pause_reason == "Step" and annotation is None:
            annotation = ("promote", f"id-{tick}")
        kept = driver.status
        driver.tick(*(annotation or (None, None)))
        if tick == crash_at:
            driver.status = kept  # died after the writes, before the status (and annotation)
        else:
            annotation = None
    raise AssertionError("rollout did not finish")


def test_the_short_plan_takes_a_known_number_of_ticks() -> None:
    _, ticks = _run_with_annotation(crash_at=None)
    assert 10 < ticks < 30


@pytest.mark.parametrize("crash_at", range(30))
def test_a_crash_at_any_tick_neither_repeats_nor_skips_a_step(crash_at: int) -> None:
    driver, _ = _run_with_annotation(crash_at)
    deduped = [
        w for i, w in enumerate(driver.world.weights) if i == 0 or w != driver.world.weights[i - 1]
    ]
    assert deduped == [0, 5, 50, 100, 0]
    promotes = [e for e in driver.world.events if e.reason == "ManualPromote"]
    assert len(promotes) in (1, 2)  # a second only if the crash lost the first one's status
    assert {e.message for e in promotes} == {"step 4/5 (pause until promote) ended by user"}
    assert driver.status.history[-1].outcome == "Promoted"
    assert driver.world.stable.revision == driver.world.template_hash


@pytest.mark.parametrize("manual", ["abort", "promote", "retry"])
def test_manual_actions_while_invalid_are_refused_and_change_nothing(manual: ManualAction) -> None:
    driver = at_step(make_spec(), 2)
    driver.world.invalid = "bad"
    driver.tick()
    before = driver.status
    decision = driver.tick(manual=manual)
    assert writes(decision.actions) == []
    assert [e.reason for e in events(decision.actions)] == ["ManualActionRefused"]
    assert decision.status.current_step_index == before.current_step_index
    assert decision.status.stage == before.stage


def test_services_are_created_quietly_and_restored_loudly() -> None:
    """Found in e2e: the first tick both created the Services and warned ServiceRestored."""
    driver = healthy_driver(make_spec())
    assert driver.world.services == {"demo-stable", "demo-canary"}
    assert "ServiceRestored" not in driver.world.event_reasons()
    driver.world.services.discard("demo-canary")
    decision = driver.tick()
    assert EnsureServices(names=("demo-canary",)) in decision.actions
    assert "ServiceRestored" in driver.world.event_reasons()


def test_a_weight_step_waits_for_a_check_of_its_own_weight() -> None:
    """Found: steps 5, 25, 50, 100 with a 60 s interval promoted 5 s after one check taken 1 s
    after the 5% write. Each weight is held until a passing check whose whole window (30 s)
    came after that weight was written."""
    spec = make_spec(
        steps=[{"setWeight": 5}, {"setWeight": 25}, {"setWeight": 50}, {"setWeight": 100}],
        analysis=analysis_spec(interval="60s", window="30s"),
    )
    driver = at_step(spec, 0, analyst=verdicts("Pass"))
    written: dict[int, datetime] = {}
    for _ in range(1000):
        driver.tick()
        if driver.status.canary_weight not in written and driver.status.weight_set_at:
            written[driver.status.canary_weight] = driver.status.weight_set_at
        if driver.status.stage == "Promoting":
            break
    assert sorted(written) == [5, 25, 50, 100]
    checks_after = sorted(written.values())
    for earlier, later in itertools.pairwise(checks_after):
        assert (later - earlier).total_seconds() >= 30
    assert driver.status.stage == "Promoting"


# ---- Decision.recheck_at: a Rollout in flight may sleep until its next time-based turn ---------


def _walk(sleepy: bool, spec: RolloutSpec) -> tuple[list[str], float, int]:
    """v1 -> v2 until Healthy: ticking every second, or sleeping as wakeups.next_tick says
    (without watch events: the world's pods turn Ready whenever time passes)."""
    driver = healthy_driver(spec)
    new_template(driver, "v2")
    driver.events_before = len(driver.world.events)  # type: ignore[attr-defined]
    start, ticks = driver.world.now, 0
    driver.tick_seconds = 0.0 if sleepy else 1.0
    while driver.status.phase != "Healthy" or ticks == 0:
        decision = driver.tick()
        ticks += 1
        if sleepy:
            wrote = bool(writes(decision.actions) or events(decision.actions))
            delay = next_tick(driver.status, wrote, driver.world.now, None, decision.recheck_at)
            driver.world.pass_time(delay)
        assert ticks < 2000
    reasons = driver.world.event_reasons()[driver.events_before :]  # type: ignore[attr-defined]
    return reasons, (driver.world.now - start).total_seconds(), ticks


def test_sleeping_until_the_next_turn_walks_the_same_steps_as_ticking_every_second() -> None:
    spec = make_spec()  # pauses of 30 s between the weights
    each_second = _walk(False, spec)
    sleeping = _walk(True, spec)
    assert sleeping[0] == each_second[0]  # the same Events in the same order
    assert sleeping[1] <= each_second[1] + 2  # no later: every pause's end was a turn
    assert sleeping[2] < each_second[2] / 3, (sleeping[2], each_second[2])  # far fewer ticks


def test_recheck_at_names_the_pause_end_and_the_unavailable_canarys_grace() -> None:
    spec = make_spec()
    driver = at_step(spec, 1)  # pause 30s
    started = driver.status.step_started_at
    assert started is not None
    assert driver.tick().recheck_at == started + timedelta(seconds=30)
    driver = at_step(spec, 2)  # setWeight 25
    driver.world.canary_healthy = False  # no canary pod is Ready any more
    driver.run_until(lambda s: s.current_step_index == 4)
    decision = driver.tick()
    since = decision.status.canary_unavailable_since
    assert since is not None  # the grace (30 s) ends before the progress deadline (120 s)
    assert decision.recheck_at == since + timedelta(seconds=30)
