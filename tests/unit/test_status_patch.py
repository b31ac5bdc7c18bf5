"""The status merge patch: only what changed, nulls to delete, nothing for a status at rest."""

from __future__ import annotations

import json
from typing import Any

from kanary.reconcile import status_patch as _status_patch
from kanary.status import MetricResult, RolloutStatus


def as_stored(status: RolloutStatus) -> dict[str, Any]:
    """What the API server keeps after a merge patch of to_patch(): no nulls anywhere."""

    def prune(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: prune(v) for k, v in x.items() if v is not None}
        if isinstance(x, list):
            return [prune(v) for v in x]
        return x

    result = prune(json.loads(json.dumps(status.to_patch())))
    assert isinstance(result, dict)
    return result


def test_unchanged_status_writes_nothing() -> None:
    st = RolloutStatus(phase="Progressing", message="step 1/3", canary_weight=5)
    st.analysis.metrics.append(MetricResult(name="error-rate", verdict="Pass", value=0.001))
    assert _status_patch(as_stored(st), st) == {}


def test_changed_and_removed_fields_only() -> None:
    before = RolloutStatus(phase="Progressing", canary_revision="abc", canary_weight=5)
    after = before.model_copy(update={"canary_weight": 25, "canary_revision": None})
    assert _status_patch(as_stored(before), after) == {"canaryWeight": 25, "canaryRevision": None}
