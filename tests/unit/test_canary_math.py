"""Canary arithmetic: pods per weight, the replica-ratio split, the step plan."""

from __future__ import annotations

import pytest

from kanary import canary_math
from kanary.spec import Step


def steps(*items: int | str | None) -> list[Step]:
    """Ints are setWeight, strings are timed pauses, None is pause {}."""
    out = []
    for item in items:
        if isinstance(item, int):
            out.append(Step(set_weight=item))
        else:
            out.append(Step.model_validate({"pause": {} if item is None else {"duration": item}}))
    return out


@pytest.mark.parametrize(
    ("replicas", "weight", "pods"),
    [
        (4, 0, 0),
        (4, 1, 1),
        (4, 5, 1),
        (4, 25, 1),
        (4, 26, 2),
        (4, 50, 2),
        (4, 100, 4),
        (10, 5, 1),
        (10, 33, 4),
        (3, 34, 2),
        (1, 1, 1),
        (1000, 1, 10),
    ],
)
def test_replicas_for_weight_is_ceiling(replicas: int, weight: int, pods: int) -> None:
    assert canary_math.replicas_for_weight(replicas, weight) == pods


def test_replicas_for_weight_never_decreases_with_weight() -> None:
    for replicas in range(1, 30):
        pods = [canary_math.replicas_for_weight(replicas, w) for w in range(101)]
        assert pods == sorted(pods)
        assert pods[-1] == replicas


@pytest.mark.parametrize(
    ("replicas", "weight", "canary", "stable", "percent"),
    [
        (4, 5, 1, 3, 25),
        (4, 50, 2, 2, 50),
        (4, 100, 4, 0, 100),
        (4, 0, 0, 4, 0),
        (3, 10, 1, 2, 33),
        (3, 50, 2, 1, 67),
        (8, 1, 1, 7, 13),
    ],
)
def test_ratio_split_reports_the_actual_share(
    replicas: int, weight: int, canary: int, stable: int, percent: int
) -> None:
    split = canary_math.ratio_split(replicas, weight)
    assert (split.canary, split.stable, split.percent) == (canary, stable, percent)
    assert split.canary + split.stable == replicas


def test_ratio_percent_of_nothing_is_zero() -> None:
    assert canary_math.ratio_percent(0, 0) == 0


def test_ratio_percent_rounds_half_up() -> None:
    assert canary_math.ratio_percent(1, 7) == 13  # 12.5
    assert canary_math.ratio_percent(1, 1) == 50


def test_step_label_is_one_based() -> None:
    plan = steps(5, "30s", 25, None, 100)
    assert canary_math.step_count(plan) == 5
    assert canary_math.step_label(0, plan) == "step 1/5"
    assert canary_math.step_label(4, plan) == "step 5/5"


def test_weight_in_force_through_each_step() -> None:
    plan = steps("10s", 5, "30s", 25, None, 100)
    assert [canary_math.weight_through(plan, i) for i in range(6)] == [0, 5, 5, 25, 25, 100]
    assert [canary_math.weight_before(plan, i) for i in range(6)] == [0, 0, 5, 5, 25, 25]


def test_describe_step() -> None:
    plan = steps(25, "30s", None)
    assert [canary_math.describe_step(s) for s in plan] == [
        "setWeight 25",
        "pause 30s",
        "pause until promote",
    ]


def test_replicas_for_ratio_inverts_the_reported_share() -> None:
    for replicas in range(1, 25):
        for canary in range(replicas + 1):
            share = canary_math.ratio_percent(canary, replicas - canary)
            assert canary_math.replicas_for_ratio(replicas, share) == canary


def test_replicas_for_ratio_of_a_share_between_pods_rounds_up() -> None:
    assert canary_math.replicas_for_ratio(4, 26) == 2
    assert canary_math.replicas_for_ratio(4, 0) == 0
    assert canary_math.replicas_for_ratio(4, 100) == 4
