"""The fresh-feedback live check: evaluation Jobs that ask whether users agree with the
promoted model as much as with the previous one. Pure, like the rest of the core.

One evaluation Job at a time. Each interval (the first one after the rollout completed) a Job
scores the feedback that arrived since the rollout with both models. Its result is one
measurement of the check, the value being promoted minus previous pairwise accuracy; a result
with too few fresh pairs is no measurement at all (the check waits, and asks again an interval
later). Once the check has passed, no more Jobs run. A failed Job, or a result that cannot be
read, is an inconclusive measurement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rewardops_operator.api.models import (
    AnalysisCheck,
    AnalysisPhase,
    AnalysisSpec,
    AnalysisStatus,
    FeedbackEvaluationStatus,
    RewardModelUpdate,
)
from rewardops_operator.api.types import parse_duration
from rewardops_operator.core import analysis
from rewardops_operator.core.actions import Action, CreateFeedbackJob, DeleteJob
from rewardops_operator.core.naming import feedback_job_name
from rewardops_operator.core.observations import CheckMeasurement, Observations
from rewardops_operator.core.run_config import SpecError, build_feedback_config
from rewardops_operator.settings import OperatorSettings
from rewardops_trainer.storage import join_uri

#: A Job just created may not be visible yet, and its result may lag its success.
GRACE = timedelta(minutes=2)
#: Where a run keeps its evaluation results: <outputUri>/<runId>/feedback/<job>.json.
RESULTS_PREFIX = "feedback"


@dataclass
class Step:
    """What one reconcile did about the fresh-feedback check."""

    status: AnalysisStatus
    actions: list[Action] = field(default_factory=list)
    #: An evaluation Job is under way: look again at the operator's poll interval.
    waiting: bool = False


def next_due(spec: AnalysisSpec, status: AnalysisStatus) -> datetime:
    feedback = status.feedback
    last = feedback.finished_at if feedback is not None else None
    return (last or status.started_at) + parse_duration(spec.interval)


def step(
    update: RewardModelUpdate,
    spec: AnalysisSpec,
    status: AnalysisStatus,
    observed: Observations,
    settings: OperatorSettings,
) -> Step:
    check = analysis.feedback_check(spec)
    if check is None:
        return Step(status)
    feedback = status.feedback or FeedbackEvaluationStatus()
    if feedback.job_name is not None:
        return _follow(spec, status, check, feedback, observed)
    if analysis.has_passed(status, check) or status.phase != AnalysisPhase.RUNNING:
        return Step(status)
    if not next_due(spec, status) <= observed.now < analysis.end(spec, status):
        return Step(status)  # not due yet, or the window is over: start nothing new
    return _start(
        update, spec, status, check, feedback=feedback, now=observed.now, settings=settings
    )


def _start(
    update: RewardModelUpdate,
    spec: AnalysisSpec,
    status: AnalysisStatus,
    check: AnalysisCheck,
    *,
    feedback: FeedbackEvaluationStatus,
    now: datetime,
    settings: OperatorSettings,
) -> Step:
    assert check.fresh_feedback is not None  # feedback_check picks only such checks
    run = update.status.run_id if update.status is not None else None
    assert run is not None  # an analysis runs only for a promoted run
    attempt = feedback.attempts + 1
    name = feedback_job_name(run, attempt)
    result_uri = join_uri(update.spec.output.uri, run, RESULTS_PREFIX, f"{name}.json")
    try:
        config = build_feedback_config(
            update,
            check.fresh_feedback,
            evaluation_id=name,
            since=status.started_at,
            until=now,
            result_uri=result_uri,
            settings=settings,
        )
    except SpecError as error:
        # Nothing to compare with (no previous model) or a config the trainer refuses.
        finished = feedback.model_copy(update={"finished_at": now})
        measured = CheckMeasurement(check.name, error=str(error))
        status = analysis.record_one(spec, status, check, measured)
        return Step(status.model_copy(update={"feedback": finished}))
    started = feedback.model_copy(
        update={
            "attempts": attempt,
            "job_name": name,
            "result_uri": result_uri,
            "started_at": now,
        }
    )
    message = (
        f"evaluation Job {name} scores the feedback since {status.started_at.isoformat()} "
        "with the promoted and the previous model"
    )
    status = analysis.note(spec, status, check, message)
    return Step(
        status.model_copy(update={"feedback": started}),
        [CreateFeedbackJob(name, config)],
        waiting=True,
    )


def _follow(
    spec: AnalysisSpec,
    status: AnalysisStatus,
    check: AnalysisCheck,
    feedback: FeedbackEvaluationStatus,
    observed: Observations,
) -> Step:
    name = feedback.job_name
    job = observed.feedback_job
    if job is not None and job.name != name:
        job = None
    if job is not None and not (job.succeeded or job.failed):
        return Step(status, waiting=True)  # running, or queued
    now = observed.now
    result = observed.feedback.result if observed.feedback is not None else None
    done = feedback.model_copy(update={"job_name": None, "finished_at": now})
    if result is not None and result.evaluation_id == name:
        done = done.model_copy(update={"pairs_found": result.pairs_found})
    if job is not None and job.failed:
        why = f"evaluation Job {name} failed"
        if job.exit_code is not None:
            why += f" with exit code {job.exit_code}"
        measured = CheckMeasurement(check.name, error=f"{why}: {job.message}".rstrip(": "))
    elif result is None:
        if now - (feedback.started_at or now) < GRACE:
            return Step(status, waiting=True)  # the Job or its result may not be visible yet
        error = observed.feedback.error if observed.feedback is not None else None
        gone = "is gone and" if job is None else "succeeded but"
        measured = CheckMeasurement(
            check.name, error=error or f"evaluation Job {name} {gone} wrote no result"
        )
    elif result.evaluation_id != name:
        measured = CheckMeasurement(
            check.name,
            error=f"{feedback.result_uri} belongs to evaluation {result.evaluation_id!r}, "
            f"not {name!r}",
        )
    elif result.promoted is None or result.previous is None:
        message = (
            f"only {result.pairs_found} fresh pair(s) since {result.since.isoformat()} "
            f"(minPairs {result.min_pairs}); evaluating again after {spec.interval}"
        )
        status = analysis.note(spec, status, check, message)
        return Step(status.model_copy(update={"feedback": done}))
    else:
        measured = CheckMeasurement(
            check.name,
            (result.promoted.accuracy - result.previous.accuracy,),
            detail=f"promoted {result.promoted.accuracy:.4f} vs previous "
            f"{result.previous.accuracy:.4f} agreement on {result.pairs_found} fresh pair(s)",
        )
    status = analysis.record_one(spec, status, check, measured)
    return Step(status.model_copy(update={"feedback": done}))


def stop(status: AnalysisStatus) -> tuple[AnalysisStatus, list[Action]]:
    """The analysis ended: an evaluation Job still under way is of no use any more."""
    feedback = status.feedback
    if feedback is None or feedback.job_name is None:
        return status, []
    done = feedback.model_copy(update={"job_name": None})
    return status.model_copy(update={"feedback": done}), [DeleteJob(feedback.job_name)]


def wait_seconds(spec: AnalysisSpec, status: AnalysisStatus, now: datetime) -> float:
    """Seconds until the next evaluation may start."""
    return max((next_due(spec, status) - now).total_seconds(), 1.0)
