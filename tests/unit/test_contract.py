from __future__ import annotations

import pytest
from pydantic import ValidationError

from rewardops_trainer.contract import RunConfig

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
