"""``report.json``: the only thing the operator trusts about a finished run.

Written last under ``<outputUri>/<runId>/``, beside ``model/`` and ``manifest.json``; its
presence means the run completed. Candidate and baseline are measured on the same pairs by the
same code.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, field_validator

from rewardops_trainer.contract.base import ContractModel

REPORT_SCHEMA_VERSION = 1
REPORT_FILE = "report.json"
MANIFEST_FILE = "manifest.json"
MODEL_DIR = "model"

#: Upper bounds of the reward histogram, shared by the report (offline) and the reference
#: server's ``rewardops_serve_score`` metric (live), so the two distributions compare bucket by
#: bucket. Rewards are unnormalised logits; a symmetric spread around 0 shows drift and
#: saturation. The last bucket (+Inf) is implied.
SCORE_BUCKETS: tuple[float, ...] = (
    -20.0,
    -10.0,
    -5.0,
    -3.0,
    -2.0,
    -1.0,
    -0.5,
    0.0,
    0.5,
    1.0,
    2.0,
    3.0,
    5.0,
    10.0,
    20.0,
)


class SliceMetrics(ContractModel):
    pairs: int = Field(ge=0)
    accuracy: float = Field(ge=0.0, le=1.0)


class EvalMetrics(ContractModel):
    """One model on one set of pairs."""

    pairs: int = Field(ge=0)
    accuracy: float = Field(ge=0.0, le=1.0, description="fraction with r_chosen > r_rejected")
    mean_loss: float
    mean_margin: float = Field(description="mean of r_chosen - r_rejected")
    reward_mean: float
    reward_std: float
    calibration_error: float = Field(ge=0.0, description="ECE of sigmoid(r_c - r_r)")
    length_correlation: float = Field(
        ge=-1.0, le=1.0, description="Pearson r of reward vs response length"
    )
    latency_ms_per_pair: float = Field(ge=0.0)
    slices: dict[str, SliceMetrics] = Field(default_factory=dict, description="by pair rule")
    score_counts: list[int] | None = Field(
        default=None,
        description="rewards of every scored response (chosen and rejected) per bucket of "
        "SCORE_BUCKETS, not cumulative; the last count is above the highest bound",
    )

    @field_validator("score_counts")
    @classmethod
    def _one_count_per_bucket(cls, counts: list[int] | None) -> list[int] | None:
        if counts is not None:
            if len(counts) != len(SCORE_BUCKETS) + 1:
                raise ValueError(f"needs {len(SCORE_BUCKETS) + 1} counts, got {len(counts)}")
            if min(counts) < 0:
                raise ValueError("counts cannot be negative")
        return counts


class ModelEvaluation(ContractModel):
    model_uri: str
    held_out: EvalMetrics
    golden: EvalMetrics | None = None


class DataCounts(ContractModel):
    events_read: int = Field(ge=0)
    events_rejected: int = Field(ge=0, description="malformed lines, kept in rejected.jsonl")
    events_without_consent: int = Field(ge=0)
    redactions: int = Field(ge=0)
    pairs_train: int = Field(ge=0)
    pairs_validation: int = Field(ge=0)
    pairs_golden: int = Field(default=0, ge=0)
    pairs_by_rule: dict[str, int] = Field(default_factory=dict)


class Lineage(ContractModel):
    telemetry_uri: str
    since: datetime
    until: datetime
    input_digest: str = Field(description="SHA-256 over the input objects' keys, sizes and ETags")
    pairs_digest: str
    config_digest: str
    base_model_uri: str
    base_model_digest: str
    code_version: str


class TrainingSummary(ContractModel):
    steps: int = Field(ge=0)
    epochs: float = Field(ge=0.0)
    final_loss: float
    pairs_per_second: float = Field(ge=0.0)
    device: str
    resumed_from_step: int | None = None


class Report(ContractModel):
    schema_version: int = REPORT_SCHEMA_VERSION
    run_id: str
    created_at: datetime
    candidate: ModelEvaluation
    baseline: ModelEvaluation | None = Field(
        default=None, description="None when nothing was in production yet"
    )
    data: DataCounts
    training: TrainingSummary
    lineage: Lineage
    artifacts: dict[str, str] = Field(description="path under the run -> SHA-256")
    timings: dict[str, float] = Field(default_factory=dict, description="stage -> seconds")
