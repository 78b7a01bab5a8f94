"""Both trainer commands read their config the same way: --config, stdin or the Job's env var."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from rewardops_trainer.contract import RUN_CONFIG_ENV, RunConfig
from rewardops_trainer.errors import ConfigError
from rewardops_trainer.run import load_run_config

GOOD = {
    "runId": "r-1",
    "telemetryUri": "file:///tmp/telemetry",
    "since": "2026-11-01T00:00:00Z",
    "until": "2026-11-02T00:00:00Z",
    "outputUri": "file:///tmp/out",
    "baseModelUri": "file:///tmp/model",
}


def test_the_env_var_a_file_and_stdin_give_the_same_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = json.dumps(GOOD)
    monkeypatch.setenv(RUN_CONFIG_ENV, text)
    from_env = load_run_config(None)
    path = tmp_path / "run.json"
    path.write_text(text)
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    assert from_env == load_run_config(str(path)) == load_run_config("-")
    assert from_env == RunConfig.model_validate(GOOD)


def test_no_config_says_how_to_give_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RUN_CONFIG_ENV, raising=False)
    with pytest.raises(ConfigError, match=f"no run config: pass --config or set {RUN_CONFIG_ENV}"):
        load_run_config(None)


def test_every_bad_field_is_named_with_where_the_config_came_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bad = {**GOOD, "runId": "Not A Name", "hyperparameters": {"batchSize": 0}}
    monkeypatch.setenv(RUN_CONFIG_ENV, json.dumps(bad))
    with pytest.raises(ConfigError) as raised:
        load_run_config(None)
    message = str(raised.value)
    assert message.startswith(f"run config from ${RUN_CONFIG_ENV}: ")
    assert "runId: String should match pattern" in message
    assert "hyperparameters.batchSize: Input should be greater than or equal to 1" in message
