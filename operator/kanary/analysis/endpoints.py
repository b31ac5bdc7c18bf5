"""Which Prometheus URLs a Rollout may make the operator query.

``spec.strategy.analysis.prometheus.url`` is written by whoever may write a Rollout, and the
operator fetches it with its own network identity: without a policy any Rollout author could
make it request any URL. The cluster admin sets the default Prometheus URL and may allow more
(``kanary run --prometheus-url`` / ``--allow-prometheus-url``, which set the two environment
variables below); every other URL is refused before anything is fetched.

URLs are compared normalised: scheme and host lower-cased, trailing ``/`` stripped. The path
is part of the URL (``http://p:9090/tenant-a`` does not allow ``http://p:9090/tenant-b``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

DEFAULT_URL_ENV = "KANARY_PROMETHEUS_DEFAULT_URL"
ALLOWED_URLS_ENV = "KANARY_PROMETHEUS_ALLOWED_URLS"
DEFAULT_PROMETHEUS_URL = "http://prometheus.monitoring.svc:9090"

_FIELD = "spec.strategy.analysis.prometheus.url"
_SHOWN_MAX = 200  # of the refused URL, in a message that ends up in the Rollout's status


class PrometheusNotAllowed(ValueError):
    """The Rollout asks for a Prometheus URL the operator may not query (one line)."""


def normalise(url: str) -> str:
    """``url`` with scheme and host lower-cased and no trailing ``/``; ValueError if it is
    not an absolute http(s) URL with a host."""
    url = url.strip()
    if any(c.isspace() or not c.isprintable() for c in url):
        raise ValueError(f"{url!r} is not a URL: it holds a space or a control character")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as exc:
        raise ValueError(f"{url!r} is not a URL: {exc}") from None
    scheme = parts.scheme  # urlsplit lower-cases it
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL with a host")
    userinfo, at, hostport = parts.netloc.rpartition("@")
    netloc = f"{userinfo}{at}{hostport.lower()}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), parts.query, parts.fragment))


def shown(url: str) -> str:
    """``url`` fit for a status message: no user:password@, one bounded printable line."""
    scheme, sep, rest = url.partition("://")
    if sep:
        authority, slash, path = rest.partition("/")
        url = f"{scheme}://{authority.rpartition('@')[2]}{slash}{path}"
    text = "".join(c if c.isprintable() else "?" for c in url[:_SHOWN_MAX])
    return text + ("..." if len(url) > _SHOWN_MAX else "")


@dataclass(frozen=True)
class PrometheusPolicy:
    """The default Prometheus URL (None: a Rollout must name one) and the others allowed.

    The default URL is always allowed. Both are stored normalised; the constructor raises
    ValueError for a URL that is not http(s).
    """

    default_url: str | None
    allowed: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        default = None if self.default_url is None else normalise(self.default_url)
        urls = ([default] if default else []) + [normalise(u) for u in self.allowed]
        object.__setattr__(self, "default_url", default)
        object.__setattr__(self, "allowed", tuple(dict.fromkeys(urls)))

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> PrometheusPolicy:
        """The policy from KANARY_PROMETHEUS_DEFAULT_URL (unset: the in-cluster default;
        empty: no default) and KANARY_PROMETHEUS_ALLOWED_URLS (comma-separated; unset or
        empty: only the default). ValueError naming the variable for a bad URL."""
        raw_default = environ.get(DEFAULT_URL_ENV, DEFAULT_PROMETHEUS_URL).strip()
        try:
            default = normalise(raw_default) if raw_default else None
        except ValueError as exc:
            raise ValueError(f"{DEFAULT_URL_ENV}: {exc}") from None
        allowed: list[str] = []
        for item in environ.get(ALLOWED_URLS_ENV, "").split(","):
            if item.strip():
                try:
                    allowed.append(normalise(item))
                except ValueError as exc:
                    raise ValueError(f"{ALLOWED_URLS_ENV}: {exc}") from None
        return cls(default, tuple(allowed))

    def resolve(self, spec_url: str | None) -> str:
        """The (normalised) URL to query for a Rollout whose spec names ``spec_url``.

        Raises PrometheusNotAllowed when the URL is not allowed, or when the spec names none
        and the operator has no default.
        """
        if spec_url is None:
            if self.default_url is None:
                raise PrometheusNotAllowed(
                    f"{_FIELD} is not set and the operator has no default Prometheus URL; "
                    "set it, or ask the cluster admin to start the operator with "
                    "--prometheus-url"
                )
            return self.default_url
        try:
            url = normalise(spec_url)
        except ValueError:
            url = None
        if url is not None and url in self.allowed:
            return url
        raise PrometheusNotAllowed(
            f"{_FIELD} {shown(spec_url)} is not allowed by the operator "
            f"(allowed: {', '.join(shown(u) for u in self.allowed) or 'none'}); "
            "ask the cluster admin to add it with --allow-prometheus-url"
        )
