"""Owned-object manifests and the Gateway API weight patch (pure parts of the I/O layer)."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch  # type: ignore[import-untyped]
import pytest

from kanary.objects import LABEL_REVISION, LABEL_ROLLOUT, LABEL_TRACK, deployment, services
from kanary.routers.gateway import route_problem, route_weights, weight_patch
from kanary.spec import RolloutSpec

SPEC: dict[str, Any] = {
    "replicas": 4,
    "template": {
        "metadata": {"labels": {"app": "gin-demo"}},
        "spec": {"containers": [{"name": "app", "image": "kanary/gin-demo:v2"}]},
    },
    "strategy": {"steps": [{"setWeight": 5}, {"pause": {"duration": "10s"}}, {"setWeight": 100}]},
}


def route(backends: list[tuple[str, int]], rv: str = "7") -> dict[str, Any]:
    return {
        "metadata": {"name": "gin-demo", "resourceVersion": rv},
        "spec": {
            "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": []},
                {"backendRefs": [{"name": n, "port": 80, "weight": w} for n, w in backends]},
            ]
        },
    }


def test_deployment_selector_is_immutable_and_pods_carry_revision() -> None:
    spec = RolloutSpec.model_validate(SPEC)
    a = deployment(spec, "gin-demo", "demo", "uid-1", "canary", "abc", 1)
    b = deployment(spec, "gin-demo", "demo", "uid-1", "canary", "def", 3)
    assert a["spec"]["selector"] == b["spec"]["selector"]
    assert LABEL_REVISION not in a["spec"]["selector"]["matchLabels"]
    pod_labels = b["spec"]["template"]["metadata"]["labels"]
    assert pod_labels == {
        "app": "gin-demo",
        LABEL_ROLLOUT: "gin-demo",
        LABEL_TRACK: "canary",
        LABEL_REVISION: "def",
    }
    assert b["spec"]["replicas"] == 3
    assert b["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert b["metadata"]["name"] == "gin-demo-canary"


def test_replica_ratio_mode_adds_a_service_across_both_tracks() -> None:
    plain = RolloutSpec.model_validate(SPEC)
    gateway = RolloutSpec.model_validate(
        {**SPEC, "trafficRouting": {"gatewayAPI": {"httpRoute": "gin-demo"}}}
    )
    names = [s["metadata"]["name"] for s in services(plain, "gin-demo", "demo", "u")]
    assert names == ["gin-demo-stable", "gin-demo-canary", "gin-demo"]
    assert LABEL_TRACK not in services(plain, "gin-demo", "demo", "u")[2]["spec"]["selector"]
    assert len(services(gateway, "gin-demo", "demo", "u")) == 2


def test_route_problem_names_the_missing_backend() -> None:
    assert route_problem(None, "r", "gin-demo") == "HTTPRoute r not found"
    msg = route_problem(route([("gin-demo-stable", 100)]), "r", "gin-demo")
    assert msg is not None and "gin-demo-canary" in msg
    assert (
        route_problem(route([("gin-demo-stable", 100), ("gin-demo-canary", 0)]), "r", "gin-demo")
        is None
    )


@pytest.mark.parametrize("weight", [0, 5, 25, 100])
def test_weight_patch_changes_only_our_weights(weight: int) -> None:
    original = route([("other", 3), ("gin-demo-stable", 100), ("gin-demo-canary", 0)])
    ops = weight_patch(original, "gin-demo", weight)
    assert ops[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "7"}
    patched = jsonpatch.apply_patch(copy.deepcopy(original), ops)
    assert route_weights(patched, "gin-demo") == {
        "gin-demo-stable": 100 - weight,
        "gin-demo-canary": weight,
    }
    assert patched["spec"]["rules"][1]["backendRefs"][0] == {
        "name": "other",
        "port": 80,
        "weight": 3,
    }


def test_weight_patch_refuses_a_route_changed_since_read() -> None:
    ops = weight_patch(
        route([("gin-demo-stable", 100), ("gin-demo-canary", 0)], rv="7"), "gin-demo", 5
    )
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(
            route([("gin-demo-stable", 100), ("gin-demo-canary", 0)], rv="8"), ops
        )
