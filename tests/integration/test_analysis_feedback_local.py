"""`rewardops run`'s driver runs a fresh-feedback evaluation as a real trainer process.

Real LocalJobs (``python -m rewardops_trainer feedback``), real tiny models and synthetic
telemetry in a file store; the serving port is the stand-in of test_analysis_local (the
fresh-feedback check never scrapes it). The driver's clock is pinned, so the window is exact.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import cast

import pytest

from rewardops_operator.api.models import Phase
from rewardops_operator.core.actions import Action
from rewardops_operator.local.driver import LocalDriver, LocalUpdate
from rewardops_operator.local.jobs import LocalJobs
from rewardops_operator.local.serving import LocalDeployment
from rewardops_trainer.contract import FeedbackEvaluation, StorageSettings
from rewardops_trainer.storage import open_store
from rewardops_trainer.synthetic import generate_telemetry
from tests.integration.test_analysis_local import ServingPort
from tests.support.tiny_models import make_tiny_bert
from tests.unit.test_core_analysis import minutes, rollout_done
from tests.unit.test_core_naming import make_update
from tests.unit.test_core_reconcile import NOW, SETTINGS, rolled_out

pytestmark = pytest.mark.slow


def promoted_update(root: Path) -> LocalUpdate:
    """Verifying since NOW, promoted tiny model vs previous tiny model, both in ``root``."""
    check = {"name": "user-agreement", "freshFeedback": {"minPairs": 50}, "min": "-1"}
    spec = {
        "telemetry": {"uri": f"file://{root}/telemetry"},
        "output": {"uri": f"file://{root}/runs"},
        "training": {"hyperparameters": {"maxLength": 64}},
        "promotion": {"analysis": {"duration": "3m", "interval": "1m", "checks": [check]}},
    }
    update, _ = rollout_done(make_update(spec))
    status = update.status
    assert status is not None
    assert status.candidate is not None
    candidate = status.candidate.model_copy(update={"model_uri": f"file://{root}/promoted"})
    status = status.model_copy(
        update={
            "candidate": candidate,
            "served_model": candidate.model_uri,
            "previous_model": f"file://{root}/previous",
        }
    )
    return LocalUpdate(update=update.model_copy(update={"status": status}), status=status)


def test_local_run_scores_fresh_feedback_with_both_models(tmp_path: Path) -> None:
    generate_telemetry(
        open_store(f"file://{tmp_path}/telemetry"),
        events=300,
        seed=5,
        start=NOW,
        end=minutes(1),
    )
    make_tiny_bert(tmp_path / "promoted", seed=1)
    make_tiny_bert(tmp_path / "previous", seed=2)
    item = promoted_update(tmp_path)
    serving = ServingPort(0, rolled_out(item.current()))
    serving.lock_holder = serving.state.lock_holder
    clock = [minutes(1.5)]

    def on_change(item: LocalUpdate, status: object, actions: list[Action]) -> None:
        pass

    jobs = LocalJobs(tmp_path / "logs", {"OMP_NUM_THREADS": "1"}, echo=False)
    driver = LocalDriver(
        jobs=jobs,
        deployments={"reward-scorer": cast(LocalDeployment, serving)},
        settings=SETTINGS,
        storage=StorageSettings(),
        on_change=on_change,
        clock=lambda: clock[0],
    )
    try:
        driver.step(item)
        state = item.status.analysis
        assert state is not None
        assert state.feedback is not None
        job, result_uri = state.feedback.job_name, state.feedback.result_uri
        assert job is not None
        assert result_uri is not None
        deadline = time.monotonic() + 180
        while item.status.analysis.feedback.job_name is not None:  # type: ignore[union-attr]
            assert time.monotonic() < deadline, (tmp_path / "logs" / f"{job}.log").read_text()
            time.sleep(0.5)
            driver.step(item)
    finally:
        jobs.stop_all()
    directory, name = result_uri.rsplit("/", 1)
    with open_store(directory).open_read(name) as stream:
        result = FeedbackEvaluation.model_validate_json(stream.read())
    assert result.evaluation_id == job
    assert (result.since, result.until) == (NOW, minutes(1.5))
    assert result.enough
    assert result.promoted is not None
    assert result.previous is not None
    [check] = item.status.analysis.checks  # type: ignore[union-attr]
    assert (check.passed, check.failed, check.inconclusive) == (1, 0, 0)
    delta = result.promoted.accuracy - result.previous.accuracy
    assert check.last_value == f"{delta:.4g}"
    assert f"agreement on {result.pairs_found} fresh pair(s)" in check.last_message
    clock[0] = minutes(3)
    driver.step(item)
    assert item.status.phase == Phase.SUCCEEDED
