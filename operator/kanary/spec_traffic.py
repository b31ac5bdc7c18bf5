"""The Rollout spec's traffic routing: the HTTPRoute kanary steers (trafficRouting), the
header routes and mirrors of canary steps, and blue-green. Part of the models in kanary.spec
(which re-exports every name here), split out by concern."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from kanary.apimodel import ApiModel, api_config, cel


class GatewayAPIRouting(ApiModel):
    http_route: str = Field(min_length=1, max_length=253, description="HTTPRoute name, same ns")
    rule: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        description="name of the HTTPRoute rule whose two weights kanary owns; omitted: the one "
        "rule that references both <name>-stable and <name>-canary",
    )


class TrafficRouting(ApiModel):
    gateway_api: GatewayAPIRouting | None = Field(default=None, alias="gatewayAPI")


# Gateway API's HTTPHeaderName (RFC 7230 token) and a cookie name (RFC 6265 token).
_TOKEN = r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$"
# RE2 (Go's regexp, which Traefik and most implementations use) has no look-around and no
# backreferences; Python's re would accept them, so they are refused by name.
_NOT_RE2 = ("(?=", "(?!", "(?<=", "(?<!", "(?P=", "(?#")


class HeaderValue(ApiModel):
    model_config = api_config(
        cel(
            "[has(self.exact), has(self.prefix), has(self.regex)].filter(x, x).size() == 1",
            "headerValue needs exactly one of exact, prefix, regex",
        )
    )
    exact: str | None = Field(default=None, min_length=1, max_length=4096)
    prefix: str | None = Field(default=None, min_length=1, max_length=4000)
    regex: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="RE2; Traefik searches it anywhere in the value: anchor it with ^ and $",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> HeaderValue:
        if sum(v is not None for v in (self.exact, self.prefix, self.regex)) != 1:
            raise ValueError("headerValue needs exactly one of exact, prefix, regex")
        if self.regex is not None:
            _check_re2(self.regex)
        return self


def _check_re2(pattern: str) -> None:
    bad = next((b for b in _NOT_RE2 if b in pattern), None)
    if bad is None and re.search(r"\\[1-9]", pattern):
        bad = "a backreference"
    if bad is not None:
        raise ValueError(f"regex {pattern!r}: {bad} is not RE2 (the gateway's regex syntax)")
    try:
        re.compile(pattern)
    except re.error as e:
        raise ValueError(f"regex {pattern!r}: {e}") from e


class CookieMatch(ApiModel):
    name: str = Field(min_length=1, max_length=256, pattern=_TOKEN)
    value: str = Field(min_length=1, max_length=1024, pattern=r"^[^;,\s]+$")


class HeaderMatch(ApiModel):
    """One request header (or a cookie, matched in the Cookie header) the canary's requests
    carry. All the matches of a setHeaderRoute must hold."""

    model_config = api_config(
        cel(
            "has(self.cookie) != (has(self.headerName) && has(self.headerValue))"
            " && (has(self.headerName) == has(self.headerValue))",
            "a match is either headerName with headerValue, or cookie",
        )
    )
    header_name: str | None = Field(default=None, min_length=1, max_length=256, pattern=_TOKEN)
    header_value: HeaderValue | None = None
    cookie: CookieMatch | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> HeaderMatch:
        named = self.header_name is not None and self.header_value is not None
        if named == (self.cookie is not None) or (self.header_name is None) != (
            self.header_value is None
        ):
            raise ValueError("a match is either headerName with headerValue, or cookie")
        return self

    def header(self) -> str:
        """The request header this match reads, lower case."""
        return "cookie" if self.cookie is not None else (self.header_name or "").lower()

    def describe(self) -> str:
        """'X-Canary: always', 'X-Canary: ^beta', 'cookie canary=yes' (status and Events)."""
        if self.cookie is not None:
            return f"cookie {self.cookie.name}={self.cookie.value}"
        value = self.header_value or HeaderValue(exact="")
        if value.exact is not None:
            return f"{self.header_name}: {value.exact}"
        if value.prefix is not None:
            return f"{self.header_name}: {value.prefix}*"
        return f"{self.header_name} ~ /{value.regex}/"


class HeaderRoute(ApiModel):
    match: list[HeaderMatch] = Field(
        default_factory=list,
        max_length=8,
        description="requests carrying all of these go to the canary; empty: the header "
        "route is removed",
    )

    @field_validator("match")
    @classmethod
    def _one_per_header(cls, match: list[HeaderMatch]) -> list[HeaderMatch]:
        seen: set[str] = set()
        for i, m in enumerate(match):
            if m.header() in seen:
                raise ValueError(
                    f"match[{i}]: a second match on header {m.header()!r} (a cookie is the "
                    "Cookie header): the gateway would require both"
                )
            seen.add(m.header())
        return match

    def describe(self) -> str:
        return " and ".join(m.describe() for m in self.match)


class Mirror(ApiModel):
    percent: int = Field(
        ge=0,
        le=100,
        description="of the owned rule's requests, copied to the canary (answers thrown away); "
        "0: the mirror is removed",
    )


class BlueGreen(ApiModel):
    """The new version comes up at full size behind <name>-canary (the preview) with no live
    traffic; all traffic switches to it in one write; the old version is kept, at full size, for
    scaleDownDelaySeconds after the switch, while post-promotion analysis can switch back."""

    preview_header: list[HeaderMatch] = Field(
        default_factory=list,
        max_length=8,
        description="requests with these headers reach the preview before the switch (and "
        "pre-promotion analysis judges them); omitted: only through Service <name>-canary",
    )
    auto_promotion_seconds: int | None = Field(
        default=None,
        ge=0,
        description="switch this long after the preview is Ready (and its analysis passes); "
        "omitted: wait for `kanary promote`",
    )

    @field_validator("preview_header")
    @classmethod
    def _one_per_header(cls, match: list[HeaderMatch]) -> list[HeaderMatch]:
        return HeaderRoute(match=match).match
