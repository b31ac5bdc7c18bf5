"""Custom PromQL templates: {{namespace}}, {{rollout}}, {{track}}, {{revision}}, {{window}}.

A template naming any other variable is an error found before anything is sent to Prometheus:
``template_errors`` lists them so the operator can put the Rollout in phase Invalid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from kanary.spec import AnalysisSpec, MetricSpec, RolloutSpec

VARIABLES = ("namespace", "rollout", "track", "revision", "window")
Track = Literal["canary", "stable"]

_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_KNOWN = ", ".join("{{" + v + "}}" for v in VARIABLES)


class TemplateError(ValueError):
    """A template that cannot be rendered; the message names the metric and the variable."""


@dataclass(frozen=True)
class Scope:
    """Which series a query is about: one track of one Rollout, over one window."""

    namespace: str
    rollout: str
    track: Track
    revision: str | None  # None: unknown, the query is not scoped by revision
    window_seconds: float

    @property
    def window(self) -> str:
        return promql_duration(self.window_seconds)


def promql_duration(seconds: float) -> str:
    """A PromQL range: whole units ("1m30s"), or milliseconds, since PromQL has no "1.5s"."""
    ms = round(seconds * 1000)
    if ms <= 0:
        raise ValueError(f"a PromQL range must be positive, got {seconds}s")
    if ms % 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms // 1000, 3600)
    minutes, secs = divmod(rest, 60)
    out = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return out + (f"{secs}s" if secs else "")


def window_increase(series: str, window: str, by: str | None = None) -> str:
    """``sum(increase(series[window]))`` (``sum by (<by>)``), counting the series born inside
    the window from 0.

    increase() starts at a series' first sample in the range: a counter that appears inside the
    window (a new canary pod's, a track's first 5xx, a backend's first request through the
    gateway) loses all it counted before its first scrape, and with one sample in the window
    it is left out entirely. Such a series (none at the window's start: ``unless ... offset``)
    adds its smallest value in the window, its first (min_over_time). increase() also
    extrapolates towards the window's start by up to half a scrape interval, so a counter
    that jumped in its first interval is counted a little high: an over-count of part of one
    scrape's increase, where increase() alone missed the whole first scrape. No series at
    all in the window: no value (nothing answered), as with increase() alone.
    """
    agg = f"sum by ({by}) " if by else "sum"
    grown = f"{agg}(increase({series}[{window}]))"
    born = f"{agg}(min_over_time({series}[{window}]) unless {series} offset {window})"
    return f"(({grown} + ({born} or {grown} * 0)) or {born})"


def label_value(text: str) -> str:
    """``text`` escaped for the inside of a double-quoted PromQL string.

    Kubernetes names never hold these characters; escaping keeps a template's quoting intact
    whatever a value holds. PromQL only lets the opening quote be escaped, which is why
    templates must put variables inside double quotes.
    """
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def variables_in(template: str) -> list[str]:
    """The variable names a template uses, in order, whitespace inside the braces ignored."""
    return [m.group(1).strip() for m in _PLACEHOLDER.finditer(template)]


def template_problems(template: str) -> list[str]:
    """What is wrong with a template by itself (no metric name): unknown or unclosed variables."""
    problems: list[str] = []
    for name in variables_in(template):
        if name not in VARIABLES:
            shown = "{{" + name + "}}"
            problems.append(f"unknown template variable {shown}; known: {_KNOWN}")
    if "{{" in _PLACEHOLDER.sub("", template):
        problems.append("an unclosed '{{' (a variable is written {{name}})")
    return problems


def render(metric: str, template: str, scope: Scope) -> str:
    """The template with each variable replaced; TemplateError names the metric and why."""
    problems = template_problems(template)
    if problems:
        raise TemplateError(f"metric {metric}: {problems[0]}")
    if scope.revision is None and "revision" in variables_in(template):
        raise TemplateError(
            f"metric {metric}: uses {{{{revision}}}} but the {scope.track} track's revision "
            "is not known yet"
        )
    values = {
        "namespace": label_value(scope.namespace),
        "rollout": label_value(scope.rollout),
        "track": label_value(scope.track),
        "revision": label_value(scope.revision or ""),
        "window": scope.window,
    }
    return _PLACEHOLDER.sub(lambda m: values[m.group(1).strip()], template)


def compares(metric: MetricSpec) -> bool:
    """True when the metric is judged against the stable track (maxIncrease or maxRatio)."""
    return metric.max_increase is not None or metric.max_ratio is not None


def template_errors(spec: RolloutSpec | AnalysisSpec) -> list[str]:
    """Every run-time problem of the analysis' templates, each naming the field and metric.

    Empty when the analysis can run. The operator puts the Rollout in phase Invalid with these
    before any query is sent.
    """
    analysis = spec.strategy.analysis if isinstance(spec, RolloutSpec) else spec
    if analysis is None:
        return []
    errors: list[str] = []
    for i, metric in enumerate(analysis.metrics):
        field = f"spec.strategy.analysis.metrics[{i}].query"
        if metric.query is None:
            continue
        errors.extend(
            f"{field} (metric {metric.name}): {p}" for p in template_problems(metric.query)
        )
        if compares(metric) and "track" not in variables_in(metric.query):
            errors.append(
                f"{field} (metric {metric.name}): maxIncrease/maxRatio compare the canary with "
                "the stable track, so the query must select the track with {{track}}"
            )
    if analysis.window_seconds() < 0.001:
        errors.append("spec.strategy.analysis.window: must be at least 1ms")
    return errors
