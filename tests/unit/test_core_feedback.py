"""The fresh-feedback live check through the core: evaluation Jobs, their results, the verdict."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from rewardops_operator.api import conditions as cond
from rewardops_operator.api.models import AnalysisSpec, Phase, RewardModelUpdate
from rewardops_operator.core import analysis
from rewardops_operator.core.actions import CreateFeedbackJob, Decision, DeleteJob, SetServedModel
from rewardops_operator.core.feedback import GRACE
from rewardops_operator.core.naming import MAX_NAME, feedback_job_name
from rewardops_operator.core.observations import (
    FeedbackState,
    JobState,
    Observations,
    feedback_job_to_observe,
    feedback_to_read,
)
from rewardops_operator.core.reconcile import on_delete, reconcile
from rewardops_trainer.contract import FeedbackEvaluation
from tests.support.reports import metrics
from tests.unit.test_core_analysis import ERRORS, measure, rollout_done
from tests.unit.test_core_naming import make_update
from tests.unit.test_core_reconcile import (
    NOW,
    SERVED,
    SETTINGS,
    after,
    candidate_of,
    condition,
    message,
    phase,
    rolled_out,
)

FEEDBACK = {"name": "agreement", "freshFeedback": {"minPairs": 50}, "min": "-0.02"}


def with_feedback(*checks: dict[str, Any], **analysis_spec: Any) -> RewardModelUpdate:
    spec = {"duration": "3m", "interval": "1m", "checks": list(checks) or [FEEDBACK]}
    return make_update({"promotion": {"analysis": {**spec, **analysis_spec}}})


def minutes(n: float) -> datetime:
    return NOW + timedelta(minutes=n)


def look(
    update: RewardModelUpdate,
    at: datetime,
    job: JobState | None = None,
    result: FeedbackEvaluation | str | None = None,
) -> tuple[RewardModelUpdate, Decision]:
    """One reconcile at ``at``, observing the evaluation Job and its result as a driver does:
    the result only when feedback_to_read says it may be read."""
    name = feedback_job_to_observe(update)
    seen_job = job if job is not None and job.name == name else None
    feedback = None
    if feedback_to_read(update, seen_job) is not None and result is not None:
        feedback = FeedbackState(error=result) if isinstance(result, str) else FeedbackState(result)
    observed = Observations(
        now=at, deployment=rolled_out(update), feedback_job=seen_job, feedback=feedback
    )
    decision = reconcile(update, observed, SETTINGS)
    return after(update, decision), decision


def created(decision: Decision) -> list[CreateFeedbackJob]:
    return [a for a in decision.actions if isinstance(a, CreateFeedbackJob)]


def evaluation(
    name: str, promoted: float | None, previous: float | None, pairs: int = 120
) -> FeedbackEvaluation:
    enough = promoted is not None
    return FeedbackEvaluation(
        evaluation_id=name,
        created_at=NOW,
        since=NOW,
        until=NOW + timedelta(minutes=1),
        events_read=pairs * 3,
        events_rejected=0,
        events_without_consent=0,
        pairs_found=pairs,
        min_pairs=50,
        enough=enough,
        promoted=metrics(promoted) if promoted is not None else None,
        previous=metrics(previous) if previous is not None else None,
        input_digest="d" * 64,
    )


def first_job(update: RewardModelUpdate) -> tuple[RewardModelUpdate, CreateFeedbackJob]:
    update, decision = look(update, minutes(1))
    (action,) = created(decision)
    return update, action


def succeeded(action: CreateFeedbackJob) -> JobState:
    return JobState(name=action.name, succeeded=True)


def test_the_first_evaluation_starts_one_interval_after_the_rollout() -> None:
    update, decision = rollout_done(with_feedback())
    assert created(decision) == []
    update, decision = look(update, minutes(0.5))
    assert created(decision) == []
    update, action = first_job(update)
    config = action.config
    assert action.name == config.evaluation_id == feedback_job_name(update.status.run_id, 1)  # type: ignore[union-attr,arg-type]
    assert config.promoted_model_uri == candidate_of(update)
    assert config.previous_model_uri == SERVED
    assert (config.since, config.until) == (NOW, minutes(1))
    assert config.min_pairs == 50
    assert config.telemetry_uri == update.spec.telemetry.uri
    assert config.result_uri.endswith(f"/{update.status.run_id}/feedback/{action.name}.json")  # type: ignore[union-attr]
    # While it runs, no second Job; the driver is asked to look again at its poll interval.
    update, decision = look(update, minutes(1.5), JobState(action.name, active=1))
    assert created(decision) == []
    assert decision.requeue_after == SETTINGS.poll_seconds
    assert phase(decision) == Phase.VERIFYING


def test_promoted_model_users_agree_with_passes_and_no_more_jobs_run() -> None:
    update, action = first_job(rollout_done(with_feedback())[0])
    update, decision = look(
        update, minutes(1.2), succeeded(action), evaluation(action.name, 0.81, 0.80)
    )
    state = decision.status.analysis
    assert state is not None
    assert state.checks[0].passed == 1
    assert state.checks[0].last_value == "0.01"
    assert "promoted 0.8100 vs previous 0.8000 agreement on 120 fresh pair(s)" in (
        state.checks[0].last_message
    )
    assert state.feedback is not None
    assert (state.feedback.job_name, state.feedback.pairs_found) == (None, 120)
    for minute in (2, 2.5):
        update, decision = look(update, minutes(minute))
        assert created(decision) == []
    update, decision = look(update, minutes(3))
    assert phase(decision) == Phase.SUCCEEDED
    assert condition(decision, analysis.ANALYSIS_PASSED) == ("True", "AnalysisPassed")


def test_users_agreeing_less_with_the_promoted_model_roll_back() -> None:
    update, action = first_job(rollout_done(with_feedback())[0])
    update, decision = look(
        update, minutes(1.2), succeeded(action), evaluation(action.name, 0.70, 0.80)
    )
    assert phase(decision) == Phase.ROLLED_BACK
    restored = [a.model_uri for a in decision.actions if isinstance(a, SetServedModel)]
    assert restored == [SERVED]
    assert condition(decision, cond.ROLLED_BACK) == ("True", "AnalysisFailed")
    why = message(decision, cond.ROLLED_BACK)
    assert "agreement" in why
    assert "-0.1 below min -0.02" in why
    assert "promoted 0.7000 vs previous 0.8000" in why


def test_too_few_fresh_pairs_waits_without_counting_then_asks_again() -> None:
    update, action = first_job(rollout_done(with_feedback(inconclusiveLimit=0))[0])
    update, decision = look(
        update, minutes(1.2), succeeded(action), evaluation(action.name, None, None, pairs=12)
    )
    assert phase(decision) == Phase.VERIFYING  # inconclusiveLimit 0: a count would roll back
    check = decision.status.analysis.checks[0]  # type: ignore[union-attr]
    assert (check.passed, check.failed, check.inconclusive) == (0, 0, 0)
    assert "only 12 fresh pair(s)" in check.last_message
    assert "minPairs 50" in check.last_message
    assert "only 12 fresh pair(s)" in message(decision, analysis.ANALYSIS_PASSED)
    # The next evaluation waits one interval after the last one ended.
    update, decision = look(update, minutes(2))
    assert created(decision) == []
    update, decision = look(update, minutes(2.2))
    (second,) = created(decision)
    assert second.name.endswith("-fb2")
    assert second.config.until == minutes(2.2)
    update, decision = look(
        update, minutes(2.5), succeeded(second), evaluation(second.name, 0.9, 0.8)
    )
    assert decision.status.analysis.checks[0].passed == 1  # type: ignore[union-attr]


def test_never_enough_feedback_by_the_end_of_the_window_is_inconclusive() -> None:
    update, action = first_job(rollout_done(with_feedback())[0])
    update, _ = look(update, minutes(1.1), succeeded(action), evaluation(action.name, None, None))
    update, decision = look(update, minutes(2.1))
    (second,) = created(decision)
    update, _ = look(update, minutes(2.5), succeeded(second), evaluation(second.name, None, None))
    update, decision = look(update, minutes(3))
    assert created(decision) == []
    assert phase(decision) == Phase.ROLLED_BACK
    assert condition(decision, cond.ROLLED_BACK) == ("True", "AnalysisInconclusive")
    assert "no passing measurement of live check(s) agreement" in message(
        decision, cond.ROLLED_BACK
    )


def test_the_window_waits_for_an_evaluation_under_way() -> None:
    update, decision = rollout_done(with_feedback())
    update, decision = look(update, minutes(2.5))
    (action,) = created(decision)
    update, decision = look(update, minutes(3.5), JobState(action.name, active=1))
    assert phase(decision) == Phase.VERIFYING
    assert f"waiting for the fresh-feedback evaluation Job {action.name}" in message(
        decision, analysis.ANALYSIS_PASSED
    )
    update, decision = look(
        update, minutes(4), succeeded(action), evaluation(action.name, 0.8, 0.8)
    )
    assert phase(decision) == Phase.SUCCEEDED


def test_a_failed_evaluation_job_is_inconclusive_with_its_message() -> None:
    update, action = first_job(rollout_done(with_feedback(inconclusiveLimit=0))[0])
    failed = JobState(action.name, failed=True, exit_code=3, message="promoted model not found")
    update, decision = look(update, minutes(1.2), failed)
    assert phase(decision) == Phase.ROLLED_BACK
    assert condition(decision, cond.ROLLED_BACK) == ("True", "AnalysisInconclusive")
    why = message(decision, cond.ROLLED_BACK)
    assert f"evaluation Job {action.name} failed with exit code 3: promoted model not found" in why


def test_a_missing_result_waits_for_the_grace_then_is_inconclusive() -> None:
    update, action = first_job(rollout_done(with_feedback(inconclusiveLimit=0))[0])
    update, decision = look(update, minutes(1) + GRACE / 2, succeeded(action), "does not exist")
    assert phase(decision) == Phase.VERIFYING
    update, decision = look(
        update, minutes(1) + GRACE + timedelta(seconds=1), succeeded(action), "does not exist"
    )
    assert phase(decision) == Phase.ROLLED_BACK
    assert "does not exist" in message(decision, cond.ROLLED_BACK)


def test_a_reaped_job_with_its_result_counts() -> None:
    update, action = first_job(rollout_done(with_feedback())[0])
    update, decision = look(update, minutes(1.5), None, evaluation(action.name, 0.9, 0.8))
    assert decision.status.analysis.checks[0].passed == 1  # type: ignore[union-attr]


def test_a_result_of_another_evaluation_is_refused() -> None:
    update, action = first_job(rollout_done(with_feedback(inconclusiveLimit=0))[0])
    update, decision = look(update, minutes(1.2), succeeded(action), evaluation("other", 0.9, 0.8))
    assert phase(decision) == Phase.ROLLED_BACK
    assert "belongs to evaluation 'other'" in message(decision, cond.ROLLED_BACK)


def test_another_check_failing_stops_the_evaluation_under_way() -> None:
    update, _ = rollout_done(with_feedback(FEEDBACK, ERRORS))
    update, decision = measure(update, minutes(1), error_ratio=(0.001,))
    (action,) = created(decision)
    update, decision = measure(update, minutes(2), error_ratio=(0.5,))
    assert phase(decision) == Phase.ROLLED_BACK
    assert DeleteJob(action.name) in decision.actions
    assert decision.status.analysis.feedback.job_name is None  # type: ignore[union-attr]


def test_deleting_the_update_stops_the_evaluation_under_way() -> None:
    update, action = first_job(rollout_done(with_feedback())[0])
    observed = Observations(now=minutes(1.5), deployment=rolled_out(update))
    assert DeleteJob(action.name) in on_delete(update, observed)


def test_no_previous_model_is_inconclusive_without_a_job() -> None:
    update, _ = rollout_done(with_feedback(inconclusiveLimit=0))
    assert update.status is not None
    update = update.model_copy(
        update={"status": update.status.model_copy(update={"previous_model": None})}
    )
    deployment = rolled_out(update, previous_model=None)
    decision = reconcile(update, Observations(now=minutes(1), deployment=deployment), SETTINGS)
    assert created(decision) == []
    assert phase(decision) == Phase.FAILED  # inconclusive, and nothing to restore
    assert "needs a promoted and a previous model" in message(decision, cond.READY)


def test_an_analysis_allows_one_fresh_feedback_check() -> None:
    second = {**FEEDBACK, "name": "agreement-2"}
    with pytest.raises(ValidationError, match="at most one freshFeedback check"):
        AnalysisSpec.model_validate({"checks": [FEEDBACK, second]})
    with pytest.raises(ValidationError, match="maxPairs must be at least minPairs"):
        AnalysisSpec.model_validate(
            {"checks": [{**FEEDBACK, "freshFeedback": {"minPairs": 10, "maxPairs": 5}}]}
        )


@pytest.mark.parametrize("name", ["a", "x" * 50, "y" * 63])
def test_evaluation_job_names_fit_and_keep_the_run_digest(name: str) -> None:
    run = f"{name[: MAX_NAME - 15]}-g12-0123456789"
    job = feedback_job_name(run, 123)
    assert len(job) <= MAX_NAME
    assert job.endswith("-g12-0123456789-fb123")
    assert not job.startswith("-")
