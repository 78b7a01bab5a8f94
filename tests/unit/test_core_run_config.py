from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rewardops_operator.core.naming import run_id
from rewardops_operator.core.observations import DeploymentState, Observations
from rewardops_operator.core.run_config import SpecError, build_run_config
from rewardops_operator.settings import OperatorSettings
from tests.unit.test_core_naming import make_update

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SERVED = "s3://reward-models/runs/old/model"


def deployment(model_uri: str | None = SERVED) -> DeploymentState:
    return DeploymentState(
        name="reward-scorer",
        generation=3,
        observed_generation=3,
        desired_replicas=2,
        updated_replicas=2,
        available_replicas=2,
        progress_deadline_exceeded=False,
        containers=("scorer",),
        model_uri=model_uri,
    )


def observed(now: datetime = NOW, model_uri: str | None = SERVED) -> Observations:
    return Observations(now=now, deployment=deployment(model_uri))


SETTINGS = OperatorSettings(storage_endpoint="minio:9000", storage_secure=False)


def test_defaults_window_base_model_and_storage() -> None:
    update = make_update()
    config = build_run_config(update, observed(), SETTINGS)
    assert config.run_id == run_id(update)
    assert config.until == NOW
    assert config.since == NOW - timedelta(days=7)
    assert config.base_model_uri == SERVED
    assert config.baseline_model_uri == SERVED
    assert (config.storage.endpoint, config.storage.secure) == ("minio:9000", False)
    assert config.golden_uri is None
    assert config.run_uri == f"s3://reward-models/runs/{config.run_id}"


def test_window_is_pinned_to_started_at_across_reconciles() -> None:
    first = build_run_config(make_update(), observed(), SETTINGS)
    started = make_update(status={"runId": first.run_id, "startedAt": NOW.isoformat()})
    later = build_run_config(started, observed(NOW + timedelta(hours=3)), SETTINGS)
    assert later == first


def test_status_of_another_spec_is_not_reused() -> None:
    stale = make_update(
        {"telemetry": {"uri": "s3://telemetry/other/"}},
        status={"runId": "weekly-refresh-g1-0123456789", "startedAt": "2026-01-01T00:00:00Z"},
    )
    config = build_run_config(stale, observed(), SETTINGS)
    assert config.run_id == run_id(stale)
    assert config.until == NOW


def test_spec_window_and_lookback() -> None:
    fixed = make_update(
        {
            "telemetry": {
                "uri": "s3://t/",
                "since": "2026-11-01T00:00:00Z",
                "until": "2026-11-15T00:00:00Z",
            }
        }
    )
    config = build_run_config(fixed, observed(), SETTINGS)
    assert (config.since.day, config.until.day) == (1, 15)
    until_only = make_update(
        {"telemetry": {"uri": "s3://t/", "until": "2026-11-15T01:00:00+01:00", "lookback": "36h"}}
    )
    config = build_run_config(until_only, observed(), SETTINGS)
    assert config.until == datetime(2026, 11, 15, tzinfo=UTC)
    assert config.since == config.until - timedelta(hours=36)


def test_since_after_now_is_a_spec_error() -> None:
    future = make_update({"telemetry": {"uri": "s3://t/", "since": "2027-01-01T00:00:00Z"}})
    with pytest.raises(SpecError, match=r"spec\.telemetry\.since"):
        build_run_config(future, observed(), SETTINGS)


def test_base_model_from_spec_else_served_else_error() -> None:
    spec_base = make_update({"training": {"baseModelUri": "s3://base/v1"}})
    config = build_run_config(spec_base, observed(model_uri=None), SETTINGS)
    assert (config.base_model_uri, config.baseline_model_uri) == ("s3://base/v1", None)
    with pytest.raises(SpecError, match=r"spec.training.baseModelUri is unset.*REWARD_MODEL_URI"):
        build_run_config(make_update(), observed(model_uri=None), SETTINGS)
    with pytest.raises(SpecError, match="baseModelUri"):
        build_run_config(make_update(), Observations(now=NOW), SETTINGS)


def test_decimal_strings_become_numbers_and_storage_spec_wins() -> None:
    update = make_update(
        {
            "goldenSet": {"uri": "s3://golden/set.jsonl"},
            "storage": {"endpoint": "s3.example:443", "secure": True, "region": "eu-west-1"},
            "training": {
                "hyperparameters": {
                    "learningRate": "1e-5",
                    "warmupRatio": "0.05",
                    "weightDecay": "0.01",
                    "rewardCentering": "0.01",
                    "lora": {"rank": 16, "alpha": 32, "dropout": "0.1"},
                    "maxSteps": 50,
                    "seed": 7,
                },
                "pairs": {"validationFraction": "0.2", "maxRejectedFraction": "0.02"},
            },
        }
    )
    config = build_run_config(update, observed(), SETTINGS)
    hyper = config.hyperparameters
    assert (hyper.learning_rate, hyper.warmup_ratio, hyper.weight_decay) == (1e-5, 0.05, 0.01)
    assert hyper.reward_centering == 0.01
    assert hyper.lora is not None
    assert (hyper.lora.rank, hyper.lora.alpha, hyper.lora.dropout) == (16, 32, 0.1)
    assert (hyper.max_steps, hyper.seed) == (50, 7)
    assert (config.pairs.validation_fraction, config.pairs.max_rejected_fraction) == (0.2, 0.02)
    assert config.golden_uri == "s3://golden/set.jsonl"
    assert config.storage.model_dump() == {
        "endpoint": "s3.example:443",
        "secure": True,
        "region": "eu-west-1",
    }


@pytest.mark.parametrize(
    ("training", "path"),
    [
        ({"pairs": {"validationFraction": "0"}}, "spec.training.pairs.validationFraction"),
        (
            {"hyperparameters": {"lora": {"dropout": "1"}}},
            "spec.training.hyperparameters.lora.dropout",
        ),
        ({"hyperparameters": {"learningRate": "2"}}, "spec.training.hyperparameters.learningRate"),
    ],
)
def test_values_the_trainer_refuses_name_their_spec_path(
    training: dict[str, object], path: str
) -> None:
    with pytest.raises(SpecError, match=path.replace(".", r"\.")):
        build_run_config(make_update({"training": training}), observed(), SETTINGS)
