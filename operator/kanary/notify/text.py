"""An alert's words: the template variables of the analysis, the default one line on-call needs,
the commands to act, and a user's template rendered with them. Pure."""

from __future__ import annotations

import re
from collections.abc import Mapping

from kanary import canary_math
from kanary.analysis.judgement import format_value
from kanary.notify.model import AlertEvent
from kanary.spec import RolloutSpec
from kanary.status import MetricResult, RolloutStatus

VARIABLES = (
    "metric",
    "value",
    "threshold",
    "window",
    "requests",
    "step",
    "weight",
    "revision",
    "reason",
    "rollout",
    "namespace",
    "event",
    "severity",
)
_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_KNOWN = ", ".join("{{" + v + "}}" for v in VARIABLES)


def template_problems(template: str) -> list[str]:
    """Unknown or unclosed variables in spec.notifications.template, each named."""
    problems = [
        f"spec.notifications.template: unknown variable {{{{{name}}}}}; known: {_KNOWN}"
        for name in (m.group(1).strip() for m in _PLACEHOLDER.finditer(template))
        if name not in VARIABLES
    ]
    if "{{" in _PLACEHOLDER.sub("", template):
        problems.append("spec.notifications.template: an unclosed '{{' (write {{name}})")
    return problems


def render(template: str, values: Mapping[str, str]) -> str:
    """The template with each variable replaced (an unknown one is left as written; the
    Rollout is Invalid before that can happen)."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1).strip(), m.group(0)), template)


def commands(event: AlertEvent, namespace: str, name: str) -> tuple[str, ...]:
    """What on-call can do next, as commands to paste."""
    target = f"{name} -n {namespace}"
    match event:
        case "RolledBack":
            return (f"kanary status {target}", f"kanary retry {target}")
        case "Paused":
            return (f"kanary promote {target}", f"kanary abort {target}")
        case "AnalysisError" | "CanaryUnavailable":
            return (f"kanary status {target}", f"kanary abort {target}")
        case "Promoted" | "StepCompleted":
            return (f"kanary status {target}",)


def _culprit(metrics: list[MetricResult]) -> MetricResult | None:
    """The metric the alert is about: the first failing one, else the first in error."""
    for verdict in ("Fail", "Error", "Inconclusive"):
        found = next((m for m in metrics if m.verdict == verdict), None)
        if found is not None:
            return found
    return None


def _threshold(metric: MetricResult) -> str:
    parts = []
    if metric.max is not None:
        parts.append(f"<= {format_value(metric.name, metric.max)}")
    if metric.min is not None:
        parts.append(f">= {format_value(metric.name, metric.min)}")
    if metric.max_increase is not None:
        parts.append(f"stable + {format_value(metric.name, metric.max_increase)}")
    if metric.max_ratio is not None:
        parts.append(f"stable x {metric.max_ratio:g}")
    return ", ".join(parts)


def variables(
    event: AlertEvent,
    spec: RolloutSpec,
    before: RolloutStatus,
    after: RolloutStatus,
    namespace: str,
    name: str,
    severity: str,
) -> dict[str, str]:
    """Every template variable's value for an event raised by the tick from `before` to
    `after` ("" when not known). The step and weight are where it happened: a rollback's are
    those of the step that failed, not the 0% after it."""
    steps = spec.strategy.plan()
    index = before.current_step_index if event == "StepCompleted" else after.current_step_index
    if index is None:
        index = before.current_step_index
    weight = before.canary_weight if event == "RolledBack" else after.canary_weight
    out = dict.fromkeys(VARIABLES, "")
    out.update(
        event=event,
        severity=severity,
        rollout=name,
        namespace=namespace,
        revision=after.canary_revision or before.canary_revision or "",
        step=canary_math.step_label(min(index, len(steps) - 1), steps) if index is not None else "",
        weight=str(weight),
        reason=_reason(event, before, after),
    )
    metric = _culprit(after.analysis.metrics) if event in ("RolledBack", "AnalysisError") else None
    if metric is not None:
        out.update(
            metric=metric.name,
            value="" if metric.value is None else format_value(metric.name, metric.value),
            threshold=_threshold(metric),
            window=metric.window or "",
            requests="" if metric.requests is None else f"{metric.requests:.0f}",
        )
    return out


def _reason(event: AlertEvent, before: RolloutStatus, after: RolloutStatus) -> str:
    match event:
        case "RolledBack":
            rolled = next((c for c in after.conditions if c.type == "RolledBack"), None)
            if after.history and after.history[-1].outcome == "RolledBack":
                return after.history[-1].reason
            return rolled.message if rolled is not None else ""
        case "AnalysisError":
            return after.analysis.summary
        case "Paused":
            return {
                "Step": "a pause step waits for `kanary promote`",
                "Inconclusive": f"{after.analysis.consecutive_inconclusive} inconclusive checks",
            }.get(after.pause_reason or "", "")
        case "CanaryUnavailable":
            return "no Ready canary pod: its traffic is at 0% until one is"
        case "Promoted" | "StepCompleted":
            return ""


def default_text(event: AlertEvent, values: Mapping[str, str]) -> str:
    """The one line on-call needs: who, what, where, the evidence."""
    who = f"{values['namespace']}/{values['rollout']}"
    rev, step, weight, reason = (values[k] for k in ("revision", "step", "weight", "reason"))
    match event:
        case "RolledBack":
            return f"{who}: {rev} rolled back at {step} (weight {weight}%): {reason}"
        case "Paused":
            return f"{who}: {rev} paused at {step} (weight {weight}%): {reason}"
        case "AnalysisError":
            return f"{who}: analysis of {rev} cannot run at {step}: {reason}"
        case "CanaryUnavailable":
            return f"{who}: canary {rev} at {step}: {reason}"
        case "Promoted":
            return f"{who}: {rev} promoted, 100% of traffic"
        case "StepCompleted":
            return f"{who}: {rev} {step} done, weight {weight}%"


def text(
    event: AlertEvent, template: str | None, values: Mapping[str, str], namespace: str, name: str
) -> str:
    """The user's template, or the default line followed by the commands to act."""
    if template:
        return render(template, values)
    act = " | ".join(f"`{c}`" for c in commands(event, namespace, name))
    return f"{default_text(event, values)} -- {act}"
