"""The run config a training Job gets: the spec's fields, the observed served model, a window.

Decimal strings become floats here (the trainer's contract takes numbers); everything else is
copied. The telemetry window is pinned to the run's ``startedAt`` so that every reconcile of the
same run derives the same config.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from rewardops_operator.api.models import FreshFeedbackCheckSpec, RewardModelUpdate
from rewardops_operator.api.types import parse_duration
from rewardops_operator.core.naming import is_run_of, run_id
from rewardops_operator.core.observations import Observations
from rewardops_operator.settings import OperatorSettings
from rewardops_trainer.contract import (
    FeedbackConfig,
    Hyperparameters,
    LoraSettings,
    PairSettings,
    RunConfig,
    StorageSettings,
)


class SpecError(ValueError):
    """The spec (with what was observed) cannot make a run; the message names the field."""


def _utc(moment: datetime) -> datetime:
    # A timestamp without an offset is read as UTC, so it compares with the observed clock.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def current_run(update: RewardModelUpdate, now: datetime) -> tuple[str, datetime]:
    """The run id and start time: the status's when it holds a run of this spec, else new."""
    status = update.status
    if status is not None and is_run_of(status.run_id, update) and status.run_id:
        return status.run_id, _utc(status.started_at or now)
    return run_id(update), _utc(now)


def build_run_config(
    update: RewardModelUpdate, observed: Observations, settings: OperatorSettings
) -> RunConfig:
    """The trainer's run config; raises :class:`SpecError` naming the field when it cannot."""
    spec = update.spec
    run, started_at = current_run(update, observed.now)
    served = observed.deployment.model_uri if observed.deployment is not None else None
    base_model = spec.training.base_model_uri or served
    if base_model is None:
        raise SpecError(
            "spec.training.baseModelUri is unset and the serving Deployment "
            f"{spec.serving.deployment!r} serves no model (its {spec.serving.model_env} is "
            "unset): nothing to fine-tune"
        )
    until = _utc(spec.telemetry.until) if spec.telemetry.until else started_at
    if spec.telemetry.since is not None:
        since = _utc(spec.telemetry.since)
    else:
        since = until - parse_duration(spec.telemetry.lookback)
    if until <= since:
        raise SpecError(
            f"spec.telemetry.since ({since.isoformat()}) is not before the window's end "
            f"({until.isoformat()}, {'spec.telemetry.until' if spec.telemetry.until else 'now'})"
        )
    hyper = spec.training.hyperparameters
    try:
        return RunConfig(
            run_id=run,
            telemetry_uri=spec.telemetry.uri,
            since=since,
            until=until,
            golden_uri=spec.golden_set.uri if spec.golden_set else None,
            output_uri=spec.output.uri,
            base_model_uri=base_model,
            baseline_model_uri=served,
            storage=storage_settings(update, settings),
            hyperparameters=Hyperparameters(
                learning_rate=float(hyper.learning_rate),
                epochs=hyper.epochs,
                max_steps=hyper.max_steps,
                batch_size=hyper.batch_size,
                gradient_accumulation_steps=hyper.gradient_accumulation_steps,
                max_length=hyper.max_length,
                warmup_ratio=float(hyper.warmup_ratio),
                weight_decay=float(hyper.weight_decay),
                reward_centering=(
                    float(hyper.reward_centering) if hyper.reward_centering is not None else None
                ),
                gradient_checkpointing=hyper.gradient_checkpointing,
                lora=(
                    LoraSettings(
                        rank=hyper.lora.rank,
                        alpha=hyper.lora.alpha,
                        dropout=float(hyper.lora.dropout),
                    )
                    if hyper.lora is not None
                    else None
                ),
                seed=hyper.seed,
            ),
            pairs=_pair_settings(update),
        )
    except ValidationError as error:
        raise SpecError(_describe(error)) from error


def storage_settings(update: RewardModelUpdate, settings: OperatorSettings) -> StorageSettings:
    spec = update.spec.storage
    return StorageSettings(
        endpoint=spec.endpoint or settings.storage_endpoint,
        secure=spec.secure if spec.secure is not None else settings.storage_secure,
        region=spec.region,
    )


def _pair_settings(update: RewardModelUpdate) -> PairSettings:
    pairs = update.spec.training.pairs
    return PairSettings(
        validation_fraction=float(pairs.validation_fraction),
        max_pairs_per_prompt=pairs.max_pairs_per_prompt,
        min_pairs=pairs.min_pairs,
        max_rejected_fraction=float(pairs.max_rejected_fraction),
        dwell_threshold_ms=pairs.dwell_threshold_ms,
    )


def build_feedback_config(
    update: RewardModelUpdate,
    check: FreshFeedbackCheckSpec,
    *,
    evaluation_id: str,
    since: datetime,
    until: datetime,
    result_uri: str,
    settings: OperatorSettings,
) -> FeedbackConfig:
    """What a fresh-feedback evaluation Job gets: the promoted (candidate) and previous model,
    the telemetry since the rollout, and the update's own pair rules and storage."""
    status = update.status
    candidate = status.candidate if status is not None else None
    previous = status.previous_model if status is not None else None
    if candidate is None or previous is None:
        raise SpecError("a fresh-feedback evaluation needs a promoted and a previous model")
    try:
        return FeedbackConfig(
            evaluation_id=evaluation_id,
            telemetry_uri=update.spec.telemetry.uri,
            since=_utc(since),
            until=_utc(until),
            promoted_model_uri=candidate.model_uri,
            previous_model_uri=previous,
            result_uri=result_uri,
            storage=storage_settings(update, settings),
            pairs=_pair_settings(update),
            min_pairs=check.min_pairs,
            max_pairs=check.max_pairs,
            max_length=update.spec.training.hyperparameters.max_length,
        )
    except ValidationError as error:
        raise SpecError(_describe(error)) from error


#: Where each contract model's fields live in the spec, for error messages.
_SPEC_PATHS = {
    "Hyperparameters": "spec.training.hyperparameters",
    "LoraSettings": "spec.training.hyperparameters.lora",
    "PairSettings": "spec.training.pairs",
    "StorageSettings": "spec.storage",
    "RunConfig": "run config",
    "FeedbackConfig": "fresh-feedback evaluation config",
}


def _describe(error: ValidationError) -> str:
    # The API allows a few values the trainer refuses (a validation fraction of 0, a learning
    # rate above 1); name them by their spec path.
    prefix = _SPEC_PATHS.get(error.title, error.title)
    return "; ".join(
        f"{prefix}.{'.'.join(to_camel(str(part)) for part in item['loc'])}: {item['msg']}"
        for item in error.errors()
    )
