"""What a driver observed about the world, handed to the pure core.

The kopf driver fills these from the Kubernetes API, the local driver from local processes;
the core cannot tell which.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rewardops_operator.api.models import FeedbackEvaluationStatus, Phase, RewardModelUpdate
from rewardops_trainer.contract import FeedbackEvaluation, Report
from rewardops_trainer.contract.report import REPORT_FILE
from rewardops_trainer.storage import join_uri


@dataclass(frozen=True)
class JobState:
    name: str
    active: int = 0
    succeeded: bool = False
    failed: bool = False
    suspended: bool = False
    #: Why it failed: the Job condition's reason/message and the trainer's termination message.
    message: str = ""
    exit_code: int | None = None


@dataclass(frozen=True)
class ReportState:
    """The run's report.json: the report, or why it could not be read."""

    report: Report | None = None
    error: str | None = None


@dataclass(frozen=True)
class FeedbackState:
    """A fresh-feedback evaluation's result, or why it could not be read."""

    result: FeedbackEvaluation | None = None
    error: str | None = None


@dataclass(frozen=True)
class DeploymentState:
    name: str
    generation: int
    observed_generation: int
    desired_replicas: int
    updated_replicas: int
    available_replicas: int
    #: The Deployment's Progressing condition says ProgressDeadlineExceeded.
    progress_deadline_exceeded: bool
    #: Names of the pod template's containers, in order.
    containers: tuple[str, ...]
    #: The current value of the model env var in the serving container (None if unset).
    model_uri: str | None
    #: Who holds the promotion lock (annotation rewardops.dev/promotion-lock), if anyone.
    lock_holder: str | None = None
    #: The model served before the last promotion (annotation rewardops.dev/previous-model):
    #: what a rollback restores when the status lost it (operator died before its patch).
    previous_model: str | None = None


@dataclass(frozen=True)
class CheckMeasurement:
    """What one live-analysis check's provider returned at one time.

    ``values`` holds every number it measured (a Prometheus query may return several series;
    all must pass). Empty values with an ``error`` mean the provider could not be asked (down,
    refused, bad answer); empty values without one mean it answered without usable data (no
    series, NaN, too few samples), explained in ``detail``. Both count as inconclusive.
    """

    name: str
    values: tuple[float, ...] = ()
    detail: str = ""
    error: str | None = None


@dataclass(frozen=True)
class AnalysisMeasurements:
    """One round of measurements, taken by the driver when ``core.analysis.wanted`` said so."""

    checks: tuple[CheckMeasurement, ...]


@dataclass(frozen=True)
class Observations:
    now: datetime
    #: None: no Job by the status's job name exists (or none was expected yet).
    job: JobState | None = None
    #: None: not looked for (the Job has not succeeded) or not found yet.
    report: ReportState | None = None
    #: None: the serving Deployment does not exist.
    deployment: DeploymentState | None = None
    #: None: no live-analysis measurement was due (or analysis is off).
    analysis: AnalysisMeasurements | None = None
    #: The fresh-feedback evaluation Job named in status.analysis.feedback (None: none found).
    feedback_job: JobState | None = None
    #: Its result, read once the Job succeeded (or is gone); None: not looked for.
    feedback: FeedbackState | None = None


def report_to_read(update: RewardModelUpdate, job: JobState | None) -> str | None:
    """Where a driver should read the run's report.json from, given the Job it observed; None
    while the run cannot have one yet. The report counts once the Job succeeded, or while
    Training when the Job is gone (reaped by its TTL after it finished)."""
    status = update.status
    if status is None or not status.run_id:
        return None
    job_gone = job is None and status.phase == Phase.TRAINING
    if not (job_gone or (job is not None and job.succeeded)):
        return None
    return status.report_uri or join_uri(update.spec.output.uri, status.run_id, REPORT_FILE)


def _feedback(update: RewardModelUpdate) -> FeedbackEvaluationStatus | None:
    status = update.status
    analysis = status.analysis if status is not None else None
    return analysis.feedback if analysis is not None else None


def feedback_job_to_observe(update: RewardModelUpdate) -> str | None:
    """The fresh-feedback evaluation Job under way, if any."""
    feedback = _feedback(update)
    return feedback.job_name if feedback is not None else None


def feedback_to_read(update: RewardModelUpdate, job: JobState | None) -> str | None:
    """Where to read the evaluation Job's result from: once it succeeded, or when it is gone
    (reaped after it finished, or never observed)."""
    feedback = _feedback(update)
    if feedback is None or feedback.job_name is None or feedback.result_uri is None:
        return None
    if job is not None and not job.succeeded:
        return None
    return feedback.result_uri
