"""The generated Rollout CRD: up to date, structural, and in agreement with the pydantic models.

INVALID and VALID below are the Rollouts tests/integration/test_crd_validation.py sends to the
real API server; here they run offline against the models and the CRD's schema (everything but
CEL, which needs the API server).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from pydantic import BaseModel, Field

from kanary import crdgen
from kanary.spec import RolloutSpec
from kanary.status import RolloutStatus

REPO_ROOT = Path(__file__).resolve().parents[2]
CRDS = REPO_ROOT / "crds"
EXAMPLES = REPO_ROOT / "manifests" / "examples"

Schema = dict[str, Any]


def committed_crd() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((CRDS / crdgen.CRD_FILE).read_text())
    return doc


def root_schema() -> Schema:
    schema: Schema = committed_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


# ------------------------------------------------------------------------------- drift ---


def test_committed_crd_is_generated_from_the_models() -> None:
    diff = crdgen.drift(CRDS)
    assert diff == "", f"crds/ is stale: run `make crds`\n{diff}"


def test_check_exits_non_zero_with_a_diff_on_drift(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert crdgen.main(["--write", str(tmp_path)]) == 0
    assert crdgen.main(["--check", str(tmp_path)]) == 0
    path = tmp_path / crdgen.CRD_FILE
    path.write_text(path.read_text().replace("maximum: 100", "maximum: 101"))
    capsys.readouterr()
    assert crdgen.main(["--check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "-                          maximum: 101" in out
    assert "+                          maximum: 100" in out
    assert "make crds" in out


def test_check_reports_a_missing_file(tmp_path: Path) -> None:
    assert crdgen.main(["--check", str(tmp_path)]) == 1


# -------------------------------------------------------------------------- structural ---


def nodes(schema: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    """Every schema node with its path (".spec.strategy.steps[*]")."""
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from nodes(child, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}.*")
    if "items" in schema:
        yield from nodes(schema["items"], f"{path}[*]")


def structural_problems(root: Schema) -> list[str]:
    """What makes a schema non-structural (k8s.io/apiextensions-apiserver's rules, and those
    of ours that keep the generated schema plain)."""
    problems = []
    for path, node in nodes(root):
        where = path or "<root>"
        for key in ("$ref", "$defs", "definitions", "anyOf", "oneOf", "allOf", "not", "title"):
            if key in node:
                problems.append(f"{where}: {key}")
        type_ = node.get("type")
        if isinstance(type_, list) or type_ == "null":
            problems.append(f"{where}: type {type_!r}")
        exempt = node.get("x-kubernetes-int-or-string") or node.get(
            "x-kubernetes-preserve-unknown-fields"
        )
        if not type_ and not exempt:
            problems.append(f"{where}: no type")
        if node.get("x-kubernetes-int-or-string") and type_:
            problems.append(f"{where}: int-or-string with a type")
        if "additionalProperties" in node:
            if not isinstance(node["additionalProperties"], dict):
                problems.append(f"{where}: additionalProperties: {node['additionalProperties']}")
            if "properties" in node:
                problems.append(f"{where}: both properties and additionalProperties")
        for key, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if key in node and (not isinstance(node[key], bool) or bound not in node):
                problems.append(f"{where}: {key} must be a boolean beside {bound}")
        if node.get("nullable") and ("enum" in node or path.startswith(".spec")):
            problems.append(f"{where}: nullable (spec nulls are pruned; enums refuse null)")
        for field in node.get("required", []):
            if field not in node.get("properties", {}):
                problems.append(f"{where}: required {field} is not a property")
        if node.get("x-kubernetes-list-type") == "map":
            item = node["items"]
            for key in node["x-kubernetes-list-map-keys"]:
                if key not in item.get("required", []) and "default" not in item["properties"][key]:
                    problems.append(f"{where}: list-map key {key} neither required nor defaulted")
        if "default" in node:
            problems.extend(f"{where}: default: {e}" for e in validate(node["default"], node))
    return problems


def test_crd_schema_is_structural() -> None:
    assert structural_problems(root_schema()) == []


def test_alert_provider_crd_schema_is_structural() -> None:
    root = crdgen.provider_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert structural_problems(root) == []
    assert root["properties"]["spec"]["properties"]["type"]["enum"] == [
        "alertmanager",
        "slack",
        "msteams",
        "webhook",
    ]


def test_checker_catches_what_pydantic_emits_raw() -> None:
    raw = RolloutSpec.model_json_schema(by_alias=True)
    raw.pop("$defs")
    problems = structural_problems(raw)
    assert any("$ref" in p for p in problems)
    assert any("additionalProperties: False" in p for p in problems)


class _Inner(BaseModel):
    n: int = Field(default=3, gt=0)


class _Sample(BaseModel):
    kind: Literal["only"]
    inner: _Inner | None = None
    choice: Literal["a", "b"] | None = None
    labels: dict[str, str] = Field(default_factory=dict)


def test_converter_inlines_flattens_and_rewrites() -> None:
    spec = crdgen.schema_of(_Sample, mode="validation", nullable=False, defaults=True)
    status = crdgen.schema_of(_Sample, mode="validation", nullable=True, defaults=False)
    assert structural_problems(spec) == [] and structural_problems(status) == []
    assert spec["properties"]["kind"] == {"type": "string", "enum": ["only"]}
    inner = spec["properties"]["inner"]
    assert inner["properties"]["n"] == {
        "type": "integer",
        "default": 3,
        "minimum": 0,
        "exclusiveMinimum": True,
    }
    assert "nullable" not in inner
    assert status["properties"]["inner"]["nullable"] is True
    assert "default" not in status["properties"]["inner"]["properties"]["n"]
    # A null is refused against an enum even when nullable: leave it to be pruned.
    assert "nullable" not in status["properties"]["choice"]
    assert spec["properties"]["labels"] == {
        "type": "object",
        "additionalProperties": {"type": "string"},
    }


class _Union(BaseModel):
    x: int | str


class _Set(BaseModel):
    x: set[str]


@pytest.mark.parametrize("model", [_Union, _Set])
def test_converter_refuses_what_is_not_structural(model: type[BaseModel]) -> None:
    with pytest.raises(crdgen.SchemaError):
        crdgen.schema_of(model, mode="validation", nullable=False, defaults=True)


def test_cel_rules_have_messages_and_field_paths_that_exist() -> None:
    rules = 0
    for path, node in nodes(root_schema()):
        for rule in node.get("x-kubernetes-validations", []):
            rules += 1
            assert rule["rule"] and rule["message"], (path, rule)
            target = node
            for name in rule.get("fieldPath", "").split(".")[1:]:
                target = target["properties"][name]
    assert rules >= 10


def test_spec_and_status_are_the_models() -> None:
    props = root_schema()["properties"]
    assert root_schema()["required"] == ["spec"]
    spec_fields = {f.alias or name for name, f in RolloutSpec.model_fields.items()}
    status_fields = {f.alias or name for name, f in RolloutStatus.model_fields.items()}
    assert set(props["spec"]["properties"]) == spec_fields
    assert set(props["status"]["properties"]) == status_fields
    # Where the models put the extensions, they land.
    template = props["spec"]["properties"]["template"]["properties"]
    assert template["spec"]["x-kubernetes-preserve-unknown-fields"] is True
    assert props["spec"]["properties"]["service"]["properties"]["targetPort"] == {
        "default": "http",
        "x-kubernetes-int-or-string": True,
    }
    metrics = props["spec"]["properties"]["strategy"]["properties"]["analysis"]["properties"][
        "metrics"
    ]
    assert metrics["x-kubernetes-list-type"] == "map"
    assert metrics["x-kubernetes-list-map-keys"] == ["name"]
    assert props["spec"]["properties"]["selector"]["properties"]["matchLabels"][
        "additionalProperties"
    ] == {"type": "string", "maxLength": 63}


def test_crd_names_and_subresources() -> None:
    crd = committed_crd()
    assert crd["metadata"]["name"] == "rollouts.kanary.dev"
    spec = crd["spec"]
    assert spec["group"] == "kanary.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "Rollout"
    assert spec["names"]["plural"] == "rollouts"
    assert "ro" not in spec["names"]["shortNames"]  # Argo Rollouts' short name
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


def test_printer_columns() -> None:
    [version] = committed_crd()["spec"]["versions"]
    columns = version["additionalPrinterColumns"]
    assert [(c["name"], c.get("priority", 0)) for c in columns] == [
        ("Phase", 0),
        ("Step", 0),
        ("Weight", 0),
        ("Stable", 0),
        ("Canary", 0),
        ("Age", 0),
        ("Strategy", 1),
        ("Routing", 1),
        ("Message", 1),
    ]
    status = root_schema()["properties"]["status"]["properties"]
    for column in columns:
        section, field = column["jsonPath"].split(".")[1:]
        if section == "metadata":
            assert (field, column["type"]) == ("creationTimestamp", "date")
        else:
            assert status[field]["type"] == column["type"], column


# ------------------------------------------------- examples and cases, offline parity ---


Spec = dict[str, Any]
DELETE = object()


def example(name: str = "rollout-gin-demo.yaml") -> dict[str, Any]:
    """A Rollout from manifests/examples, as a fresh dict."""
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    return doc


def edit(path: str, value: Any) -> Callable[[Spec], None]:
    """An edit of the spec: set (or, with DELETE, remove) the field at a dotted path, e.g.
    "strategy.steps[0].setWeight"."""
    keys: list[str | int] = []
    for part in path.split("."):
        name, *indexes = re.split(r"\[(\d+)\]", part)
        keys.append(name)
        keys.extend(int(i) for i in indexes if i)

    def apply(spec: Spec) -> None:
        node: Any = spec
        for key in keys[:-1]:
            node = node[key]
        if value is DELETE:
            del node[keys[-1]]
        else:
            node[keys[-1]] = copy.deepcopy(value)

    return apply


def edits(*fns: Callable[[Spec], None]) -> Callable[[Spec], None]:
    def apply(spec: Spec) -> None:
        for fn in fns:
            fn(spec)

    return apply


@dataclass(frozen=True)
class Case:
    id: str
    change: Callable[[Spec], None]
    field: str  # the API server's message must name this field
    words: str = ""  # ... and say this (the CEL rule's message, mostly)
    base: str = "rollout-gin-demo.yaml"
    # False where only the API server checks: pydantic passes the PodSpec through unchecked.
    pydantic_refuses: bool = True

    def body(self, name: str | None = None) -> dict[str, Any]:
        body = example(self.base)
        self.change(body["spec"])
        body["metadata"]["name"] = name or self.id
        return body


_HEADER = {"headerName": "X-Canary", "headerValue": {"exact": "always"}}


def _steps(*steps: Spec) -> Callable[[Spec], None]:
    return edit("strategy.steps", list(steps))


INVALID: list[Case] = [
    Case(
        "weight-over-100",
        edit("strategy.steps[0].setWeight", 101),
        "spec.strategy.steps[0].setWeight",
    ),
    Case(
        "negative-weight",
        edit("strategy.steps[0].setWeight", -5),
        "spec.strategy.steps[0].setWeight",
    ),
    Case(
        "decreasing-weights",
        _steps({"setWeight": 50}, {"pause": {"duration": "10s"}}, {"setWeight": 25}),
        "spec.strategy.steps",
        "never decrease",
    ),
    Case(
        "empty-steps", _steps(), "spec.strategy.steps", "give either steps (a canary) or blueGreen"
    ),
    Case(
        "steps-and-blue-green",
        edit("strategy.blueGreen", {"autoPromotionSeconds": 30}),
        "spec.strategy.steps",
        "give either steps (a canary) or blueGreen",
    ),
    Case(
        "blue-green-without-route",
        edits(
            edit("trafficRouting", DELETE),
            edit("strategy.steps", DELETE),
            edit("strategy.blueGreen", {}),
        ),
        "spec.strategy.blueGreen",
        "blueGreen needs spec.trafficRouting.gatewayAPI",
    ),
    Case(
        "only-pauses",
        _steps({"pause": {"duration": "10s"}}, {"pause": {}}),
        "spec.strategy.steps",
        "at least one setWeight",
    ),
    Case(
        "step-with-both",
        edit("strategy.steps[0]", {"setWeight": 5, "pause": {"duration": "1m"}}),
        "spec.strategy.steps[0]",
        "one of setWeight, pause, setHeaderRoute, setMirror",
    ),
    Case(
        "empty-step",
        edit("strategy.steps[0]", {}),
        "spec.strategy.steps[0]",
        "one of setWeight, pause, setHeaderRoute, setMirror",
    ),
    Case(
        "bad-pause-duration",
        edit("strategy.steps[1].pause.duration", "30 seconds"),
        "spec.strategy.steps[1].pause.duration",
    ),
    Case("bad-window", edit("strategy.analysis.window", "30"), "spec.strategy.analysis.window"),
    Case(
        "zero-interval",
        edit("strategy.analysis.interval", "0s"),
        "spec.strategy.analysis.interval",
        "must be positive",
    ),
    Case(
        "zero-prometheus-timeout",
        edit("strategy.analysis.prometheus.timeout", "0ms"),
        "spec.strategy.analysis.prometheus.timeout",
        "must be positive",
    ),
    Case("missing-template", edit("template", DELETE), "spec.template"),
    Case("missing-strategy", edit("strategy", DELETE), "spec.strategy"),
    Case("no-containers", edit("template.spec.containers", []), "spec.template.spec.containers"),
    Case(
        "container-without-image",
        edit("template.spec.containers[0].image", DELETE),
        "spec.template.spec.containers[0].image",
        pydantic_refuses=False,
    ),
    Case(
        "unknown-router-field",
        edit("trafficRouting.gatewayAPI.weightOnly", True),
        "spec.trafficRouting.gatewayAPI.weightOnly",
    ),
    Case(
        "unknown-router",
        edit("trafficRouting", {"istio": {"virtualService": "gin-demo"}}),
        "spec.trafficRouting.istio",
    ),
    Case("unknown-spec-field", edit("replica", 3), "spec.replica"),
    Case(
        "empty-httproute-name",
        edit("trafficRouting.gatewayAPI.httpRoute", ""),
        "spec.trafficRouting.gatewayAPI.httpRoute",
    ),
    Case(
        "metric-without-bound",
        edit("strategy.analysis.metrics[0]", {"name": "error-rate"}),
        "spec.strategy.analysis.metrics",
        "needs a bound",
    ),
    Case(
        "judge-marginal-over-pass",
        edit("strategy.analysis.mannWhitney", {"pass": 70, "marginal": 80}),
        "spec.strategy.analysis.mannWhitney.marginal",
        "marginal must not exceed pass",
    ),
    Case(
        "judge-unknown",
        edit("strategy.analysis.judge", "kayenta"),
        "spec.strategy.analysis.judge",
    ),
    Case(
        "custom-metric-without-query",
        edit("strategy.analysis.metrics[2].query", DELETE),
        "spec.strategy.analysis.metrics[2]",
        "needs a query",
    ),
    Case(
        "source-gateway-without-route",
        edits(edit("trafficRouting", DELETE), edit("strategy.analysis.source", "gateway")),
        "spec.strategy.analysis.source",
        "source gateway needs spec.trafficRouting.gatewayAPI",
    ),
    Case(
        "header-route-without-route",
        edits(
            edit("trafficRouting", DELETE),
            edit("strategy.steps[0]", {"setHeaderRoute": {"match": [_HEADER]}}),
        ),
        "spec.strategy.steps",
        "setHeaderRoute and setMirror need spec.trafficRouting.gatewayAPI",
    ),
    Case(
        "mirror-judged-at-the-gateway",
        edits(
            edit("strategy.steps[0]", {"setMirror": {"percent": 50}}),
            edit("strategy.analysis.source", "gateway"),
        ),
        "spec.strategy.analysis.source",
        "source gateway cannot judge setMirror",
    ),
    Case(
        "mirror-over-100",
        edit("strategy.steps[0]", {"setMirror": {"percent": 101}}),
        "spec.strategy.steps[0].setMirror.percent",
    ),
    Case(
        "header-value-two-kinds",
        edit(
            "strategy.steps[0]",
            {
                "setHeaderRoute": {
                    "match": [
                        {"headerName": "X-Canary", "headerValue": {"exact": "1", "prefix": "1"}}
                    ]
                }
            },
        ),
        "spec.strategy.steps[0].setHeaderRoute.match[0].headerValue",
        "exactly one of exact, prefix, regex",
    ),
    Case(
        "header-and-cookie",
        edit(
            "strategy.steps[0]",
            {"setHeaderRoute": {"match": [{**_HEADER, "cookie": {"name": "c", "value": "1"}}]}},
        ),
        "spec.strategy.steps[0].setHeaderRoute.match[0]",
        "either headerName with headerValue, or cookie",
    ),
    Case(
        "header-name-not-a-token",
        edit(
            "strategy.steps[0]",
            {
                "setHeaderRoute": {
                    "match": [{"headerName": "X Canary", "headerValue": {"exact": "1"}}]
                }
            },
        ),
        "spec.strategy.steps[0].setHeaderRoute.match[0].headerName",
    ),
    Case(
        "step-weight-and-header",
        edit("strategy.steps[0]", {"setWeight": 5, "setHeaderRoute": {"match": [_HEADER]}}),
        "spec.strategy.steps[0]",
        "one of setWeight, pause, setHeaderRoute, setMirror",
    ),
    Case(
        "unknown-source",
        edit("strategy.analysis.source", "mesh"),
        "spec.strategy.analysis.source",
    ),
    Case(
        "metric-min-over-max",
        edit("strategy.analysis.metrics[0].min", 0.5),
        "spec.strategy.analysis.metrics[0]",
        "min must not exceed max",
    ),
    Case(
        "duplicate-metric",
        edit("strategy.analysis.metrics[1].name", "error-rate"),
        "spec.strategy.analysis.metrics[1]",
    ),
    Case(
        "bad-metric-name",
        edit("strategy.analysis.metrics[2].name", "Checkout_Errors"),
        "spec.strategy.analysis.metrics[2].name",
    ),
    Case(
        "zero-max-ratio",
        edit("strategy.analysis.metrics[0].maxRatio", 0),
        "spec.strategy.analysis.metrics[0].maxRatio",
    ),
    Case(
        "bad-prometheus-url",
        edit("strategy.analysis.prometheus.url", "prometheus.monitoring.svc:9090"),
        "spec.strategy.analysis.prometheus.url",
    ),
    Case(
        "analysis-without-metrics",
        edit("strategy.analysis.metrics", DELETE),
        "spec.strategy.analysis.metrics",
    ),
    Case(
        "bad-on-inconclusive",
        edit("strategy.analysis.onInconclusive", "ignore"),
        "spec.strategy.analysis.onInconclusive",
    ),
    Case(
        "zero-failure-limit",
        edit("strategy.analysis.failureLimit", 0),
        "spec.strategy.analysis.failureLimit",
    ),
    Case("replicas-0", edit("replicas", 0), "spec.replicas"),
    Case("port-out-of-range", edit("service.port", 70000), "spec.service.port"),
    Case(
        "zero-max-pod-ready-seconds",
        edit("strategy.readiness.maxPodReadySeconds", 0),
        "spec.strategy.readiness.maxPodReadySeconds",
    ),
    Case(
        "zero-progress-deadline",
        edit("strategy.progressDeadlineSeconds", 0),
        "spec.strategy.progressDeadlineSeconds",
    ),
    Case(
        "negative-scale-down-delay",
        edit("strategy.abortScaleDownDelaySeconds", -1),
        "spec.strategy.abortScaleDownDelaySeconds",
    ),
    Case(
        "selector-not-matching-labels",
        edit("selector.matchLabels", {"app": "other"}),
        "spec.selector.matchLabels",
        "must match spec.template.metadata.labels",
    ),
    Case(
        "no-selector-no-labels",
        edits(edit("selector", DELETE), edit("template.metadata.labels", DELETE)),
        "spec.template.metadata.labels",
        "needed when spec.selector is omitted",
    ),
    Case(
        "alert-event-twice",
        edit("notifications", {"events": [{"event": "RolledBack"}, {"event": "RolledBack"}]}),
        "spec.notifications.events",
        "each event may be listed once",
    ),
    Case(
        "alert-event-unknown",
        edit("notifications", {"events": [{"event": "Exploded"}]}),
        "spec.notifications.events[0].event",
    ),
    Case(
        "alert-severity-unknown",
        edit("notifications", {"events": [{"event": "Paused", "severity": "page"}]}),
        "spec.notifications.events[0].severity",
    ),
    Case(
        "gate-type-twice",
        edit(
            "strategy.gates",
            [{"type": "pre-rollout", "provider": "a"}, {"type": "pre-rollout", "provider": "b"}],
        ),
        "spec.strategy.gates",
        "each gate type may be listed once",
    ),
    Case(
        "gate-zero-timeout",
        edit("strategy.gates", [{"type": "pre-rollout", "provider": "a", "timeout": "0s"}]),
        "spec.strategy.gates[0].timeout",
        "timeout must be positive",
    ),
]

VALID: list[Case] = [
    Case("gin-demo", edits(), ""),
    Case("replica-ratio", edits(), "", base="rollout-replica-ratio.yaml"),
    Case("blue-green-example", edits(), "", base="rollout-blue-green.yaml"),
    # An explicit null is the field omitted, for the API server (it prunes non-nullable nulls
    # before validation) as for pydantic.
    Case(
        "explicit-nulls", edits(edit("strategy.steps[0].pause", None), edit("selector", None)), ""
    ),
    Case("int-target-port", edit("service.targetPort", 8080), ""),
    Case(
        "blue-green",
        edits(
            edit("strategy.steps", DELETE),
            edit("strategy.blueGreen", {"previewHeader": [_HEADER], "autoPromotionSeconds": 0}),
        ),
        "",
    ),
    Case("mirror", edit("strategy.steps[0]", {"setMirror": {"percent": 50}}), ""),
    Case(
        "blue-green-manual",
        edits(edit("strategy.steps", DELETE), edit("strategy.blueGreen", {})),
        "",
    ),
    Case(
        "header-routes",
        edit(
            "strategy.steps",
            [
                {
                    "setHeaderRoute": {
                        "match": [_HEADER, {"cookie": {"name": "beta", "value": "on"}}]
                    }
                },
                {"pause": {}},
                {
                    "setHeaderRoute": {
                        "match": [{"headerName": "X-Tier", "headerValue": {"regex": "^gold$"}}]
                    }
                },
                {"setWeight": 50},
                {"setHeaderRoute": {}},
                {"setWeight": 100},
            ],
        ),
        "",
    ),
    Case("no-analysis", edit("strategy.analysis", DELETE), ""),
    Case(
        "judge-without-bounds",
        edits(
            edit("strategy.analysis.judge", "mannWhitney"),
            edit(
                "strategy.analysis.metrics",
                [
                    {"name": "latency-p50", "direction": "increase", "allowedIncrease": 1.1},
                    {"name": "error-rate", "critical": True, "mustHaveData": True},
                ],
            ),
            edit("strategy.analysis.mannWhitney", {"confidence": 0.95, "step": "5s"}),
        ),
        "",
    ),
    Case("notifications-defaults", edit("notifications", {"providers": ["oncall"]}), ""),
    Case(
        "notifications-and-gates",
        edits(
            edit(
                "notifications",
                {
                    "providers": ["oncall", "chat"],
                    "events": [{"event": "RolledBack"}, {"event": "Promoted", "severity": "info"}],
                    "template": "{{rollout}}: {{reason}}",
                },
            ),
            edit("strategy.gates", [{"type": "confirm-promotion", "provider": "gate"}]),
        ),
        "",
    ),
]


def _path_join(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else key


_TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
}


def _is_a(value: Any, type_name: str) -> bool:
    if isinstance(value, bool):
        return type_name == "boolean"
    return isinstance(value, _TYPES[type_name])


def validate(value: Any, schema: Schema, path: str = "") -> list[str]:
    """The API server's OpenAPI checks on a value (types, required, unknown fields, enums,
    patterns, bounds, list-map keys); not CEL. Messages start with the field path, as its do."""
    if value is None or path == "metadata":  # ObjectMeta is the API server's own
        return []
    if schema.get("x-kubernetes-int-or-string"):
        ok = isinstance(value, (int, str)) and not isinstance(value, bool)
        return [] if ok else [f"{path}: not an int or string"]
    if not _is_a(value, schema["type"]):
        return [f"{path}: not of type {schema['type']}"]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: Unsupported value {value!r}")
    if "pattern" in schema and not re.search(schema["pattern"], value):
        errors.append(f"{path}: should match {schema['pattern']}")
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and (value < low or (schema.get("exclusiveMinimum") and value == low)):
        errors.append(f"{path}: minimum {low}")
    if high is not None and (value > high or (schema.get("exclusiveMaximum") and value == high)):
        errors.append(f"{path}: maximum {high}")
    for key in ("minLength", "minItems", "minProperties"):
        if key in schema and len(value) < schema[key]:
            errors.append(f"{path}: {key} {schema[key]}")
    for key in ("maxLength", "maxItems", "maxProperties"):
        if key in schema and len(value) > schema[key]:
            errors.append(f"{path}: {key} {schema[key]}")
    if schema["type"] == "object":
        props = schema.get("properties", {})
        # The API server prunes a null that its schema does not call nullable: it is omitted.
        present = {
            k: v for k, v in value.items() if v is not None or props.get(k, {}).get("nullable")
        }
        required = schema.get("required", [])
        errors.extend(
            f"{_path_join(path, f)}: Required value" for f in required if f not in present
        )
        for key, item in present.items():
            if key in props:
                errors.extend(validate(item, props[key], _path_join(path, key)))
            elif isinstance(schema.get("additionalProperties"), dict):
                errors.extend(validate(item, schema["additionalProperties"], _path_join(path, key)))
            elif not schema.get("x-kubernetes-preserve-unknown-fields"):
                errors.append(f'unknown field "{_path_join(path, key)}"')
    if schema["type"] == "array":
        seen: set[tuple[Any, ...]] = set()
        for i, item in enumerate(value):
            errors.extend(validate(item, schema["items"], _path_join(path, i)))
            if schema.get("x-kubernetes-list-type") == "map" and isinstance(item, dict):
                map_key = tuple(item.get(k) for k in schema["x-kubernetes-list-map-keys"])
                if map_key in seen:
                    errors.append(f"{_path_join(path, i)}: Duplicate value")
                seen.add(map_key)
    return errors


def test_validate_helper_names_fields() -> None:
    schema = root_schema()
    body = example()
    body["spec"]["strategy"]["steps"][0]["setWeight"] = 101
    body["spec"]["bogus"] = 1
    assert validate(body, schema) == [
        "spec.strategy.steps[0].setWeight: maximum 100",
        'unknown field "spec.bogus"',
    ]


EXAMPLE_ROLLOUTS = sorted(
    (path, doc)
    for path in EXAMPLES.glob("*.yaml")
    for doc in yaml.safe_load_all(path.read_text())
    if doc and doc.get("kind") == "Rollout"
)


def test_there_are_example_rollouts() -> None:
    names = {path.name for path, _ in EXAMPLE_ROLLOUTS}
    assert {"rollout-gin-demo.yaml", "rollout-replica-ratio.yaml"} <= names


@pytest.mark.parametrize(
    "doc", [doc for _, doc in EXAMPLE_ROLLOUTS], ids=[p.name for p, _ in EXAMPLE_ROLLOUTS]
)
def test_example_rollouts_are_valid(doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == "kanary.dev/v1alpha1"
    RolloutSpec.model_validate(doc["spec"])
    assert validate(doc, root_schema()) == []


@pytest.mark.parametrize("case", VALID, ids=[c.id for c in VALID])
def test_valid_cases_pass_models_and_schema(case: Case) -> None:
    body = case.body()
    RolloutSpec.model_validate(body["spec"])
    assert validate(body, root_schema()) == []


@pytest.mark.parametrize("case", INVALID, ids=[c.id for c in INVALID])
def test_invalid_cases_are_refused_by_the_models(case: Case) -> None:
    if not case.pydantic_refuses:
        pytest.skip("only the API server checks this (PodSpec passes through pydantic)")
    with pytest.raises(ValueError):
        RolloutSpec.model_validate(case.body()["spec"])


SCHEMA_CASES = [c for c in INVALID if not c.words]


@pytest.mark.parametrize("case", SCHEMA_CASES, ids=[c.id for c in SCHEMA_CASES])
def test_schema_cases_are_refused_by_the_schema_naming_the_field(case: Case) -> None:
    """The cases without a CEL message are the schema's to refuse; the field is named."""
    errors = validate(case.body(), root_schema())
    assert any(case.field in e for e in errors), errors
