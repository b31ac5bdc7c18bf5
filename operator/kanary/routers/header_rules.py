"""Header routes: the one HTTPRoute rule kanary adds (and only ever removes) for a setHeaderRoute
step. Pure: the route in, the rule and the JSON patch operations out.

The rule is named ``kanary-<rollout>-header`` and is a copy of the user's owned rule (the one
whose weights kanary sets: its matches, filters, timeouts and the rest), with the step's header
matches added to every match and one backendRef, the canary Service. A request with the headers
matches both rules; the added one wins, because Gateway API ranks a match with more header
matches first (Traefik: +100 priority per header, whatever the rule's position), so it is
appended at the end and never moves the user's rules. The user's rules are never written.

Prefix matches become an anchored RE2 regex (Gateway API has no prefix header match); a cookie
becomes a regex on the Cookie header.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from kanary.objects import contains, track_name
from kanary.routers import mirror_filter
from kanary.spec import HeaderMatch, HeaderRoute

MAX_RULES = 16  # HTTPRoute spec.rules maxItems
MAX_MATCHES = 128  # CEL: all matches of all rules
MAX_HEADERS = 16  # HTTPRouteMatch headers maxItems
_DEFAULT_MATCH = {"path": {"type": "PathPrefix", "value": "/"}}


def rule_name(rollout: str) -> str:
    return f"kanary-{rollout}-header"


def owned_indexes(route: Mapping[str, Any], rollout: str) -> list[int]:
    """Indexes of the rules kanary added for this Rollout (by name)."""
    rules = (route.get("spec") or {}).get("rules") or []
    return [i for i, r in enumerate(rules) if r.get("name") == rule_name(rollout)]


def gateway_header(match: HeaderMatch) -> dict[str, str]:
    """A Gateway API HTTPHeaderMatch for one of the step's matches."""
    if match.cookie is not None:
        name, text = re.escape(match.cookie.name), re.escape(match.cookie.value)
        return {
            "type": "RegularExpression",
            "name": "Cookie",
            "value": f"(^|;\\s*){name}={text}(;|$)",
        }
    value = match.header_value
    assert value is not None and match.header_name is not None  # HeaderMatch's validator
    if value.exact is not None:
        return {"type": "Exact", "name": match.header_name, "value": value.exact}
    if value.prefix is not None:
        return {
            "type": "RegularExpression",
            "name": match.header_name,
            "value": "^" + re.escape(value.prefix),
        }
    return {"type": "RegularExpression", "name": match.header_name, "value": value.regex or ""}


def header_rule(
    route: Mapping[str, Any], owned_index: int, canary_ref: int, rollout: str, header: HeaderRoute
) -> dict[str, Any] | str:
    """The rule to add for `header`, copied from the user's rule at `owned_index`, or why it
    cannot be added (one line for on-call)."""
    rules = (route.get("spec") or {}).get("rules") or []
    user = rules[owned_index]
    added = [gateway_header(m) for m in header.match]
    names = {h["name"].lower() for h in added}
    matches = copy.deepcopy(user.get("matches") or [_DEFAULT_MATCH])
    for i, match in enumerate(matches):
        own = match.get("headers") or []
        clash = sorted(names & {str(h.get("name", "")).lower() for h in own})
        if clash:
            return (
                f"setHeaderRoute: the owned rule's matches[{i}] already matches header "
                f"{clash[0]}: a second match on it would need both"
            )
        if len(own) + len(added) > MAX_HEADERS:
            return f"setHeaderRoute: matches[{i}] would have more than {MAX_HEADERS} headers"
        match["headers"] = [*own, *added]
    others = [r for i, r in enumerate(rules) if r.get("name") != rule_name(rollout)]
    if len(others) + 1 > MAX_RULES:
        return (
            f"setHeaderRoute: the HTTPRoute has {len(others)} rules, one more is over {MAX_RULES}"
        )
    total = sum(len(r.get("matches") or [_DEFAULT_MATCH]) for r in others) + len(matches)
    if total > MAX_MATCHES:
        return f"setHeaderRoute: the HTTPRoute would have {total} matches, over {MAX_MATCHES}"
    ref = {
        k: v
        for k, v in (user.get("backendRefs") or [])[canary_ref].items()
        if k not in ("weight", "filters")
    }
    ref["name"] = track_name(rollout, "canary")
    rule = {
        k: copy.deepcopy(v)
        for k, v in user.items()
        if k not in ("name", "matches", "backendRefs", "filters")
    }
    filters = [f for f in user.get("filters") or [] if not mirror_filter.is_kanarys(f, rollout)]
    if filters:  # kanary's own mirror is not copied: the header rule's requests are all canary's
        rule["filters"] = copy.deepcopy(filters)
    rule.update(name=rule_name(rollout), matches=matches, backendRefs=[{**ref, "weight": 1}])
    return rule


def drifted(route: Mapping[str, Any], wanted: dict[str, Any] | None, rollout: str) -> bool:
    """The route's kanary rules differ from `wanted` (None: there must be none)."""
    rules = (route.get("spec") or {}).get("rules") or []
    seen = [rules[i] for i in owned_indexes(route, rollout)]
    if wanted is None:
        return bool(seen)
    # contains: the API server may add defaults inside what kanary wrote; the same top-level
    # keys: a field the user removed from their rule (filters, timeouts) is stale in the copy.
    return len(seen) != 1 or not contains(seen[0], wanted) or set(seen[0]) != set(wanted)


def patch_ops(
    route: Mapping[str, Any], wanted: dict[str, Any] | None, rollout: str
) -> list[dict[str, Any]]:
    """JSON patch operations (after the caller's test of resourceVersion) that remove kanary's
    rules, each guarded by a test of its name, and append `wanted`."""
    ops: list[dict[str, Any]] = []
    for i in reversed(owned_indexes(route, rollout)):
        ops.append({"op": "test", "path": f"/spec/rules/{i}/name", "value": rule_name(rollout)})
        ops.append({"op": "remove", "path": f"/spec/rules/{i}"})
    if wanted is not None:
        ops.append({"op": "add", "path": "/spec/rules/-", "value": wanted})
    return ops
