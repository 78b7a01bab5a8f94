"""Labels and annotations the operator puts on the objects it creates or touches."""

from __future__ import annotations

import hashlib

from rewardops_operator.api.models import RewardModelUpdate

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "rewardops"
COMPONENT = "app.kubernetes.io/component"
UPDATE_LABEL = "rewardops.dev/update"
RUN_LABEL = "rewardops.dev/run"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"

#: Label values are at most 63 characters (object names may have 253).
MAX_LABEL_VALUE = 63


def label_value(value: str) -> str:
    """``value`` if it fits a label; else a cut-down prefix plus a digest, still unique."""
    if len(value) <= MAX_LABEL_VALUE:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:10]
    prefix = value[: MAX_LABEL_VALUE - len(digest) - 1].rstrip("-._")
    return f"{prefix}-{digest}"


def update_selector(update: RewardModelUpdate) -> dict[str, str]:
    """The labels that find every object made for ``update`` (e.g. its Jobs)."""
    return {
        MANAGED_BY: MANAGED_BY_VALUE,
        UPDATE_LABEL: label_value(update.metadata.name),
    }


def run_labels(update: RewardModelUpdate, run_id: str) -> dict[str, str]:
    """Labels of one run's Job and pods."""
    return {**update_selector(update), COMPONENT: "trainer", RUN_LABEL: label_value(run_id)}
