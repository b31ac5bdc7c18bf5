"""The base of every API model (Rollout, AlertProvider): camelCase on the wire, unknown fields
refused, CEL rules carried into the generated CRDs."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict, JsonValue


def cel(rule: str, message: str, field_path: str | None = None) -> JsonDict:
    out: JsonDict = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    return out


class ApiModel(BaseModel):
    """camelCase on the wire; unknown fields refused, as the API server does for strict kubectl."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


def api_config(*rules: JsonDict, **schema_extra: JsonValue) -> ConfigDict:
    """ApiModel's config plus CEL rules (x-kubernetes-validations) and other schema keys."""
    extra: JsonDict = dict(schema_extra)
    if rules:
        extra["x-kubernetes-validations"] = list(rules)
    return ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        json_schema_extra=extra,
    )


# A duration matching DURATION_PATTERN is positive iff it has a digit other than 0. CEL's
# duration() would also do, but adds a conversion error to every pattern mismatch.
POSITIVE_DURATION = "%s.matches('[1-9]')"
