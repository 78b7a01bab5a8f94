from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from rewardops_operator.local.jobs import LocalJobs
from rewardops_trainer.contract import RunConfig


def test_a_failing_trainer_is_observed_failed_with_its_message(tmp_path: Path) -> None:
    config = RunConfig(
        run_id="r-1",
        telemetry_uri=(tmp_path / "none").as_uri(),
        since=datetime(2026, 1, 1, tzinfo=UTC),
        until=datetime(2026, 1, 2, tzinfo=UTC),
        output_uri=(tmp_path / "out").as_uri(),
        base_model_uri=(tmp_path / "no-model").as_uri(),
    )
    jobs = LocalJobs(tmp_path / "logs", {}, echo=False)
    assert jobs.observe("r-1") is None
    jobs.create("r-1", config)
    jobs.create("r-1", config)  # a second create is a no-op, like a 409
    deadline = time.monotonic() + 120
    while (
        (state := jobs.observe("r-1")) is not None and state.active and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    assert state is not None
    assert state.failed
    assert state.exit_code == 3, state.message
    assert "error" in state.message
    assert (tmp_path / "logs" / "r-1.log").read_text().strip()
