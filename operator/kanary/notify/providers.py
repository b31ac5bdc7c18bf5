"""AlertProviders and their Secrets -> Targets, with one clear line per problem (a missing
Provider or Secret, a missing key, a URL that is not http(s)). Thin: the provider objects come
from a watch index and the Secrets from a reader the caller gives."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from kanary.notify.model import Target
from kanary.notify.spec import AlertProviderSpec

# (namespace, name) -> the Secret's data, or None when it does not exist; SecretUnreadable else
SecretReader = Callable[[str, str], Mapping[str, str] | None]


class SecretUnreadable(Exception):
    """The Secret could not be read (forbidden, API unreachable): the message says why."""


@dataclass(frozen=True)
class Resolved:
    targets: tuple[Target, ...] = ()
    problems: tuple[str, ...] = field(default_factory=tuple)


def parse_ref(ref: str, namespace: str) -> tuple[str, str]:
    """ "name" is in `namespace`; "ns/name" (the operator's --alert-provider) names its own."""
    if "/" in ref:
        ns, name = ref.split("/", 1)
        return ns, name
    return namespace, ref


def check_url(url: str) -> str | None:
    """Why `url` cannot be posted to, or None."""
    try:
        parts = urlsplit(url.strip())
    except ValueError as e:
        return f"{url!r} is not a URL: {e}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http(s) URL"
    return None


ALERTMANAGER_API = "/api/v2/alerts"


def alertmanager_endpoint(address: str) -> str:
    """An Alertmanager's base URL (as Prometheus is given it) -> where alerts are POSTed."""
    base = address.rstrip("/")
    return base if base.endswith(ALERTMANAGER_API) else base + ALERTMANAGER_API


def resolve_one(
    ref: tuple[str, str],
    objects: Mapping[tuple[str, str], Mapping[str, Any]],
    read_secret: SecretReader,
) -> Target | str:
    """The Target of AlertProvider `ref`, or the one line that says why there is none."""
    ns, name = ref
    who = f"AlertProvider {ns}/{name}"
    raw = objects.get(ref)
    if raw is None:
        return f"{who} not found"
    try:
        spec = AlertProviderSpec.model_validate(dict(raw))
    except ValidationError as e:
        first = e.errors()[0]
        return f"{who}: spec.{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    secret_name = spec.secret_ref.name
    try:
        data = read_secret(ns, secret_name)
    except SecretUnreadable as e:
        return f"{who}: cannot read Secret {ns}/{secret_name}: {e}"
    if data is None:
        return f"{who}: Secret {ns}/{secret_name} not found"
    url = (data.get("address") or "").strip()
    if not url:
        return f"{who}: Secret {ns}/{secret_name} has no key `address` (the URL)"
    bad = check_url(url)
    if bad is not None:
        return f"{who}: Secret {ns}/{secret_name} key `address`: {bad}"
    if spec.type == "alertmanager":
        url = alertmanager_endpoint(url)
    token = (data.get("token") or "").strip() or None
    return Target(
        name=f"{ns}/{name}",
        type=spec.type,
        url=url,
        token=token,
        channel=spec.channel,
        timeout_seconds=spec.timeout_seconds(),
    )


def resolve(
    refs: Sequence[str],
    namespace: str,
    objects: Mapping[tuple[str, str], Mapping[str, Any]],
    read_secret: SecretReader,
) -> Resolved:
    targets: list[Target] = []
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    for ref in refs:
        key = parse_ref(ref, namespace)
        if key in seen:
            continue
        seen.add(key)
        found = resolve_one(key, objects, read_secret)
        if isinstance(found, str):
            problems.append(found)
        else:
            targets.append(found)
    return Resolved(targets=tuple(targets), problems=tuple(problems))
