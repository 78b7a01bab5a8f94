"""Every transition of the reconcile core, driven the way a driver would drive it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewardops_operator.api import conditions as cond
from rewardops_operator.api.models import HISTORY_LIMIT, Phase, RewardModelUpdate
from rewardops_operator.core.actions import (
    AcquireLock,
    Action,
    CreateJob,
    Decision,
    DeleteJob,
    EmitEvent,
    ReleaseLock,
    SetServedModel,
)
from rewardops_operator.core.naming import lock_holder
from rewardops_operator.core.observations import (
    DeploymentState,
    JobState,
    Observations,
    ReportState,
)
from rewardops_operator.core.reconcile import (
    APPROVE_ANNOTATION,
    JOB_GRACE,
    REPORT_GRACE,
    on_delete,
    reconcile,
)
from rewardops_operator.settings import OperatorSettings
from rewardops_trainer.contract import Report
from tests.support.reports import make_report, metrics
from tests.unit.test_core_naming import make_update

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SERVED = "s3://reward-models/runs/old/model"
SETTINGS = OperatorSettings(storage_endpoint="minio:9000", poll_seconds=30)
OTHER = "ml/other-update/uid-9"


def dep(**changes: Any) -> DeploymentState:
    base = DeploymentState(
        name="reward-scorer",
        generation=3,
        observed_generation=3,
        desired_replicas=2,
        updated_replicas=2,
        available_replicas=2,
        progress_deadline_exceeded=False,
        containers=("scorer", "sidecar"),
        model_uri=SERVED,
    )
    return replace(base, **changes)


def after(update: RewardModelUpdate, decision: Decision) -> RewardModelUpdate:
    """The update once the driver patched the decision's status."""
    return update.model_copy(update={"status": decision.status})


def kinds(decision: Decision) -> list[str]:
    return [type(action).__name__ for action in decision.actions]


def events(decision: Decision) -> list[tuple[str, str]]:
    return [(a.type, a.reason) for a in decision.actions if isinstance(a, EmitEvent)]


def condition(update_or_decision: RewardModelUpdate | Decision, type_: str) -> tuple[str, str]:
    status = update_or_decision.status
    assert status is not None
    found = cond.find(status.conditions, type_)
    assert found is not None, type_
    return found.status, found.reason


def message(decision: Decision, type_: str) -> str:
    found = cond.find(decision.status.conditions, type_)
    assert found is not None
    return found.message


def phase(decision: Decision) -> Phase:
    assert decision.status.phase is not None
    return Phase(decision.status.phase)


def started(update: RewardModelUpdate | None = None, now: datetime = NOW) -> RewardModelUpdate:
    """The update after its first reconcile created the Job."""
    update = update or make_update()
    decision = reconcile(update, Observations(now=now, deployment=dep()), SETTINGS)
    assert phase(decision) == Phase.TRAINING
    return after(update, decision)


def run_report(update: RewardModelUpdate, candidate: float = 0.74, **kw: Any) -> Report:
    assert update.status is not None
    assert update.status.run_id is not None
    return make_report(metrics(candidate), metrics(0.70), run_id=update.status.run_id, **kw)


def succeeded_job(update: RewardModelUpdate) -> JobState:
    assert update.status is not None
    assert update.status.job_name is not None
    return JobState(name=update.status.job_name, succeeded=True)


def trained(
    update: RewardModelUpdate, deployment: DeploymentState | None = None, now: datetime = NOW
) -> tuple[RewardModelUpdate, Decision]:
    """Reconcile a Training update whose Job succeeded with a good report."""
    seen = Observations(
        now=now,
        job=succeeded_job(update),
        report=ReportState(report=run_report(update)),
        deployment=deployment or dep(),
    )
    decision = reconcile(update, seen, SETTINGS)
    return after(update, decision), decision


def candidate_of(update: RewardModelUpdate) -> str:
    assert update.status is not None
    assert update.status.candidate is not None
    return update.status.candidate.model_uri


def promoting(update: RewardModelUpdate | None = None) -> RewardModelUpdate:
    """An update that holds the lock and whose SetServedModel has been decided."""
    locked, _ = trained(started(update))
    holder = lock_holder(locked)
    decision = reconcile(
        locked, Observations(now=NOW, deployment=dep(lock_holder=holder)), SETTINGS
    )
    assert phase(decision) == Phase.VERIFYING
    return after(locked, decision)


def rolled_out(update: RewardModelUpdate, **changes: Any) -> DeploymentState:
    """The Deployment after our SetServedModel, with rollout counters from ``changes``."""
    fields: dict[str, Any] = {
        "generation": 4,
        "observed_generation": 4,
        "model_uri": candidate_of(update),
        "lock_holder": lock_holder(update),
        "previous_model": SERVED,
    }
    fields.update(changes)
    return dep(**fields)


# --- start ------------------------------------------------------------------------------------


def test_first_reconcile_creates_the_job_and_records_the_run() -> None:
    update = make_update()
    decision = reconcile(update, Observations(now=NOW, deployment=dep()), SETTINGS)
    assert kinds(decision) == ["EmitEvent", "CreateJob"] or kinds(decision) == [
        "CreateJob",
        "EmitEvent",
    ]
    create = next(a for a in decision.actions if isinstance(a, CreateJob))
    status = decision.status
    assert status.phase == Phase.TRAINING
    assert status.run_id == create.name == status.job_name == create.run_config.run_id
    assert status.started_at == NOW
    assert status.observed_generation == 1
    assert status.served_model == SERVED
    assert status.report_uri == f"s3://reward-models/runs/{create.name}/report.json"
    assert create.run_config.base_model_uri == SERVED
    assert condition(decision, cond.TRAINED) == ("False", "JobCreated")
    assert condition(decision, cond.READY) == ("False", "Training")
    assert events(decision) == [("Normal", "JobCreated")]
    assert decision.requeue_after == SETTINGS.poll_seconds


@pytest.mark.parametrize(
    ("spec", "deployment", "reason", "text"),
    [
        ({}, None, "DeploymentNotFound", "spec.serving.deployment: Deployment 'reward-scorer'"),
        (
            {"serving": {"deployment": "reward-scorer", "container": "scorrer"}},
            dep(),
            "ContainerNotFound",
            "'scorrer' is not a container",
        ),
        ({}, dep(containers=()), "ContainerNotFound", "it has: )"),
        ({}, dep(model_uri=None), "InvalidSpec", "spec.training.baseModelUri is unset"),
        (
            {"training": {"pairs": {"validationFraction": "1"}}},
            dep(),
            "InvalidSpec",
            "spec.training.pairs.validationFraction",
        ),
    ],
)
def test_bad_config_fails_with_a_clear_condition_and_no_job(
    spec: dict[str, Any], deployment: DeploymentState | None, reason: str, text: str
) -> None:
    update = make_update(spec)
    decision = reconcile(update, Observations(now=NOW, deployment=deployment), SETTINGS)
    assert phase(decision) == Phase.FAILED
    assert kinds(decision) == ["EmitEvent"]
    assert events(decision) == [("Warning", reason)]
    assert condition(decision, cond.TRAINED) == ("False", reason)
    assert condition(decision, cond.READY) == ("False", reason)
    assert text in message(decision, cond.TRAINED)
    assert decision.status.job_name is None
    assert [h.reason for h in decision.status.history] == [reason]
    # The same generation again: nothing, not even a second event.
    again = reconcile(after(update, decision), Observations(now=NOW, deployment=dep()), SETTINGS)
    assert again.actions == []
    assert again.status == decision.status


# --- training -----------------------------------------------------------------------------


def test_running_job_is_not_created_twice_and_events_are_not_repeated() -> None:
    update = started()
    assert update.status is not None
    assert update.status.job_name is not None
    seen = Observations(
        now=NOW + timedelta(seconds=10),
        job=JobState(name=update.status.job_name, active=1),
        deployment=dep(),
    )
    decision = reconcile(update, seen, SETTINGS)
    assert decision.actions == []
    assert phase(decision) == Phase.TRAINING
    assert condition(decision, cond.TRAINED) == ("False", "JobRunning")
    assert "1 active pod" in message(decision, cond.READY)
    assert decision.requeue_after == SETTINGS.poll_seconds
    assert reconcile(after(update, decision), seen, SETTINGS).actions == []


def test_suspended_job_waits_on_its_queue() -> None:
    update = started(make_update({"training": {"queueName": "gpu-training"}}))
    assert update.status is not None
    assert update.status.job_name is not None
    seen = Observations(
        now=NOW, job=JobState(name=update.status.job_name, suspended=True), deployment=dep()
    )
    decision = reconcile(update, seen, SETTINGS)
    assert condition(decision, cond.TRAINED) == ("False", "JobSuspended")
    assert "Kueue queue 'gpu-training'" in message(decision, cond.TRAINED)
    plain = started()
    assert plain.status is not None
    assert plain.status.job_name is not None
    seen = Observations(now=NOW, job=JobState(name=plain.status.job_name, suspended=True))
    assert "the Job's suspension" in message(reconcile(plain, seen, SETTINGS), cond.TRAINED)


def test_job_not_visible_yet_waits_then_is_lost() -> None:
    update = started()
    soon = reconcile(
        update, Observations(now=NOW + timedelta(seconds=5), deployment=dep()), SETTINGS
    )
    assert soon.actions == []
    assert phase(soon) == Phase.TRAINING
    assert soon.requeue_after is not None
    assert soon.requeue_after < SETTINGS.poll_seconds
    # A Job of another name (an older run) does not count as ours.
    stray = Observations(now=NOW + JOB_GRACE, job=JobState(name="other", active=1))
    lost = reconcile(update, stray, SETTINGS)
    assert phase(lost) == Phase.FAILED
    assert condition(lost, cond.TRAINED) == ("False", "JobLost")
    assert events(lost) == [("Warning", "JobLost")]


def test_reaped_job_with_a_report_goes_on_to_evaluation() -> None:
    update = started()
    seen = Observations(
        now=NOW + timedelta(days=2),
        report=ReportState(report=run_report(update)),
        deployment=dep(),
    )
    decision = reconcile(update, seen, SETTINGS)
    assert condition(decision, cond.TRAINED) == ("True", "JobSucceeded")
    assert condition(decision, cond.GATES_PASSED) == ("True", "GatesPassed")
    assert phase(decision) == Phase.PROMOTING


@pytest.mark.parametrize(
    ("exit_code", "job_message", "expected"),
    [
        (3, "error: too few pairs (12 < 100)", "exit code 3 (bad config or data: not retried)"),
        (1, "", "with exit code 1"),
        (None, "BackoffLimitExceeded: Job has reached the specified backoff limit", "Backoff"),
    ],
)
def test_failed_job_fails_the_update_with_the_trainers_message(
    exit_code: int | None, job_message: str, expected: str
) -> None:
    update = started()
    assert update.status is not None
    assert update.status.job_name is not None
    job = JobState(
        name=update.status.job_name, failed=True, message=job_message, exit_code=exit_code
    )
    decision = reconcile(update, Observations(now=NOW, job=job, deployment=dep()), SETTINGS)
    assert phase(decision) == Phase.FAILED
    text = message(decision, cond.TRAINED)
    assert expected in text
    assert job_message in text
    assert condition(decision, cond.READY) == ("False", "JobFailed")
    assert events(decision) == [("Warning", "JobFailed")]
    assert not any(isinstance(a, (SetServedModel, DeleteJob)) for a in decision.actions)
    assert decision.status.finished_at == NOW
    assert decision.requeue_after is None


# --- evaluating ---------------------------------------------------------------------------


def test_succeeded_job_waits_for_its_report_then_fails_without_one() -> None:
    update = started()
    job = succeeded_job(update)
    first = reconcile(
        update, Observations(now=NOW, job=job, report=None, deployment=dep()), SETTINGS
    )
    assert phase(first) == Phase.EVALUATING
    assert condition(first, cond.TRAINED) == ("True", "JobSucceeded")
    assert condition(first, cond.GATES_PASSED) == ("False", "WaitingForReport")
    assert events(first) == [("Normal", "JobSucceeded")]
    waiting = after(update, first)
    missing = ReportState(error="s3://x/report.json does not exist")
    second = reconcile(
        waiting, Observations(now=NOW + timedelta(seconds=30), job=job, report=missing), SETTINGS
    )
    assert phase(second) == Phase.EVALUATING
    assert "does not exist" in message(second, cond.GATES_PASSED)
    assert events(second) == []
    late = reconcile(
        waiting, Observations(now=NOW + REPORT_GRACE, job=job, report=missing), SETTINGS
    )
    assert phase(late) == Phase.FAILED
    assert condition(late, cond.GATES_PASSED) == ("False", "ReportUnreadable")
    assert message(late, cond.GATES_PASSED) == "s3://x/report.json does not exist"
    silent = reconcile(waiting, Observations(now=NOW + REPORT_GRACE, job=job), SETTINGS)
    assert "was not found" in message(silent, cond.GATES_PASSED)


def test_report_of_another_run_is_refused() -> None:
    update = started()
    foreign = make_report(metrics(0.9), metrics(0.7), run_id="someone-else")
    seen = Observations(
        now=NOW, job=succeeded_job(update), report=ReportState(report=foreign), deployment=dep()
    )
    decision = reconcile(update, seen, SETTINGS)
    assert phase(decision) == Phase.FAILED
    assert condition(decision, cond.GATES_PASSED) == ("False", "ReportMismatch")


def test_failing_gate_rejects_and_never_touches_the_deployment() -> None:
    update = started()
    seen = Observations(
        now=NOW,
        job=succeeded_job(update),
        report=ReportState(report=run_report(update, candidate=0.55)),
        deployment=dep(),
    )
    decision = reconcile(update, seen, SETTINGS)
    assert phase(decision) == Phase.REJECTED
    assert not any(
        isinstance(a, (SetServedModel, AcquireLock, ReleaseLock)) for a in decision.actions
    )
    assert condition(decision, cond.GATES_PASSED) == ("False", "GatesFailed")
    assert "minHeldOutAccuracy" in message(decision, cond.GATES_PASSED)
    assert "maxHeldOutRegression" in message(decision, cond.GATES_PASSED)
    assert ("Warning", "GatesFailed") in events(decision)
    status = decision.status
    assert status.candidate is not None
    assert status.baseline is not None
    assert (status.candidate.held_out_accuracy, status.baseline.held_out_accuracy) == (
        "0.5500",
        "0.7000",
    )
    assert status.data is not None
    assert status.data.events_rejected == 3
    assert [g.passed for g in status.gates if g.name == "minHeldOutAccuracy"] == [False]
    assert status.history[-1].phase == Phase.REJECTED
    assert status.history[-1].candidate_accuracy == "0.5500"
    # Re-applying the same resource after the verdict does nothing.
    again = reconcile(after(update, decision), seen, SETTINGS)
    assert again.actions == []


def test_passing_gates_record_numbers_and_take_the_lock() -> None:
    update, decision = trained(started())
    assert phase(decision) == Phase.PROMOTING
    assert condition(decision, cond.GATES_PASSED) == ("True", "GatesPassed")
    assert "vs served 0.7000" in message(decision, cond.GATES_PASSED)
    assert condition(decision, cond.APPROVED) == ("True", "Automatic")
    assert condition(decision, cond.PROMOTED) == ("False", "AcquiringLock")
    assert AcquireLock("reward-scorer", lock_holder(update)) in decision.actions
    assert not any(isinstance(a, SetServedModel) for a in decision.actions)
    status = decision.status
    assert status.candidate is not None
    assert status.candidate.latency_ms_per_pair == "2.000"
    assert status.candidate.golden_accuracy is None


def test_no_baseline_reports_only_the_candidate() -> None:
    update = started(make_update({"training": {"baseModelUri": "s3://base/v1"}}))
    assert update.status is not None
    assert update.status.run_id is not None
    report = make_report(metrics(0.7), run_id=update.status.run_id, candidate_golden=metrics(0.8))
    seen = Observations(
        now=NOW,
        job=succeeded_job(update),
        report=ReportState(report=report),
        deployment=dep(model_uri=None),
    )
    decision = reconcile(update, seen, SETTINGS)
    assert decision.status.baseline is None
    assert decision.status.candidate is not None
    assert decision.status.candidate.golden_accuracy == "0.8000"
    assert message(decision, cond.GATES_PASSED).endswith("held-out accuracy 0.7000")


# --- approval -----------------------------------------------------------------------------


def manual(**promotion: Any) -> RewardModelUpdate:
    return make_update({"promotion": {"mode": "Manual", **promotion}})


def test_manual_mode_waits_for_approval_without_polling() -> None:
    update, decision = trained(started(manual()))
    assert phase(decision) == Phase.AWAITING_APPROVAL
    assert condition(decision, cond.APPROVED) == ("False", "AwaitingApproval")
    assert "spec.promotion.approved: true" in message(decision, cond.APPROVED)
    assert ("Normal", "AwaitingApproval") in events(decision)
    assert decision.requeue_after is None
    assert not any(isinstance(a, AcquireLock) for a in decision.actions)
    again = reconcile(update, Observations(now=NOW, deployment=dep()), SETTINGS)
    assert again.actions == []


def test_approval_in_spec_continues_the_same_run() -> None:
    waiting, _ = trained(started(manual()))
    assert waiting.status is not None
    approved = make_update(
        {"promotion": {"mode": "Manual", "approved": True}},
        generation=2,
        status=waiting.status.model_dump(mode="json", by_alias=True),
    )
    decision = reconcile(approved, Observations(now=NOW, deployment=dep()), SETTINGS)
    assert decision.status.run_id == waiting.status.run_id
    assert decision.status.observed_generation == 2
    assert condition(decision, cond.APPROVED) == ("True", "ApprovedInSpec")
    assert ("Normal", "ApprovedInSpec") in events(decision)
    assert phase(decision) == Phase.PROMOTING
    assert not any(isinstance(a, CreateJob) for a in decision.actions)


def test_approval_by_annotation() -> None:
    waiting, _ = trained(started(manual()))
    assert waiting.status is not None
    annotated = make_update(
        {"promotion": {"mode": "Manual"}},
        annotations={APPROVE_ANNOTATION: "true"},
        status=waiting.status.model_dump(mode="json", by_alias=True),
    )
    decision = reconcile(annotated, Observations(now=NOW, deployment=dep()), SETTINGS)
    assert condition(decision, cond.APPROVED) == ("True", "ApprovedByAnnotation")
    assert phase(decision) == Phase.PROMOTING


# --- promotion ----------------------------------------------------------------------------


def test_lock_held_by_another_update_waits_with_a_condition() -> None:
    locked, _ = trained(started())
    seen = Observations(now=NOW, deployment=dep(lock_holder=OTHER))
    decision = reconcile(locked, seen, SETTINGS)
    assert phase(decision) == Phase.PROMOTING
    assert condition(decision, cond.PROMOTED) == ("False", "WaitingForLock")
    assert OTHER in message(decision, cond.PROMOTED)
    assert events(decision) == [("Normal", "WaitingForLock")]
    assert decision.requeue_after == SETTINGS.poll_seconds
    assert not any(isinstance(a, (SetServedModel, AcquireLock)) for a in decision.actions)
    # Still waiting: no second event.
    assert reconcile(after(locked, decision), seen, SETTINGS).actions == []


def test_holding_the_lock_sets_the_served_model_once() -> None:
    locked, _ = trained(started())
    holder = lock_holder(locked)
    decision = reconcile(
        locked, Observations(now=NOW, deployment=dep(lock_holder=holder)), SETTINGS
    )
    candidate = candidate_of(locked)
    assert locked.status is not None
    assert decision.actions[0] == SetServedModel(
        deployment="reward-scorer",
        container="scorer",
        env="REWARD_MODEL_URI",
        model_uri=candidate,
        model_version=locked.status.run_id or "",
        previous_model_uri=SERVED,
    )
    assert phase(decision) == Phase.VERIFYING
    assert (decision.status.previous_model, decision.status.served_model) == (SERVED, candidate)
    assert decision.status.promoted_at == NOW
    assert condition(decision, cond.PROMOTED) == ("False", "RollingOut")
    assert events(decision) == [("Normal", "RollingOut")]


def test_restart_after_the_patch_goes_to_verifying_without_a_second_promotion() -> None:
    locked, _ = trained(started())
    # The operator died after SetServedModel, before the status said so.
    restarted = rolled_out(locked, observed_generation=3)
    decision = reconcile(locked, Observations(now=NOW, deployment=restarted), SETTINGS)
    assert not any(isinstance(a, SetServedModel) for a in decision.actions)
    assert phase(decision) == Phase.VERIFYING
    assert decision.status.previous_model == SERVED  # recovered from the Deployment
    assert decision.status.promoted_at == NOW


def test_promoting_into_a_vanished_deployment_or_container_fails() -> None:
    named = make_update({"serving": {"deployment": "reward-scorer", "container": "scorer"}})
    locked, _ = trained(started(named))
    gone = reconcile(locked, Observations(now=NOW), SETTINGS)
    assert phase(gone) == Phase.FAILED
    assert condition(gone, cond.PROMOTED) == ("False", "DeploymentNotFound")
    holder = lock_holder(locked)
    renamed = dep(containers=("server",), lock_holder=holder)
    missing = reconcile(locked, Observations(now=NOW, deployment=renamed), SETTINGS)
    assert phase(missing) == Phase.FAILED
    assert condition(missing, cond.PROMOTED) == ("False", "ContainerNotFound")
    assert ReleaseLock("reward-scorer", holder) in missing.actions


# --- verification and rollback --------------------------------------------------------------


def test_rollout_completes_for_the_new_generation() -> None:
    update = promoting()
    later = NOW + timedelta(seconds=40)
    pending = rolled_out(update, observed_generation=3)  # controller has not seen it yet
    waiting = reconcile(update, Observations(now=later, deployment=pending), SETTINGS)
    assert phase(waiting) == Phase.VERIFYING
    assert waiting.actions == []
    halfway = rolled_out(update, updated_replicas=1, available_replicas=1)
    waiting = reconcile(update, Observations(now=later, deployment=halfway), SETTINGS)
    assert "1/2 updated, 1/2 available" in message(waiting, cond.PROMOTED)
    assert waiting.requeue_after == SETTINGS.poll_seconds
    done = reconcile(update, Observations(now=later, deployment=rolled_out(update)), SETTINGS)
    assert phase(done) == Phase.SUCCEEDED
    assert condition(done, cond.PROMOTED) == ("True", "RolloutComplete")
    assert condition(done, cond.READY) == ("True", "Succeeded")
    assert ReleaseLock("reward-scorer", lock_holder(update)) in done.actions
    assert ("Normal", "Succeeded") in events(done)
    assert done.status.finished_at == later
    entry = done.status.history[-1]
    assert (entry.phase, entry.model_uri, entry.generation) == (
        Phase.SUCCEEDED,
        candidate_of(update),
        1,
    )
    assert done.requeue_after is None


def test_stale_or_overwritten_model_waits_and_says_so() -> None:
    update = promoting()
    stale = dep(lock_holder=lock_holder(update))  # still shows the old model
    decision = reconcile(update, Observations(now=NOW, deployment=stale), SETTINGS)
    assert phase(decision) == Phase.VERIFYING
    assert "not " + candidate_of(update) in message(decision, cond.PROMOTED)
    assert decision.actions == []


def test_progress_deadline_exceeded_rolls_back_to_the_previous_model() -> None:
    update = promoting()
    stalled = rolled_out(
        update, updated_replicas=1, available_replicas=0, progress_deadline_exceeded=True
    )
    decision = reconcile(update, Observations(now=NOW, deployment=stalled), SETTINGS)
    holder = lock_holder(update)
    assert decision.actions[:2] == [
        SetServedModel(
            deployment="reward-scorer",
            container="scorer",
            env="REWARD_MODEL_URI",
            model_uri=SERVED,
            model_version="old",
            previous_model_uri=candidate_of(update),
        ),
        ReleaseLock("reward-scorer", holder),
    ]
    assert phase(decision) == Phase.ROLLED_BACK
    assert condition(decision, cond.ROLLED_BACK) == ("True", "ProgressDeadlineExceeded")
    assert condition(decision, cond.PROMOTED) == ("False", "RolledBack")
    assert ("Warning", "ProgressDeadlineExceeded") in events(decision)
    assert decision.status.served_model == SERVED
    assert "restored " + SERVED in message(decision, cond.ROLLED_BACK)


def test_a_stale_progress_deadline_from_the_old_generation_is_ignored() -> None:
    update = promoting()
    old_stall = rolled_out(update, observed_generation=3, progress_deadline_exceeded=True)
    decision = reconcile(update, Observations(now=NOW, deployment=old_stall), SETTINGS)
    assert phase(decision) == Phase.VERIFYING


def test_our_own_rollout_deadline_rolls_back() -> None:
    update = promoting()
    slow = rolled_out(update, available_replicas=1)
    almost = NOW + timedelta(seconds=590)
    waiting = reconcile(update, Observations(now=almost, deployment=slow), SETTINGS)
    assert phase(waiting) == Phase.VERIFYING
    assert waiting.requeue_after == pytest.approx(10.0)
    late = NOW + timedelta(seconds=600)
    decision = reconcile(update, Observations(now=late, deployment=slow), SETTINGS)
    assert phase(decision) == Phase.ROLLED_BACK
    assert condition(decision, cond.ROLLED_BACK) == ("True", "RolloutDeadlineExceeded")
    assert "rolloutDeadlineSeconds=600" in message(decision, cond.ROLLED_BACK)


def test_rollback_without_a_previous_model_fails_and_says_so() -> None:
    base = make_update({"training": {"baseModelUri": "s3://base/v1"}})
    first = reconcile(base, Observations(now=NOW, deployment=dep(model_uri=None)), SETTINGS)
    update = after(base, first)
    update, _ = trained(update, deployment=dep(model_uri=None))
    holder = lock_holder(update)
    locked = dep(model_uri=None, lock_holder=holder)
    update = after(update, reconcile(update, Observations(now=NOW, deployment=locked), SETTINGS))
    stalled = rolled_out(
        update,
        available_replicas=0,
        progress_deadline_exceeded=True,
        previous_model=None,
    )
    decision = reconcile(update, Observations(now=NOW, deployment=stalled), SETTINGS)
    assert phase(decision) == Phase.FAILED
    assert condition(decision, cond.ROLLED_BACK) == ("False", "NothingToRestore")
    assert not any(isinstance(a, SetServedModel) for a in decision.actions)
    assert ReleaseLock("reward-scorer", holder) in decision.actions


def test_deployment_gone_during_rollout_fails() -> None:
    decision = reconcile(promoting(), Observations(now=NOW), SETTINGS)
    assert phase(decision) == Phase.FAILED
    assert condition(decision, cond.PROMOTED) == ("False", "DeploymentNotFound")


# --- finished runs, new generations, deletion -------------------------------------------------


def test_finished_run_only_frees_a_lock_left_behind() -> None:
    update = promoting()
    done = after(
        update, reconcile(update, Observations(now=NOW, deployment=rolled_out(update)), SETTINGS)
    )
    quiet = reconcile(
        done, Observations(now=NOW, deployment=rolled_out(done, lock_holder=None)), SETTINGS
    )
    assert quiet.actions == []
    assert quiet.requeue_after is None
    leftover = reconcile(done, Observations(now=NOW, deployment=rolled_out(done)), SETTINGS)
    assert leftover.actions == [ReleaseLock("reward-scorer", lock_holder(done))]


def test_new_generation_after_a_finished_run_starts_a_new_run() -> None:
    update = promoting()
    done = after(
        update, reconcile(update, Observations(now=NOW, deployment=rolled_out(update)), SETTINGS)
    )
    assert done.status is not None
    changed = make_update(
        {"training": {"hyperparameters": {"epochs": 2}}},
        generation=2,
        status=done.status.model_dump(mode="json", by_alias=True),
    )
    decision = reconcile(changed, Observations(now=NOW, deployment=dep()), SETTINGS)
    assert decision.status.run_id != done.status.run_id
    assert decision.status.run_id is not None
    assert "-g2-" in decision.status.run_id
    assert kinds(decision).count("CreateJob") == 1
    assert decision.status.candidate is None
    assert cond.find(decision.status.conditions, cond.PROMOTED) is None
    assert [h.phase for h in decision.status.history] == [Phase.SUCCEEDED]


def test_spec_change_mid_training_replaces_the_job() -> None:
    update = started()
    assert update.status is not None
    old_job = update.status.job_name
    changed = make_update(
        {"training": {"hyperparameters": {"epochs": 3}}},
        generation=2,
        status=update.status.model_dump(mode="json", by_alias=True),
    )
    decision = reconcile(changed, Observations(now=NOW, deployment=dep()), SETTINGS)
    assert decision.actions[0] == DeleteJob(old_job or "")
    assert ("Normal", "Superseded") in events(decision)
    create = next(a for a in decision.actions if isinstance(a, CreateJob))
    assert create.name != old_job
    assert [(h.run_id, h.reason, h.phase) for h in decision.status.history] == [
        (old_job, "Superseded", Phase.TRAINING)
    ]


def test_spec_change_while_waiting_for_the_lock_releases_it() -> None:
    locked, _ = trained(started())
    assert locked.status is not None
    changed = make_update(
        {"training": {"hyperparameters": {"epochs": 3}}},
        generation=2,
        status=locked.status.model_dump(mode="json", by_alias=True),
    )
    decision = reconcile(changed, Observations(now=NOW, deployment=dep()), SETTINGS)
    assert ReleaseLock("reward-scorer", lock_holder(changed)) in decision.actions
    assert not any(isinstance(a, DeleteJob) for a in decision.actions)
    assert phase(decision) == Phase.TRAINING


def test_spec_change_mid_rollout_verifies_the_rollout_first() -> None:
    update = promoting()
    assert update.status is not None
    changed = make_update(
        {"training": {"hyperparameters": {"epochs": 3}}},
        generation=2,
        status=update.status.model_dump(mode="json", by_alias=True),
    )
    decision = reconcile(changed, Observations(now=NOW, deployment=rolled_out(update)), SETTINGS)
    assert phase(decision) == Phase.SUCCEEDED
    assert decision.status.run_id == update.status.run_id
    assert not any(isinstance(a, CreateJob) for a in decision.actions)
    following = reconcile(
        after(changed, decision), Observations(now=NOW, deployment=dep()), SETTINGS
    )
    assert kinds(following).count("CreateJob") == 1


def test_status_stuck_in_pending_for_its_run_starts_it() -> None:
    update = make_update()
    seed = reconcile(update, Observations(now=NOW, deployment=dep()), SETTINGS)
    pending = make_update(status={"runId": seed.status.run_id, "phase": "Pending"})
    decision = reconcile(pending, Observations(now=NOW, deployment=dep()), SETTINGS)
    assert kinds(decision).count("CreateJob") == 1
    assert decision.status.run_id == seed.status.run_id


def test_history_is_bounded() -> None:
    update = started()
    assert update.status is not None
    entries = [
        {
            "runId": f"r{i}",
            "generation": 1,
            "phase": "Rejected",
            "reason": "GatesFailed",
            "finishedAt": "2026-11-01T00:00:00Z",
        }
        for i in range(HISTORY_LIMIT)
    ]
    full = make_update(
        status={**update.status.model_dump(mode="json", by_alias=True), "history": entries}
    )
    job = JobState(name=update.status.job_name or "", failed=True)
    decision = reconcile(full, Observations(now=NOW, job=job, deployment=dep()), SETTINGS)
    history = decision.status.history
    assert len(history) == HISTORY_LIMIT
    assert history[0].run_id == "r1"
    assert history[-1].phase == Phase.FAILED


@pytest.mark.parametrize("stage", ["AwaitingApproval", "Promoting", "Verifying"])
def test_status_without_its_candidate_fails_instead_of_guessing(stage: str) -> None:
    update = started()
    assert update.status is not None
    broken = make_update(
        status={**update.status.model_dump(mode="json", by_alias=True), "phase": stage}
    )
    decision = reconcile(broken, Observations(now=NOW, deployment=dep()), SETTINGS)
    assert phase(decision) == Phase.FAILED
    assert condition(decision, cond.READY) == ("False", "StatusInconsistent")
    assert not any(isinstance(a, (SetServedModel, AcquireLock)) for a in decision.actions)


def test_on_delete_stops_the_job_and_frees_only_our_lock() -> None:
    update = started()
    assert update.status is not None
    assert update.status.job_name is not None
    holder = lock_holder(update)
    running = JobState(name=update.status.job_name, active=1)
    actions = on_delete(
        update, Observations(now=NOW, job=running, deployment=dep(lock_holder=holder))
    )
    assert actions == [DeleteJob(update.status.job_name), ReleaseLock("reward-scorer", holder)]
    theirs = on_delete(update, Observations(now=NOW, deployment=dep(lock_holder=OTHER)))
    assert theirs == [DeleteJob(update.status.job_name)]
    done = promoting()
    assert on_delete(done, Observations(now=NOW, job=succeeded_job(done), deployment=dep())) == []
    assert on_delete(make_update(), Observations(now=NOW)) == []


# --- the whole lifecycle against a simulated world, with lost status patches -------------------


@dataclass
class World:
    """A Deployment controller and a Job controller, just enough to drive the core."""

    deployment: DeploymentState = field(default_factory=dep)
    job: JobState | None = None
    created: list[str] = field(default_factory=list)
    promotions: list[str] = field(default_factory=list)

    def apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, CreateJob):
                self.created.append(action.name)
                if self.job is None:
                    self.job = JobState(name=action.name, active=1)
            elif isinstance(action, SetServedModel):
                self.promotions.append(action.model_uri)
                self.deployment = replace(
                    self.deployment,
                    model_uri=action.model_uri,
                    previous_model=action.previous_model_uri,
                    generation=self.deployment.generation + 1,
                )
            elif isinstance(action, AcquireLock) and self.deployment.lock_holder is None:
                self.deployment = replace(self.deployment, lock_holder=action.holder)
            elif isinstance(action, ReleaseLock) and self.deployment.lock_holder == action.holder:
                self.deployment = replace(self.deployment, lock_holder=None)

    def progress(self, report: Report | None) -> Observations:
        """Controllers catch up: the Job finishes, the rollout completes."""
        if self.job is not None:
            self.job = replace(self.job, active=0, succeeded=True)
        self.deployment = replace(self.deployment, observed_generation=self.deployment.generation)
        return Observations(
            now=NOW,
            job=self.job,
            report=ReportState(report=report) if report and self.job else None,
            deployment=self.deployment,
        )


@settings(max_examples=60, deadline=None)
@given(plan=st.lists(st.tuples(st.integers(1, 3), st.booleans()), min_size=12, max_size=12))
def test_lifecycle_is_idempotent_and_restart_safe(plan: list[tuple[int, bool]]) -> None:
    """Reconcile each world state 1-3 times; some status patches are lost (an operator crash
    between acting and patching). One Job name, one promotion, and it ends Succeeded."""
    world = World()
    update = make_update()
    report: Report | None = None
    for repeats, lose_patch in plan:
        for _ in range(repeats):
            seen = world.progress(report)
            decision = reconcile(update, seen, SETTINGS)
            world.apply(decision.actions)
            if not lose_patch:
                update = after(update, decision)
            if report is None and world.job is not None:
                report = make_report(metrics(0.75), metrics(0.70), run_id=world.job.name)
    for _ in range(8):  # let it settle with every patch kept
        decision = reconcile(update, world.progress(report), SETTINGS)
        world.apply(decision.actions)
        update = after(update, decision)
    assert update.status is not None
    assert update.status.phase == Phase.SUCCEEDED
    assert len(set(world.created)) == 1
    assert world.promotions == [candidate_of(update)]
    assert world.deployment.lock_holder is None
    assert [h.phase for h in update.status.history] == [Phase.SUCCEEDED]
