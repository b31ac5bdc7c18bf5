"""Which Rollouts this operator serves: a label selector, to shard Rollouts between operator
instances (with `kanary run --namespace` for the namespaces). Pure.

The equality-based subset of Kubernetes label selectors: ``key=value`` (or ``==``),
``key!=value``, ``key`` (exists), ``!key`` (does not exist), joined by commas.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from kanary.objects import GATEWAY_GROUP, LABEL_ROLLOUT, LABEL_STEERED, LABEL_TRACK
from kanary.spec import API_GROUP, API_VERSION, PLURAL

Op = Literal["=", "!=", "exists", "!exists"]
_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: Op
    value: str = ""


@dataclass(frozen=True)
class Selector:
    requirements: tuple[Requirement, ...]

    @classmethod
    def parse(cls, text: str) -> Selector:
        """ValueError naming the part that is not understood."""
        out: list[Requirement] = []
        for raw in (p.strip() for p in text.split(",")):
            if not raw:
                continue
            if "!=" in raw:
                key, value = (x.strip() for x in raw.split("!=", 1))
                req = Requirement(key, "!=", value)
            elif "=" in raw:
                key, value = (x.strip() for x in raw.replace("==", "=", 1).split("=", 1))
                req = Requirement(key, "=", value)
            elif raw.startswith("!"):
                req = Requirement(raw[1:].strip(), "!exists")
            elif " " in raw or "(" in raw:
                raise ValueError(
                    f"label selector part {raw!r}: only key=value, key!=value, key and !key "
                    "are supported"
                )
            else:
                req = Requirement(raw, "exists")
            if not _KEY.match(req.key):
                raise ValueError(f"label selector part {raw!r}: {req.key!r} is not a label key")
            if not _VALUE.match(req.value):
                raise ValueError(f"label selector part {raw!r}: {req.value!r} is not a label value")
            out.append(req)
        return cls(tuple(out))

    def query(self) -> str:
        """The Kubernetes ``labelSelector`` text of the same requirements ('' for all)."""
        text = {"=": "{k}={v}", "!=": "{k}!={v}", "exists": "{k}", "!exists": "!{k}"}
        return ",".join(text[r.op].format(k=r.key, v=r.value) for r in self.requirements)

    def matches(self, labels: Mapping[str, str]) -> bool:
        for r in self.requirements:
            have = labels.get(r.key)
            ok = {
                "=": have == r.value,
                "!=": have != r.value,
                "exists": have is not None,
                "!exists": have is None,
            }[r.op]
            if not ok:
                return False
        return True


def watch_selectors(rollouts: Selector) -> dict[tuple[str, str, str], str]:
    """Server-side label selectors for each watched resource, (group, version, plural) -> query:
    the API server sends only what kanary owns (its Deployments, Services, revisions and both
    tracks' pods), the HTTPRoutes it steers (labelled on first sight,
    routers.gateway.steered_route) and the Rollouts this instance serves, not every pod or
    route of the cluster."""
    owned = {
        (GATEWAY_GROUP, "v1", "httproutes"): LABEL_STEERED,
        ("apps", "v1", "deployments"): LABEL_ROLLOUT,
        ("", "v1", "services"): LABEL_ROLLOUT,
        ("apps", "v1", "controllerrevisions"): LABEL_ROLLOUT,
        ("", "v1", "pods"): f"{LABEL_ROLLOUT},{LABEL_TRACK}",
    }
    served = {(API_GROUP, API_VERSION, PLURAL): q} if (q := rollouts.query()) else {}
    return owned | served
