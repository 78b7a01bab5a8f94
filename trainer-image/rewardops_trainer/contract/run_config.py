"""The run config: everything the operator (or `rewardops run`) hands one trainer run.

It travels as JSON, in the environment variable ``REWARDOPS_RUN_CONFIG`` of the training Job
or in a file/object named by ``rewardops-trainer train --config``. Credentials never travel in
it: the trainer reads them from ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, which the Job
fills from a Secret by reference.
"""

from __future__ import annotations

import hashlib

from pydantic import AwareDatetime, Field, model_validator

from rewardops_trainer.contract.base import ContractModel

RUN_CONFIG_ENV = "REWARDOPS_RUN_CONFIG"


class StorageSettings(ContractModel):
    """How to reach the S3 endpoint behind every ``s3://`` URI of the run."""

    endpoint: str | None = Field(
        default=None, description="host[:port] of the S3 endpoint; None reads S3_ENDPOINT"
    )
    secure: bool = Field(default=True, description="use TLS")
    region: str | None = None


class LoraSettings(ContractModel):
    rank: int = Field(default=8, ge=1, le=256)
    alpha: int = Field(default=16, ge=1)
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0)


class Hyperparameters(ContractModel):
    learning_rate: float = Field(default=2e-5, gt=0.0, le=1.0)
    epochs: int = Field(default=1, ge=1, le=100)
    max_steps: int | None = Field(default=None, ge=1, description="overrides epochs when set")
    batch_size: int = Field(default=16, ge=1, le=4096, description="pairs per optimizer step")
    gradient_accumulation_steps: int = Field(default=1, ge=1, le=1024)
    max_length: int = Field(default=512, ge=8, le=32768, description="tokens per text")
    warmup_ratio: float = Field(default=0.1, ge=0.0, le=1.0)
    weight_decay: float = Field(default=0.0, ge=0.0, le=1.0)
    max_grad_norm: float = Field(default=1.0, gt=0.0)
    reward_centering: float | None = Field(
        default=None, ge=0.0, description="coefficient of the (r_c + r_r)^2 penalty"
    )
    gradient_checkpointing: bool = False
    lora: LoraSettings | None = None
    seed: int = 42


class PairSettings(ContractModel):
    """How telemetry becomes preference pairs (see docs/telemetry.md for each rule)."""

    validation_fraction: float = Field(default=0.1, gt=0.0, lt=1.0)
    max_pairs_per_prompt: int = Field(default=8, ge=1)
    min_pairs: int = Field(default=100, ge=1, description="fewer pairs is a data error")
    max_rejected_fraction: float = Field(
        default=0.05, ge=0.0, le=1.0, description="malformed lines above this fail the run"
    )
    max_text_chars: int = Field(default=8000, ge=1)
    dwell_threshold_ms: int = Field(default=10_000, ge=0)


class RunConfig(ContractModel):
    run_id: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    telemetry_uri: str = Field(description="s3://bucket/prefix or file:///path of JSONL(.gz)")
    #: Times must carry a UTC offset: a naive time would mean whatever the pod's clock zone is.
    since: AwareDatetime
    until: AwareDatetime
    golden_uri: str | None = Field(default=None, description="JSONL of golden preference pairs")
    output_uri: str = Field(description="artifacts go to <outputUri>/<runId>/")
    base_model_uri: str = Field(description="the model to fine-tune")
    baseline_model_uri: str | None = Field(
        default=None, description="the model now in production, evaluated on the same pairs"
    )
    storage: StorageSettings = StorageSettings()
    hyperparameters: Hyperparameters = Hyperparameters()
    pairs: PairSettings = PairSettings()

    @model_validator(mode="after")
    def _window_is_ordered(self) -> RunConfig:
        if self.until <= self.since:
            raise ValueError("until must be after since")
        return self

    @property
    def run_uri(self) -> str:
        return f"{self.output_uri.rstrip('/')}/{self.run_id}"

    def digest(self) -> str:
        """SHA-256 of the canonical JSON form: the config part of a run's lineage."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()
