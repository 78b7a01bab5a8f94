"""Valid report.json contents for tests: the operator trusts nothing else, so tests that play
the trainer need reports the contract accepts."""

from __future__ import annotations

from datetime import UTC, datetime

from rewardops_trainer.contract import (
    DataCounts,
    EvalMetrics,
    Lineage,
    ModelEvaluation,
    Report,
    RunConfig,
    SliceMetrics,
    TrainingSummary,
)
from rewardops_trainer.contract.report import MODEL_DIR
from rewardops_trainer.storage import join_uri

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def metrics(
    accuracy: float,
    *,
    pairs: int = 500,
    latency: float = 2.0,
    length_correlation: float = 0.1,
    slices: dict[str, tuple[int, float]] | None = None,
) -> EvalMetrics:
    return EvalMetrics(
        pairs=pairs,
        accuracy=accuracy,
        mean_loss=0.6,
        mean_margin=0.3,
        reward_mean=0.0,
        reward_std=1.0,
        calibration_error=0.05,
        length_correlation=length_correlation,
        latency_ms_per_pair=latency,
        slices={k: SliceMetrics(pairs=n, accuracy=a) for k, (n, a) in (slices or {}).items()},
    )


def _lineage(config: RunConfig | None) -> Lineage:
    if config is None:
        return Lineage(
            telemetry_uri="s3://t/",
            since=T0,
            until=T0,
            input_digest="a",
            pairs_digest="b",
            config_digest="c",
            base_model_uri="s3://base/",
            base_model_digest="d",
            code_version="0.1.0",
        )
    return Lineage(
        telemetry_uri=config.telemetry_uri,
        since=config.since,
        until=config.until,
        input_digest="0" * 64,
        pairs_digest="1" * 64,
        config_digest=config.digest(),
        base_model_uri=config.base_model_uri,
        base_model_digest="2" * 64,
        code_version="test",
    )


def make_report(
    candidate: EvalMetrics,
    baseline: EvalMetrics | None = None,
    *,
    candidate_golden: EvalMetrics | None = None,
    baseline_golden: EvalMetrics | None = None,
    run_id: str = "rm-g1-abc",
    config: RunConfig | None = None,
) -> Report:
    """A report with these metrics; with ``config``, for that run (ids, URIs, lineage)."""
    if config is not None:
        run_id = config.run_id
    candidate_uri = join_uri(config.run_uri, MODEL_DIR) if config else f"s3://out/{run_id}/model"
    baseline_uri = config.baseline_model_uri if config else "s3://out/old/model"
    return Report(
        run_id=run_id,
        created_at=T0,
        candidate=ModelEvaluation(
            model_uri=candidate_uri, held_out=candidate, golden=candidate_golden
        ),
        baseline=(
            ModelEvaluation(model_uri=baseline_uri, held_out=baseline, golden=baseline_golden)
            if baseline is not None and baseline_uri is not None
            else None
        ),
        data=DataCounts(
            events_read=1000,
            events_rejected=3,
            events_without_consent=10,
            redactions=2,
            pairs_train=450,
            pairs_validation=50,
        ),
        training=TrainingSummary(
            steps=10, epochs=1.0, final_loss=0.5, pairs_per_second=100.0, device="cpu"
        ),
        lineage=_lineage(config),
        artifacts={"model/model.safetensors": "0" * 64},
    )
