"""Go/Kubernetes style durations ("500ms", "10s", "1m30s"), as the Rollout API writes them."""

from __future__ import annotations

import re

# One or more <number><unit> groups; the same pattern is put into the CRD so the API server
# refuses a bad duration before kanary ever sees it.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"

_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_WHOLE = re.compile(DURATION_PATTERN)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a duration string; ValueError names the text when it is not one."""
    if not _WHOLE.match(text):
        raise ValueError(f"invalid duration {text!r}: want e.g. 500ms, 10s, 5m, 1h30m")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """The shortest readable form: 0.5 -> 500ms, 30 -> 30s, 90 -> 1m30s."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = round(seconds)
    if abs(seconds - whole) > 1e-9:
        return f"{seconds:g}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    out = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return out + (f"{secs}s" if secs or not out else "")
