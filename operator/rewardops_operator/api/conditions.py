"""Kubernetes-style conditions: set one, keep lastTransitionTime unless the status changes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from rewardops_operator.api.models import Condition

#: Condition types, one per stage, plus Ready (the summary).
TRAINED = "Trained"
GATES_PASSED = "GatesPassed"
APPROVED = "Approved"
PROMOTED = "Promoted"
ROLLED_BACK = "RolledBack"
READY = "Ready"

ConditionStatus = Literal["True", "False", "Unknown"]


def find(conditions: Sequence[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: Sequence[Condition], type_: str) -> bool:
    found = find(conditions, type_)
    return found is not None and found.status == "True"


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    generation: int | None,
    now: datetime,
) -> list[Condition]:
    """A new list with ``type_`` set; the transition time moves only when the status changes."""
    previous = find(conditions, type_)
    since = previous.last_transition_time if previous and previous.status == status else now
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )
    if previous is None:
        return [*conditions, updated]
    return [updated if c.type == type_ else c for c in conditions]
