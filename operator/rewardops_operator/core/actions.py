"""What the pure core asks a driver to do. Drivers carry these out; they decide nothing.

Every action is idempotent for its driver: creating a Job that exists, or setting a model URI
that is already set, is success.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rewardops_operator.api.models import RewardModelUpdateStatus
from rewardops_trainer.contract import FeedbackConfig, RunConfig


@dataclass(frozen=True)
class CreateJob:
    """Start the training run (a Kubernetes Job; a local trainer process)."""

    name: str
    run_config: RunConfig


@dataclass(frozen=True)
class CreateFeedbackJob:
    """Start a fresh-feedback evaluation (a short Job; a local trainer process)."""

    name: str
    config: FeedbackConfig


@dataclass(frozen=True)
class DeleteJob:
    name: str


@dataclass(frozen=True)
class AcquireLock:
    """Record ``holder`` as the one update allowed to promote into ``deployment``."""

    deployment: str
    holder: str


@dataclass(frozen=True)
class ReleaseLock:
    """Remove the lock if ``holder`` holds it; leave another holder's lock alone."""

    deployment: str
    holder: str


@dataclass(frozen=True)
class SetServedModel:
    """Point the serving container's model env var at ``model_uri`` (promotion and rollback).

    Only the env var, the pod-template annotation with ``model_version`` and the Deployment's
    record of the previous model change; nothing else in the Deployment.
    """

    deployment: str
    container: str
    env: str
    model_uri: str
    model_version: str
    previous_model_uri: str | None


@dataclass(frozen=True)
class EmitEvent:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


Action = (
    CreateJob
    | CreateFeedbackJob
    | DeleteJob
    | AcquireLock
    | ReleaseLock
    | SetServedModel
    | EmitEvent
)


@dataclass(frozen=True)
class Decision:
    """The core's answer: the next status, what to do, and when to look again."""

    status: RewardModelUpdateStatus
    actions: list[Action] = field(default_factory=list)
    #: Seconds until the driver should reconcile again even if nothing changes; None: only
    #: on change (or never, once the update is finished).
    requeue_after: float | None = None
