"""`kanary run --selector`: which Rollouts an operator instance serves."""

from __future__ import annotations

import pytest

from kanary.scope import Selector


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("", {}, True),
        ("shard=a", {"shard": "a"}, True),
        ("shard=a", {"shard": "b"}, False),
        ("shard==a", {"shard": "a"}, True),
        ("shard!=a", {}, True),
        ("shard!=a", {"shard": "a"}, False),
        ("shard", {"shard": ""}, True),
        ("shard", {}, False),
        ("!shard", {}, True),
        ("!shard", {"shard": "a"}, False),
        ("team=x, shard=a", {"team": "x", "shard": "a"}, True),
        ("team=x,shard=a", {"team": "x"}, False),
        ("kanary.dev/shard=a", {"kanary.dev/shard": "a"}, True),
    ],
)
def test_selector_matches_as_kubernetes_does(
    text: str, labels: dict[str, str], expected: bool
) -> None:
    assert Selector.parse(text).matches(labels) is expected


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("shard in (a,b)", "shard in (a"),
        ("sh ard=a", "'sh ard'"),
        ("shard=a b", "'a b'"),
        ("=a", "''"),
    ],
)
def test_a_selector_it_cannot_read_is_refused_naming_the_part(text: str, named: str) -> None:
    with pytest.raises(ValueError, match="label selector part") as e:
        Selector.parse(text)
    assert named in str(e.value)
