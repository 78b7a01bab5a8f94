"""Fresh-feedback evaluation: after a promotion, do users agree with the promoted model?

The operator's live analysis (check ``freshFeedback``) starts a short evaluation Job with a
:class:`FeedbackConfig`; the trainer builds preference pairs from the telemetry that arrived
after the promotion, scores them with the promoted and the previous model (the same code and
the same pairs for both), and writes a :class:`FeedbackEvaluation` to ``resultUri``. Too few
fresh pairs is an answer, not an error: ``enough`` is false and the operator asks again later.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, Field, model_validator

from rewardops_trainer.contract.base import ContractModel
from rewardops_trainer.contract.report import EvalMetrics
from rewardops_trainer.contract.run_config import PairSettings, StorageSettings

FEEDBACK_CONFIG_ENV = "REWARDOPS_FEEDBACK_CONFIG"
FEEDBACK_SCHEMA_VERSION = 1


class FeedbackConfig(ContractModel):
    evaluation_id: str = Field(
        min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    )
    telemetry_uri: str = Field(description="s3://bucket/prefix or file:///path of JSONL(.gz)")
    since: AwareDatetime = Field(description="the promotion: only feedback after it counts")
    until: AwareDatetime
    promoted_model_uri: str
    previous_model_uri: str
    result_uri: str = Field(description="where the FeedbackEvaluation JSON is written")
    storage: StorageSettings = StorageSettings()
    #: The update's pair rules, so fresh pairs mean what the training pairs meant.
    pairs: PairSettings = PairSettings()
    min_pairs: int = Field(default=200, ge=1, description="fewer fresh pairs: not enough yet")
    max_pairs: int = Field(
        default=2000, ge=1, description="evaluate at most this many (a stable sample)"
    )
    max_length: int = Field(default=512, ge=8, le=32768, description="tokens per text")

    @model_validator(mode="after")
    def _sane(self) -> FeedbackConfig:
        if self.until <= self.since:
            raise ValueError("until must be after since")
        if self.max_pairs < self.min_pairs:
            raise ValueError("maxPairs must be at least minPairs")
        return self


class FeedbackEvaluation(ContractModel):
    schema_version: int = FEEDBACK_SCHEMA_VERSION
    evaluation_id: str
    created_at: datetime
    since: datetime
    until: datetime
    events_read: int = Field(ge=0)
    events_rejected: int = Field(ge=0)
    events_without_consent: int = Field(ge=0)
    pairs_found: int = Field(ge=0, description="fresh pairs built from the window")
    pairs_by_rule: dict[str, int] = Field(default_factory=dict)
    min_pairs: int = Field(ge=1)
    enough: bool = Field(description="pairsFound >= minPairs; only then are models scored")
    promoted: EvalMetrics | None = None
    previous: EvalMetrics | None = None
    input_digest: str = Field(description="SHA-256 over the input objects' keys, sizes, ETags")

    @model_validator(mode="after")
    def _scored_when_enough(self) -> FeedbackEvaluation:
        if self.enough != (self.promoted is not None and self.previous is not None):
            raise ValueError("promoted and previous metrics are present exactly when enough")
        return self

    @property
    def agreement_delta(self) -> float | None:
        """Promoted minus previous pairwise accuracy: how much more users agree with the new
        model (negative: less)."""
        if self.promoted is None or self.previous is None:
            return None
        return self.promoted.accuracy - self.previous.accuracy
