"""What a Rollout needs of the Gateway implementation, and whether its GatewayClass has it.

Gateway API implementations list what they support in the GatewayClass'
``status.supportedFeatures`` (v1.4: objects ``{name: ...}``). kanary reads it before it uses an
Extended feature and refuses a Rollout that needs one the class does not list, naming the
feature, the class and the step. Header matches are Core HTTPRoute (every implementation has
them) and the rules' ``name`` is only stored, so neither is checked. A class that lists nothing
is not trusted with an Extended feature. Known limits override the list: an implementation
that would accept the field and serve it wrongly is refused even if it claims the feature.

Pure: the class as the watch caches hold it (analysis.metrics_source.GatewayClassSeen).
"""

from __future__ import annotations

from kanary.analysis.metrics_source import GatewayClassSeen
from kanary.spec import RolloutSpec

MIRROR = "HTTPRouteRequestMirror"
PERCENTAGE_MIRROR = "HTTPRouteRequestPercentageMirror"

# controllerName -> feature -> why it is refused whatever the class lists.
KNOWN_LIMITS: dict[str, dict[str, str]] = {
    "traefik.io/gateway-controller": {
        MIRROR: "Traefik's Gateway provider (v3.6) answers 500 to every request of a rule "
        "with a RequestMirror filter",
    },
}


def needed(spec: RolloutSpec) -> list[tuple[str, str]]:
    """(feature, the field that needs it), in step order."""
    out: list[tuple[str, str]] = []
    for i, step in enumerate(spec.strategy.plan()):
        if step.set_mirror is not None and step.set_mirror.percent > 0:
            out.append((MIRROR, f"steps[{i}].setMirror"))
            if step.set_mirror.percent < 100:
                out.append((PERCENTAGE_MIRROR, f"steps[{i}].setMirror.percent"))
    return out


def refusal(spec: RolloutSpec, seen: GatewayClassSeen | None) -> str | None:
    """Why the Gateway behind the Rollout's route cannot do what the spec asks, or None."""
    for feature, field in needed(spec):
        if seen is None:
            return (
                f"spec.strategy.{field} needs the Gateway feature {feature}: the HTTPRoute's "
                "parent Gateway or its GatewayClass is not found, so it cannot be checked"
            )
        shown = f"GatewayClass {seen.class_name} ({seen.controller})"
        if seen.features is None:
            return (
                f"spec.strategy.{field} needs {feature}: {shown} lists no "
                "status.supportedFeatures, so it cannot be checked"
            )
        if feature not in seen.features:
            return (
                f"spec.strategy.{field} needs {feature}, which {shown} does not list in "
                "status.supportedFeatures"
            )
        limit = KNOWN_LIMITS.get(seen.controller, {}).get(feature)
        if limit is not None:
            return f"spec.strategy.{field} needs {feature}, which {shown} cannot do: {limit}"
    return None
