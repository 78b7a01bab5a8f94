from __future__ import annotations

import pytest
from pydantic import ValidationError

from rewardops_trainer.contract import EvalMetrics, FeedbackConfig, FeedbackEvaluation, RunConfig
from rewardops_trainer.contract.report import SCORE_BUCKETS

BASE = {
    "runId": "r-1",
    "telemetryUri": "s3://t/",
    "outputUri": "s3://o/",
    "baseModelUri": "s3://m/",
}


def test_run_config_round_trips_as_camel_case_json() -> None:
    config = RunConfig.model_validate(
        {**BASE, "since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00+01:00"}
    )
    assert RunConfig.model_validate_json(config.to_json()) == config
    assert '"runId":"r-1"' in config.to_json()
    assert config.run_uri == "s3://o/r-1"
    assert len(config.digest()) == 64


def test_run_config_refuses_naive_times_and_reversed_windows() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        RunConfig.model_validate({**BASE, "since": "2026-01-01T00:00:00Z", "until": "2026-01-03"})
    with pytest.raises(ValidationError, match="until must be after since"):
        RunConfig.model_validate(
            {**BASE, "since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
        )


def test_run_config_rejects_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="extra"):
        RunConfig.model_validate(
            {**BASE, "since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z", "x": 1}
        )


FEEDBACK = {
    "evaluationId": "fresh-1",
    "telemetryUri": "s3://t/",
    "since": "2026-01-01T00:00:00Z",
    "until": "2026-01-02T00:00:00Z",
    "promotedModelUri": "s3://m/new",
    "previousModelUri": "s3://m/old",
    "resultUri": "s3://r/fresh-1.json",
}


def test_feedback_config_round_trips_with_defaults() -> None:
    config = FeedbackConfig.model_validate(FEEDBACK)
    assert FeedbackConfig.model_validate_json(config.to_json()) == config
    assert (config.min_pairs, config.max_pairs) == (200, 2000)


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"until": "2026-01-01T00:00:00Z"}, "until must be after since"),
        ({"since": "2026-01-01T00:00:00"}, "timezone"),
        ({"minPairs": 300, "maxPairs": 100}, "maxPairs must be at least minPairs"),
        ({"minPairs": 0}, "minPairs"),
        ({"evaluationId": "Not_A_Name"}, "evaluationId"),
        ({"pairs": {"minPair": 1}}, "extra"),
    ],
)
def test_feedback_config_refuses_bad_values(update: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        FeedbackConfig.model_validate({**FEEDBACK, **update})


def _metrics(**update: object) -> EvalMetrics:
    values: dict[str, object] = {
        "pairs": 1,
        "accuracy": 1.0,
        "mean_loss": 0.1,
        "mean_margin": 2.0,
        "reward_mean": 0.0,
        "reward_std": 1.0,
        "calibration_error": 0.0,
        "length_correlation": 0.0,
        "latency_ms_per_pair": 1.0,
    }
    values.update(update)
    return EvalMetrics.model_validate(values)


def test_eval_metrics_need_one_non_negative_count_per_bucket() -> None:
    counts = [0] * (len(SCORE_BUCKETS) + 1)
    assert _metrics(score_counts=counts).score_counts == counts
    assert _metrics().score_counts is None  # reports written before the histogram
    with pytest.raises(ValidationError, match=f"needs {len(SCORE_BUCKETS) + 1} counts, got 15"):
        _metrics(score_counts=counts[1:])
    with pytest.raises(ValidationError, match="negative"):
        _metrics(score_counts=[-1, *counts[1:]])


def _evaluation(**update: object) -> FeedbackEvaluation:
    values: dict[str, object] = {
        "evaluation_id": "fresh-1",
        "created_at": "2026-01-02T00:05:00Z",
        "since": "2026-01-01T00:00:00Z",
        "until": "2026-01-02T00:00:00Z",
        "events_read": 10,
        "events_rejected": 0,
        "events_without_consent": 0,
        "pairs_found": 3,
        "min_pairs": 2,
        "enough": True,
        "promoted": _metrics(accuracy=0.75),
        "previous": _metrics(accuracy=0.5),
        "input_digest": "0" * 64,
    }
    values.update(update)
    return FeedbackEvaluation.model_validate(values)


def test_feedback_evaluation_has_metrics_exactly_when_enough() -> None:
    scored = _evaluation()
    assert scored.agreement_delta == 0.25
    assert FeedbackEvaluation.model_validate_json(scored.to_json()) == scored
    unscored = _evaluation(enough=False, promoted=None, previous=None, pairs_found=1)
    assert unscored.agreement_delta is None
    assert '"promoted"' not in unscored.to_json()
    for bad in (
        {"enough": False},
        {"previous": None},
        {"enough": True, "promoted": None, "previous": None},
    ):
        with pytest.raises(ValidationError, match="exactly when enough"):
            _evaluation(**bad)
