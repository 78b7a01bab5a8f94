"""The RewardModelUpdate API (rewardops.dev/v1alpha1) as pydantic models.

These models are the API: the CRD in crds/ is generated from them (`rewardops crd`), the
operator and `rewardops run` parse resources with them, and `rewardops validate` checks files
against both. camelCase on the wire; no floats in spec (decimal strings instead).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from rewardops_operator.api.types import (
    Decimal,
    Duration,
    Fraction,
    PositiveDecimal,
    SignedDecimal,
    parse_duration,
)

GROUP = "rewardops.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "RewardModelUpdate"
PLURAL = "rewardmodelupdates"
SINGULAR = "rewardmodelupdate"
SHORT_NAMES = ("rmu",)
HISTORY_LIMIT = 10

URI_PATTERN = r"^(s3|file)://.+"
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class ApiModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
    )


# --- spec -------------------------------------------------------------------------------------


class ServingSpec(ApiModel):
    """The serving Deployment that promotion rolls (same namespace as the resource)."""

    deployment: str = Field(pattern=NAME_PATTERN, max_length=253, description="Deployment name")
    container: str | None = Field(
        default=None, description="container that reads the model URI; default: the first one"
    )
    model_env: str = Field(
        default="REWARD_MODEL_URI",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="environment variable holding the model URI (the serving contract)",
    )


class CredentialsRef(ApiModel):
    """A Secret in the resource's namespace holding S3 credentials; read only by reference."""

    secret_name: str = Field(pattern=NAME_PATTERN, max_length=253)
    access_key_id_key: str = Field(default="AWS_ACCESS_KEY_ID", description="key of the access key")
    secret_access_key_key: str = Field(
        default="AWS_SECRET_ACCESS_KEY", description="key of the secret key"
    )


class StorageSpec(ApiModel):
    """The S3 endpoint behind every s3:// URI; unset fields fall back to the operator's defaults."""

    endpoint: str | None = Field(default=None, description="host[:port], e.g. minio.minio:9000")
    secure: bool | None = Field(default=None, description="use TLS (operator default: true)")
    region: str | None = None
    credentials: CredentialsRef | None = None


class TelemetrySpec(ApiModel):
    """Where production telemetry lies, and which time window to learn from."""

    uri: str = Field(pattern=URI_PATTERN, description="s3://bucket/prefix of JSONL(.gz) events")
    # With a UTC offset, as RFC 3339 requires: a naive time would mean the pod's clock zone.
    since: AwareDatetime | None = Field(default=None, description="window start (RFC 3339)")
    until: AwareDatetime | None = Field(default=None, description="window end; default: run start")
    lookback: Duration = Field(default="7d", description="window length when since is unset")


class GoldenSetSpec(ApiModel):
    uri: str = Field(pattern=URI_PATTERN, description="JSONL of curated preference pairs")


class OutputSpec(ApiModel):
    uri: str = Field(pattern=URI_PATTERN, description="runs are written to <uri>/<runId>/")


class LoraSpec(ApiModel):
    rank: int = Field(default=8, ge=1, le=256)
    alpha: int = Field(default=16, ge=1, le=1024)
    dropout: Fraction = "0.05"


class HyperparametersSpec(ApiModel):
    learning_rate: PositiveDecimal = "2e-5"
    epochs: int = Field(default=1, ge=1, le=100)
    max_steps: int | None = Field(default=None, ge=1, description="overrides epochs when set")
    batch_size: int = Field(default=16, ge=1, le=4096, description="pairs per optimizer step")
    gradient_accumulation_steps: int = Field(default=1, ge=1, le=1024)
    max_length: int = Field(default=512, ge=8, le=32768, description="tokens per text")
    warmup_ratio: Fraction = "0.1"
    weight_decay: Fraction = "0"
    reward_centering: Decimal | None = Field(
        default=None, description="coefficient of the reward-centering penalty"
    )
    gradient_checkpointing: bool = False
    lora: LoraSpec | None = None
    seed: int = Field(default=42, ge=0)


class PairsSpec(ApiModel):
    """How telemetry becomes preference pairs (docs/telemetry.md)."""

    validation_fraction: Fraction = "0.1"
    max_pairs_per_prompt: int = Field(default=8, ge=1, le=1000)
    min_pairs: int = Field(default=100, ge=1, description="fewer pairs fails the run")
    max_rejected_fraction: Fraction = Field(
        default="0.05", description="malformed telemetry lines above this fraction fail the run"
    )
    dwell_threshold_ms: int = Field(default=10_000, ge=0)


class ResourceRequirements(ApiModel):
    requests: dict[str, str] = Field(default_factory=dict)
    limits: dict[str, str] = Field(default_factory=dict)


class Toleration(ApiModel):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class TrainingSpec(ApiModel):
    image: str | None = Field(default=None, description="trainer image; default: the operator's")
    base_model_uri: str | None = Field(
        default=None,
        pattern=URI_PATTERN,
        description="model to fine-tune; default: the model now served",
    )
    gpus: int = Field(
        default=1,
        ge=0,
        le=64,
        description="nvidia.com/gpu per Job; >1 runs one data-parallel process per GPU",
    )
    resources: ResourceRequirements | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    priority_class_name: str | None = None
    queue_name: str | None = Field(
        default=None, description="Kueue LocalQueue; the Job is created suspended for Kueue"
    )
    service_account_name: str | None = None
    active_deadline_seconds: int = Field(default=21600, ge=60, description="Job deadline")
    backoff_limit: int = Field(default=2, ge=0, le=20, description="retries of transient failures")
    hyperparameters: HyperparametersSpec = Field(default_factory=HyperparametersSpec)
    pairs: PairsSpec = Field(default_factory=PairsSpec)


class GatesSpec(ApiModel):
    """What a candidate must show before it may touch production (docs/gates.md)."""

    min_held_out_accuracy: Fraction = Field(
        default="0.6", description="candidate pairwise accuracy on held-out pairs"
    )
    max_held_out_regression: Fraction = Field(
        default="0.01", description="how far below the served model's held-out accuracy"
    )
    max_golden_regression: Fraction = Field(
        default="0.02", description="how far below the served model's golden-set accuracy"
    )
    max_slice_regression: Fraction | None = Field(
        default="0.05", description="per pair rule, against the served model; null disables"
    )
    min_slice_pairs: int = Field(default=20, ge=1, description="smaller slices are not gated")
    max_latency_regression_percent: int | None = Field(
        default=None, ge=0, description="scoring latency increase allowed, in percent"
    )
    max_length_correlation: Fraction | None = Field(
        default=None, description="limit on |corr(reward, response length)|: reward hacking"
    )


class SecretKeyRef(ApiModel):
    """One key of a Secret in the resource's namespace; read only by reference."""

    name: str = Field(pattern=NAME_PATTERN, max_length=253, description="Secret name")
    key: str = Field(min_length=1, max_length=253, description="key within the Secret")


class BasicAuthRef(ApiModel):
    """A Secret holding a user name and a password for HTTP basic auth."""

    secret_name: str = Field(pattern=NAME_PATTERN, max_length=253)
    username_key: str = "username"
    password_key: str = "password"


class PrometheusAuth(ApiModel):
    bearer_token: SecretKeyRef | None = Field(default=None, description="sent as a Bearer token")
    basic: BasicAuthRef | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> PrometheusAuth:
        if self.bearer_token is not None and self.basic is not None:
            raise ValueError("set bearerToken or basic, not both")
        return self


class PrometheusCheckSpec(ApiModel):
    """An instant query whose result is compared with the check's min/max."""

    address: str = Field(
        pattern=r"^https?://[^\s]+$", description="Prometheus base URL, e.g. http://prom:9090"
    )
    query: str = Field(min_length=1, description="PromQL; every series returned must pass")
    auth: PrometheusAuth | None = None


class ServingMetric(StrEnum):
    ERROR_RATIO = "ErrorRatio"
    LATENCY_QUANTILE = "LatencyQuantile"
    SCORE_MEAN_SHIFT = "ScoreMeanShift"
    SCORE_STD_SHIFT = "ScoreStdShift"
    SCORE_DISTANCE = "ScoreDistance"


class ServingMetricsCheckSpec(ApiModel):
    """A number computed from the serving pods' own /metrics (the reference server's)."""

    metric: ServingMetric = Field(
        description="ErrorRatio (5xx/requests), LatencyQuantile (seconds), ScoreMeanShift and "
        "ScoreStdShift (in offline standard deviations), ScoreDistance (KS distance to the "
        "candidate's offline score distribution)"
    )
    quantile: Fraction = Field(default="0.99", description="LatencyQuantile only")
    endpoint: str = Field(
        default="/v1/*",
        description="request endpoint(s) counted; a trailing * matches a prefix",
    )
    min_samples: int = Field(
        default=100, ge=1, description="fewer requests (or scores) make a measurement inconclusive"
    )
    port: int = Field(default=8080, ge=1, le=65535, description="the pods' metrics port")
    path: str = Field(default="/metrics", pattern=r"^/")


class FreshFeedbackCheckSpec(ApiModel):
    """Do users agree with the promoted model? An evaluation Job scores the feedback that
    arrived since the rollout with the promoted and the previous model; the value is promoted
    minus previous pairwise accuracy (e.g. ``min: "-0.02"``)."""

    min_pairs: int = Field(
        default=200,
        ge=1,
        description="fresh preference pairs needed before the models are compared; until "
        "then the check waits (it neither passes nor counts as inconclusive)",
    )
    max_pairs: int = Field(
        default=2000, ge=1, description="pairs scored at most (a stable sample) per evaluation"
    )

    @model_validator(mode="after")
    def _ordered(self) -> FreshFeedbackCheckSpec:
        if self.max_pairs < self.min_pairs:
            raise ValueError("maxPairs must be at least minPairs")
        return self


class AnalysisCheck(ApiModel):
    """One live check: a provider gives numbers, min/max decide (inclusive limits)."""

    name: str = Field(pattern=NAME_PATTERN, max_length=63)
    prometheus: PrometheusCheckSpec | None = None
    serving_metrics: ServingMetricsCheckSpec | None = None
    fresh_feedback: FreshFeedbackCheckSpec | None = None
    max: SignedDecimal | None = Field(
        default=None, description="pass when every value is at most this"
    )
    min: SignedDecimal | None = Field(
        default=None, description="pass when every value is at least this"
    )

    @model_validator(mode="after")
    def _one_provider_and_a_limit(self) -> AnalysisCheck:
        providers = [
            p for p in (self.prometheus, self.serving_metrics, self.fresh_feedback) if p is not None
        ]
        if len(providers) != 1:
            raise ValueError(
                f"check {self.name}: set exactly one of prometheus, servingMetrics, freshFeedback"
            )
        if self.max is None and self.min is None:
            raise ValueError(f"check {self.name}: set max, min or both")
        return self


class AnalysisSpec(ApiModel):
    """Watch the promoted model for ``duration`` after its rollout; roll back on regression."""

    duration: Duration = Field(default="10m", description="window after the rollout completes")
    interval: Duration = Field(default="1m", description="time between measurements")
    failure_limit: int = Field(
        default=1, ge=1, description="failed measurements of one check that roll back"
    )
    inconclusive_limit: int = Field(
        default=3,
        ge=0,
        description="inconclusive measurements of one check tolerated (no data, unreachable)",
    )
    checks: list[AnalysisCheck] = Field(min_length=1, max_length=20)

    @model_validator(mode="after")
    def _sane(self) -> AnalysisSpec:
        if parse_duration(self.interval).total_seconds() < 1:
            raise ValueError("interval must be at least 1s")
        if parse_duration(self.duration) < parse_duration(self.interval):
            raise ValueError("duration must be at least one interval")
        names = [check.name for check in self.checks]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"check names must be unique: {', '.join(duplicates)}")
        if sum(check.fresh_feedback is not None for check in self.checks) > 1:
            raise ValueError("at most one freshFeedback check: each runs an evaluation Job")
        return self


class PromotionSpec(ApiModel):
    mode: Literal["Automatic", "Manual"] = "Automatic"
    approved: bool = Field(default=False, description="Manual mode: set true to promote")
    rollout_deadline_seconds: int = Field(
        default=600, ge=30, description="rollout must complete in this time or is rolled back"
    )
    analysis: AnalysisSpec | None = Field(
        default=None, description="live checks after the rollout (docs/gates-and-analysis.md)"
    )


class RewardModelUpdateSpec(ApiModel):
    serving: ServingSpec
    telemetry: TelemetrySpec
    output: OutputSpec
    storage: StorageSpec = Field(default_factory=StorageSpec)
    golden_set: GoldenSetSpec | None = None
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    gates: GatesSpec = Field(default_factory=GatesSpec)
    promotion: PromotionSpec = Field(default_factory=PromotionSpec)

    @model_validator(mode="after")
    def _window_is_ordered(self) -> RewardModelUpdateSpec:
        since, until = self.telemetry.since, self.telemetry.until
        if since is not None and until is not None and until <= since:
            raise ValueError("telemetry.until must be after telemetry.since")
        return self


# --- status -----------------------------------------------------------------------------------


class Phase(StrEnum):
    PENDING = "Pending"
    TRAINING = "Training"
    EVALUATING = "Evaluating"
    AWAITING_APPROVAL = "AwaitingApproval"
    PROMOTING = "Promoting"
    VERIFYING = "Verifying"
    SUCCEEDED = "Succeeded"
    REJECTED = "Rejected"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_PHASES


TERMINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.REJECTED, Phase.ROLLED_BACK, Phase.FAILED})


class Condition(ApiModel):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    message: str = ""
    last_transition_time: datetime
    observed_generation: int | None = None


class DataStatus(ApiModel):
    events_read: int = 0
    events_rejected: int = 0
    events_without_consent: int = 0
    redactions: int = 0
    pairs_train: int = 0
    pairs_validation: int = 0
    pairs_golden: int = 0


class ModelMetricsStatus(ApiModel):
    """One model's offline numbers, as decimal strings (no floats in the API)."""

    model_uri: str
    held_out_accuracy: Decimal
    golden_accuracy: Decimal | None = None
    mean_loss: str | None = None
    length_correlation: str | None = None
    latency_ms_per_pair: Decimal | None = None
    #: Offline score distribution on held-out pairs (may be negative): what live scores should
    #: look like; the serving-metrics drift checks compare against it.
    reward_mean: str | None = None
    reward_std: str | None = None
    #: Held-out rewards per bucket of the report's SCORE_BUCKETS (not cumulative), so the
    #: ScoreDistance check compares live and offline histograms bucket by bucket.
    score_counts: list[int] | None = None


class GateResult(ApiModel):
    name: str
    passed: bool
    value: str
    limit: str
    message: str


class AnalysisPhase(StrEnum):
    RUNNING = "Running"
    PASSED = "Passed"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"


class CheckStatus(ApiModel):
    """One live check's tally over the analysis window, and its latest numbers."""

    name: str
    passed: int = 0
    failed: int = 0
    inconclusive: int = 0
    last_value: str | None = Field(default=None, description="worst value of the last measurement")
    limit: str = ""
    last_message: str = ""

    @property
    def measured(self) -> int:
        return self.passed + self.failed + self.inconclusive


class FeedbackEvaluationStatus(ApiModel):
    """The fresh-feedback check's evaluation Jobs: the one under way, or the last one."""

    attempts: int = Field(default=0, description="evaluation Jobs started so far")
    job_name: str | None = Field(default=None, description="the evaluation Job under way")
    result_uri: str | None = Field(default=None, description="where that Job writes its result")
    started_at: datetime | None = Field(default=None, description="when that Job was created")
    finished_at: datetime | None = Field(default=None, description="when the last one ended")
    pairs_found: int | None = Field(default=None, description="fresh pairs the last one found")


class AnalysisStatus(ApiModel):
    phase: AnalysisPhase = AnalysisPhase.RUNNING
    started_at: datetime
    last_measured_at: datetime | None = None
    measurements: int = 0
    checks: list[CheckStatus] = Field(default_factory=list)
    feedback: FeedbackEvaluationStatus | None = None
    message: str = ""


class HistoryEntry(ApiModel):
    run_id: str
    generation: int
    phase: Phase
    reason: str
    model_uri: str | None = None
    candidate_accuracy: Decimal | None = None
    finished_at: datetime


class RewardModelUpdateStatus(ApiModel):
    phase: Phase | None = None
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    run_id: str | None = None
    job_name: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    report_uri: str | None = None
    data: DataStatus | None = None
    candidate: ModelMetricsStatus | None = None
    baseline: ModelMetricsStatus | None = None
    gates: list[GateResult] = Field(default_factory=list)
    served_model: str | None = None
    previous_model: str | None = None
    promoted_at: datetime | None = None
    analysis: AnalysisStatus | None = None
    history: list[HistoryEntry] = Field(default_factory=list, max_length=HISTORY_LIMIT)


class ObjectMeta(BaseModel):
    """The part of metadata the API reads; everything else passes through."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = Field(pattern=NAME_PATTERN, max_length=253)
    namespace: str | None = None
    generation: int | None = None
    uid: str | None = None
    annotations: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)


class RewardModelUpdate(ApiModel):
    api_version: Literal["rewardops.dev/v1alpha1"] = "rewardops.dev/v1alpha1"
    kind: Literal["RewardModelUpdate"] = "RewardModelUpdate"
    metadata: ObjectMeta
    spec: RewardModelUpdateSpec
    status: RewardModelUpdateStatus | None = None

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> RewardModelUpdate:
        return cls.model_validate(obj)
