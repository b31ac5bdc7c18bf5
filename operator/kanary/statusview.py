"""What `kanary status` and `kanary list` print (pure: a Rollout body in, text out)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _images(template: Mapping[str, Any] | None) -> str:
    containers = ((template or {}).get("spec") or {}).get("containers") or []
    return ",".join(str(c.get("image", "?")) for c in containers) or "-"


def _step_text(body: Mapping[str, Any]) -> str:
    status = body.get("status") or {}
    steps = ((body.get("spec") or {}).get("strategy") or {}).get("steps") or []
    index = status.get("currentStepIndex")
    if index is None:
        return "-"
    return f"{min(int(index) + 1, len(steps))}/{len(steps)}"


def _metric_line(m: Mapping[str, Any]) -> str:
    value = m.get("value")
    bound = []
    if m.get("min") is not None:
        bound.append(f">= {m['min']:g}")
    if m.get("max") is not None:
        bound.append(f"<= {m['max']:g}")
    shown = "no data" if value is None else f"{value:.4g}"
    requests = m.get("requests")
    reqs = "" if requests is None else f", {requests:.0f} requests"
    reason = f" ({m['reason']})" if m.get("reason") else ""
    return f"    {m.get('name')}: {shown} {' '.join(bound)}{reqs} -> {m.get('verdict')}{reason}"


def render_status(body: Mapping[str, Any], events: Sequence[Mapping[str, Any]] = ()) -> str:
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    weight = int(status.get("canaryWeight") or 0)
    lines = [
        f"Rollout {meta.get('namespace')}/{meta.get('name')}",
        f"  Phase:     {status.get('phase', 'Pending')}",
        f"  Message:   {status.get('message', '')}",
        f"  Step:      {_step_text(body)}",
        f"  Weights:   stable {100 - weight}%  canary {weight}%",
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
        )
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
