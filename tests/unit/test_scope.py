"""`kanary run --selector`: which Rollouts an operator instance serves."""

from __future__ import annotations

import pytest

from kanary.scope import Selector, watch_selectors


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


@pytest.mark.parametrize(
    "text", ["shard=a", "shard!=a", "shard", "!shard", "team=x,kanary.dev/shard=a", ""]
)
def test_a_selector_is_sent_to_the_api_server_as_it_was_read(text: str) -> None:
    assert Selector.parse(text).query() == text
    assert Selector.parse(" team == x , !b ").query() == "team=x,!b"


def test_watches_are_bounded_server_side_by_what_kanary_owns() -> None:
    owned = watch_selectors(Selector(()))
    assert owned == {
        ("apps", "v1", "deployments"): "kanary.dev/rollout",
        ("", "v1", "services"): "kanary.dev/rollout",
        ("apps", "v1", "controllerrevisions"): "kanary.dev/rollout",
        ("", "v1", "pods"): "kanary.dev/rollout,kanary.dev/track",
        ("gateway.networking.k8s.io", "v1", "httproutes"): "kanary.dev/steered",
    }
    sharded = watch_selectors(Selector.parse("shard=a"))
    assert sharded[("kanary.dev", "v1alpha1", "rollouts")] == "shard=a"
    assert sharded.keys() - owned.keys() == {("kanary.dev", "v1alpha1", "rollouts")}
