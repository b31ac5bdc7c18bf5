"""What `kanary status` and `kanary list` print (pure: a Rollout body in, text out)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _images(template: Mapping[str, Any] | None) -> str:
    containers = ((template or {}).get("spec") or {}).get("containers") or []
    return ",".join(str(c.get("image", "?")) for c in containers) or "-"


def _step_text(body: Mapping[str, Any]) -> str:
    status = body.get("status") or {}
    index = status.get("currentStepIndex")
    if index is None:
        return "-"
    if status.get("step"):  # written by the operator, blueGreen's steps counted
        return str(status["step"])
    steps = ((body.get("spec") or {}).get("strategy") or {}).get("steps") or []
    return f"{min(int(index) + 1, len(steps))}/{len(steps)}"


def _bounds(m: Mapping[str, Any]) -> list[tuple[bool, str]]:
    """Each bound with whether the value keeps it, as the analysis judges it (judgement.py)."""
    value, base = m.get("value"), m.get("baseline")
    out: list[tuple[bool, str]] = []
    if value is None:
        return out
    if m.get("max") is not None:
        ok = value <= m["max"]
        out.append((ok, f"{'<=' if ok else '>'} max {m['max']:g}"))
    if m.get("min") is not None:
        ok = value >= m["min"]
        out.append((ok, f"{'>=' if ok else '<'} min {m['min']:g}"))
    if base is None:
        return out
    if m.get("maxIncrease") is not None:
        delta = value - base
        ok = delta <= m["maxIncrease"]
        op = "<=" if ok else ">"
        out.append(
            (ok, f"vs stable {base:.4g}: {delta:+.4g} {op} maxIncrease {m['maxIncrease']:g}")
        )
    if m.get("maxRatio") is not None and base >= 0:
        if base > 0:
            ok, ratio = value / base <= m["maxRatio"], f"{value / base:.2f}x"
        else:  # stable 0: any canary value above 0 breaks the ratio
            ok, ratio = value <= 0, "unbounded ratio" if value > 0 else "no ratio"
        op = "<=" if ok else ">"
        out.append((ok, f"vs stable {base:.4g}: {ratio} {op} maxRatio {m['maxRatio']:g}x"))
    return out


def _metric_line(m: Mapping[str, Any]) -> str:
    """Pass: every bound kept; Fail: the bounds broken; otherwise (or if the figures do not
    show it) the analysis's reason."""
    name, verdict, value = m.get("name"), m.get("verdict"), m.get("value")
    head = f"    {name}" + ("" if value is None else f" {value:.4g}")
    requests = m.get("requests")
    reqs = "" if requests is None else f", {requests:.0f} requests"
    bounds = _bounds(m)
    shown = [text for ok, text in bounds if ok == (verdict == "Pass")]
    if shown and (verdict == "Fail" or (verdict == "Pass" and len(shown) == len(bounds))):
        return f"{head} {', '.join(shown)}{reqs} -> {verdict}"
    reason = str(m.get("reason") or "").removeprefix(f"{name}: ")
    return f"{head}{reqs} -> {verdict}" + (f": {reason}" if reason else "")


def _strategy(spec: Mapping[str, Any]) -> str:
    return "blueGreen" if (spec.get("strategy") or {}).get("blueGreen") else "canary"


def render_status(body: Mapping[str, Any], events: Sequence[Mapping[str, Any]] = ()) -> str:
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    weight = int(status.get("canaryWeight") or 0)
    lines = [
        f"Rollout {meta.get('namespace')}/{meta.get('name')}",
        f"  Phase:     {status.get('phase', 'Pending')}",
        f"  Message:   {status.get('message', '')}",
        f"  Strategy:  {status.get('strategy') or _strategy(spec)}",
        f"  Step:      {_step_text(body)}",
        f"  Routing:   {status.get('routing') or f'stable {100 - weight}% / canary {weight}%'}",
        f"  Stable:    {status.get('stableRevision') or '-'}",
        f"  Canary:    {status.get('canaryRevision') or '-'}",
        f"  Image:     {_images(spec.get('template'))}",
    ]
    readiness = status.get("readiness") or {}
    if readiness.get("count"):
        lines.append(
            f"  Readiness: {readiness['count']} pods, p50 {readiness.get('p50Seconds', 0):.2f}s,"
            f" max {readiness.get('maxSeconds', 0):.2f}s"
        )
    analysis = status.get("analysis") or {}
    if analysis.get("lastCheckAt"):
        lines.append(
            f"  Analysis:  {analysis.get('verdict', '-')} at {analysis['lastCheckAt']}"
            f" (failures {analysis.get('consecutiveFailures', 0)},"
            f" inconclusive {analysis.get('consecutiveInconclusive', 0)},"
            f" errors {analysis.get('consecutiveErrors', 0)})"
            + (
                ""
                if analysis.get("score") is None
                else f", mannWhitney score {analysis['score']:g}"
            )
        )
        if analysis.get("source"):
            lines.append(f"    measured at {analysis['source']}")
        lines.extend(_metric_line(m) for m in analysis.get("metrics") or [])
    if events:
        lines.append("  Events:")
        lines.extend(
            f"    {e.get('type', ''):7} {e.get('reason', ''):14} {e.get('message', '')}"
            for e in events
        )
    return "\n".join(lines)


def render_list(items: Sequence[Mapping[str, Any]], with_namespace: bool = False) -> str:
    header = ["NAMESPACE"] if with_namespace else []
    header += ["NAME", "PHASE", "STEP", "WEIGHT", "MESSAGE"]
    rows = [header]
    for body in items:
        meta = body.get("metadata") or {}
        status = body.get("status") or {}
        row = [str(meta.get("namespace"))] if with_namespace else []
        row += [
            str(meta.get("name")),
            str(status.get("phase", "Pending")),
            _step_text(body),
            f"{int(status.get('canaryWeight') or 0)}%",
            str(status.get("message", "")),
        ]
        rows.append(row)
    if len(rows) == 1:
        return "No rollouts found."
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        for r in rows
    )
