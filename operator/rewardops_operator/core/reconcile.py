"""The reconcile core: spec + status + observations in, a :class:`Decision` out. No I/O.

Lifecycle::

    Pending -> Training -> Evaluating -> [AwaitingApproval] -> Promoting -> Verifying -> Succeeded
    side exits: Rejected (gates), RolledBack (rollout or live analysis), Failed (Job, report,
    bad config)

Verifying waits for the rollout, then, when ``spec.promotion.analysis`` is set, watches the
promoted model for the analysis window (see :mod:`analysis`) while still holding the promotion
lock; a failed or inconclusive analysis rolls back exactly as a failed rollout does.

Contract with the drivers (kopf, local):

- Carry out ``actions`` in order and stop at the first that fails; patch the status only after
  all succeeded. Every action is idempotent (a Job that exists, a model already set), so
  redoing a decision whose status patch was lost is harmless; that is the restart safety.
- Observe the Job named by ``status.jobName``; read ``status.reportUri`` once that Job succeeded,
  or while Training when the Job is gone (it may have been reaped after finishing).
- Reconcile again on any change of the resource, its Job or its Deployment, and after
  ``requeue_after`` seconds as a safety net.
- Measure the live-analysis checks when ``analysis.wanted(update, now)`` names them, and pass
  the results in ``observed.analysis``. Observe the fresh-feedback evaluation Job named in
  ``status.analysis.feedback.jobName`` and read its result once it succeeded or is gone
  (``observations.feedback_job_to_observe`` / ``feedback_to_read``).

A run belongs to one spec (see :mod:`naming`): a changed spec starts a new run, stopping the
old one unless its model is already rolling out (then that rollout is verified first). The same
spec after a finished run does nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from rewardops_operator.api import conditions as cond
from rewardops_operator.api.conditions import ConditionStatus
from rewardops_operator.api.models import (
    HISTORY_LIMIT,
    AnalysisPhase,
    AnalysisSpec,
    DataStatus,
    HistoryEntry,
    ModelMetricsStatus,
    Phase,
    RewardModelUpdate,
    RewardModelUpdateStatus,
)
from rewardops_operator.core import analysis, feedback
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
from rewardops_operator.core.gates import evaluate_gates
from rewardops_operator.core.naming import is_run_of, lock_holder, model_version, run_id
from rewardops_operator.core.observations import DeploymentState, JobState, Observations
from rewardops_operator.core.run_config import SpecError, build_run_config
from rewardops_operator.settings import OperatorSettings
from rewardops_trainer.contract import ModelEvaluation, Report
from rewardops_trainer.contract.exit_codes import PERMANENT_EXIT_CODES
from rewardops_trainer.contract.report import REPORT_FILE

#: Annotation on the resource that approves a Manual promotion, like spec.promotion.approved.
APPROVE_ANNOTATION = "rewardops.dev/approve"
#: A Job just created may not be visible yet; after this long, a missing Job is lost.
JOB_GRACE = timedelta(minutes=2)
#: report.json may show up a little after the Job's success (object store listings lag).
REPORT_GRACE = timedelta(minutes=2)
#: Seconds until the next look after acting; the watch on the changed object usually wins.
SOON = 5.0
#: Conditions that describe one run; a new run starts without them.
STAGE_CONDITIONS = (
    cond.TRAINED,
    cond.GATES_PASSED,
    cond.APPROVED,
    cond.PROMOTED,
    analysis.ANALYSIS_PASSED,
    cond.ROLLED_BACK,
)

#: Phases that act on the evaluated candidate recorded in status.
AFTER_EVALUATION = frozenset({Phase.AWAITING_APPROVAL, Phase.PROMOTING, Phase.VERIFYING})

EventType = Literal["Normal", "Warning"]


def reconcile(
    update: RewardModelUpdate, observed: Observations, settings: OperatorSettings
) -> Decision:
    """The next status and the actions that lead there, from what the driver observed."""
    return _Reconciler(update, observed, settings).decide()


def on_delete(update: RewardModelUpdate, observed: Observations) -> list[Action]:
    """Clean-up when the resource is deleted: stop its Job and release its promotion lock.

    The served model is left as it is: a model that got that far passed its gates, and
    deletion is no verdict on it.
    """
    actions: list[Action] = []
    status = update.status
    job = observed.job
    if status is not None and status.job_name:
        unfinished = job is not None and not (job.succeeded or job.failed)
        if unfinished or status.phase == Phase.TRAINING:
            actions.append(DeleteJob(status.job_name))
    if status is not None and status.analysis is not None:
        actions.extend(feedback.stop(status.analysis)[1])
    deployment = observed.deployment
    holder = lock_holder(update)
    if deployment is not None and deployment.lock_holder == holder:
        actions.append(ReleaseLock(deployment.name, holder))
    return actions


def _decimal(value: float, places: int = 4) -> str:
    return f"{value:.{places}f}"


def _metrics(evaluation: ModelEvaluation) -> ModelMetricsStatus:
    held_out = evaluation.held_out
    return ModelMetricsStatus(
        model_uri=evaluation.model_uri,
        held_out_accuracy=_decimal(held_out.accuracy),
        golden_accuracy=_decimal(evaluation.golden.accuracy) if evaluation.golden else None,
        mean_loss=_decimal(held_out.mean_loss),
        length_correlation=_decimal(held_out.length_correlation),
        latency_ms_per_pair=_decimal(held_out.latency_ms_per_pair, 3),
        reward_mean=_decimal(held_out.reward_mean),
        reward_std=_decimal(held_out.reward_std),
        score_counts=held_out.score_counts,
    )


def _run_generation(run: str) -> int | None:
    # run ids end in -g<generation>-<digest> (naming.run_id).
    part = run.rsplit("-", 2)[-2] if run.count("-") >= 2 else ""
    return int(part[1:]) if part.startswith("g") and part[1:].isdigit() else None


class _Reconciler:
    def __init__(
        self, update: RewardModelUpdate, observed: Observations, settings: OperatorSettings
    ) -> None:
        self.update = update
        self.spec = update.spec
        self.observed = observed
        self.settings = settings
        self.generation = update.metadata.generation
        self.holder = lock_holder(update)
        self.status = (update.status or RewardModelUpdateStatus()).model_copy(deep=True)
        self.actions: list[Action] = []
        self.requeue: float | None = None
        #: The newest stage message, repeated in Ready while the run is under way.
        self.summary = ""

    # --- plumbing ----------------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        return self.observed.now

    @property
    def phase(self) -> Phase:
        return Phase(self.status.phase or Phase.PENDING)

    def decide(self) -> Decision:
        self.status.observed_generation = self.generation
        if is_run_of(self.status.run_id, self.update) or self._rollout_under_way():
            self._advance()
        else:
            self._supersede()
            self._start()
        if not self.phase.terminal:
            self._set(cond.READY, "False", self.phase.value, self.summary)
        return Decision(status=self.status, actions=self.actions, requeue_after=self.requeue)

    def _set(
        self,
        type_: str,
        status: ConditionStatus,
        reason: str,
        message: str,
        event: EventType | None = None,
    ) -> None:
        """Set a condition; emit ``event`` only when the condition's status or reason changes,
        so that waiting and polling do not repeat Events."""
        previous = cond.find(self.status.conditions, type_)
        self.status.conditions = cond.set_condition(
            self.status.conditions,
            type_,
            status,
            reason,
            message,
            generation=self.generation,
            now=self.now,
        )
        if type_ != cond.READY:
            self.summary = message
        changed = previous is None or (previous.status, previous.reason) != (status, reason)
        if event is not None and changed:
            self.actions.append(EmitEvent(event, reason, message))

    def _wait(self, seconds: float) -> None:
        self.requeue = seconds if self.requeue is None else min(self.requeue, seconds)

    def _finish(self, phase: Phase, reason: str, message: str, event: EventType) -> None:
        status = self.status
        status.phase = phase
        status.finished_at = self.now
        self._set(cond.READY, "True" if phase == Phase.SUCCEEDED else "False", reason, message)
        self.actions.append(EmitEvent(event, reason, message))
        self._record_history(phase, reason)

    def _record_history(self, phase: Phase, reason: str) -> None:
        status = self.status
        run = status.run_id or ""
        entry = HistoryEntry(
            run_id=run,
            generation=_run_generation(run) or self.generation or 0,
            phase=phase,
            reason=reason,
            model_uri=status.candidate.model_uri if status.candidate else None,
            candidate_accuracy=(status.candidate.held_out_accuracy if status.candidate else None),
            finished_at=self.now,
        )
        status.history = [*status.history, entry][-HISTORY_LIMIT:]

    def _container(self, deployment: DeploymentState) -> str | None:
        name = self.spec.serving.container
        if name is None:
            return deployment.containers[0] if deployment.containers else None
        return name if name in deployment.containers else None

    def _candidate_uri(self) -> str:
        # _advance checks that the phases after evaluation have their candidate.
        assert self.status.candidate is not None
        return self.status.candidate.model_uri

    # --- starting and superseding runs --------------------------------------------------------

    def _rollout_under_way(self) -> bool:
        """The candidate is already in the Deployment: verify it before any new run."""
        if self.phase == Phase.VERIFYING:
            return True
        deployment = self.observed.deployment
        return (
            self.phase == Phase.PROMOTING
            and deployment is not None
            and self.status.candidate is not None
            and deployment.model_uri == self.status.candidate.model_uri
        )

    def _supersede(self) -> None:
        """Stop the run of an older spec that has not reached production."""
        phase = self.phase
        old = self.status.run_id
        if old is None or phase.terminal or phase == Phase.PENDING:
            return
        if phase == Phase.TRAINING and self.status.job_name:
            self.actions.append(DeleteJob(self.status.job_name))
        if phase == Phase.PROMOTING:
            self.actions.append(ReleaseLock(self.spec.serving.deployment, self.holder))
        self._record_history(phase, "Superseded")
        self.actions.append(
            EmitEvent(
                "Normal",
                "Superseded",
                f"spec changed (generation {self.generation}): run {old} stopped while {phase}",
            )
        )

    def _start(self) -> None:
        status = self.status
        status.run_id = run_id(self.update)
        status.started_at = self.now
        status.job_name = None
        status.finished_at = None
        status.report_uri = None
        status.data = None
        status.candidate = None
        status.baseline = None
        status.gates = []
        status.previous_model = None
        status.promoted_at = None
        status.analysis = None
        status.conditions = [c for c in status.conditions if c.type not in STAGE_CONDITIONS]
        deployment = self.observed.deployment
        serving = self.spec.serving
        if deployment is None:
            self._reject_config(
                "DeploymentNotFound",
                f"spec.serving.deployment: Deployment {serving.deployment!r} not found in "
                f"namespace {self.update.metadata.namespace or 'default'}",
            )
            return
        container = self._container(deployment)
        if container is None:
            self._reject_config(
                "ContainerNotFound",
                f"spec.serving.container: {serving.container!r} is not a container of "
                f"Deployment {serving.deployment!r} (it has: {', '.join(deployment.containers)})",
            )
            return
        status.served_model = deployment.model_uri
        try:
            config = build_run_config(
                self.update.model_copy(update={"status": status}), self.observed, self.settings
            )
        except SpecError as error:
            self._reject_config("InvalidSpec", str(error))
            return
        status.job_name = config.run_id
        status.report_uri = f"{config.run_uri}/{REPORT_FILE}"
        status.phase = Phase.TRAINING
        self.actions.append(CreateJob(config.run_id, config))
        window = f"{config.since.isoformat()} to {config.until.isoformat()}"
        self._set(
            cond.TRAINED,
            "False",
            "JobCreated",
            f"Job {config.run_id} created: fine-tuning {config.base_model_uri} on telemetry "
            f"from {window}",
            "Normal",
        )
        self._wait(self.settings.poll_seconds)

    def _reject_config(self, reason: str, message: str) -> None:
        """A spec that cannot run: say why, start no Job; a spec change retries."""
        self._set(cond.TRAINED, "False", reason, message)
        self._finish(Phase.FAILED, reason, message, "Warning")

    # --- the phases ----------------------------------------------------------------------------

    def _advance(self) -> None:
        # Each step settles (returns False) or moves forward to the next phase, which then
        # runs at once on the same observations.
        while True:
            phase = self.phase
            if phase.terminal:
                self._finished()
                return
            if phase in AFTER_EVALUATION and self.status.candidate is None:
                # Only a hand-edited or pruned status gets here; guessing could promote junk.
                message = f"status.phase is {phase} but status.candidate is missing"
                self._finish(Phase.FAILED, "StatusInconsistent", message, "Warning")
                return
            step = {
                Phase.PENDING: self._pending,
                Phase.TRAINING: self._training,
                Phase.EVALUATING: self._evaluating,
                Phase.AWAITING_APPROVAL: self._awaiting_approval,
                Phase.PROMOTING: self._promoting,
                Phase.VERIFYING: self._verifying,
            }[phase]
            if not step():
                return

    def _pending(self) -> bool:
        # A status that holds this run but never got past Pending (an older core, a hand
        # edit): start over, which reuses the same deterministic Job name.
        self._start()
        return False

    def _finished(self) -> None:
        """Nothing more to do; only a promotion lock left behind by a lost patch is freed."""
        deployment = self.observed.deployment
        if deployment is not None and deployment.lock_holder == self.holder:
            self.actions.append(ReleaseLock(deployment.name, self.holder))

    def _job(self) -> JobState | None:
        job = self.observed.job
        return job if job is not None and job.name == self.status.job_name else None

    def _report(self) -> Report | None:
        state = self.observed.report
        return state.report if state is not None else None

    def _training(self) -> bool:
        job = self._job()
        name = self.status.job_name
        if job is None:
            if self._report() is not None:
                # The Job finished and was reaped (ttlSecondsAfterFinished) while nobody looked.
                self._set(
                    cond.TRAINED, "True", "JobSucceeded", f"Job {name} is gone; its report exists"
                )
                self.status.phase = Phase.EVALUATING
                return True
            started = self.status.started_at or self.now
            if self.now - started < JOB_GRACE:
                self._set(cond.TRAINED, "False", "JobCreated", f"waiting for Job {name} to appear")
                self._wait(SOON)
                return False
            message = f"Job {name} no longer exists and its run wrote no report"
            self._set(cond.TRAINED, "False", "JobLost", message)
            self._finish(Phase.FAILED, "JobLost", message, "Warning")
            return False
        if job.failed:
            message = f"Job {name} failed"
            if job.exit_code is not None:
                message += f" with exit code {job.exit_code}"
                if job.exit_code in PERMANENT_EXIT_CODES:
                    message += " (bad config or data: not retried)"
            if job.message:
                message += f": {job.message}"
            self._set(cond.TRAINED, "False", "JobFailed", message)
            self._finish(Phase.FAILED, "JobFailed", message, "Warning")
            return False
        if job.succeeded:
            self._set(cond.TRAINED, "True", "JobSucceeded", f"Job {name} succeeded", "Normal")
            self.status.phase = Phase.EVALUATING
            return True
        if job.suspended:
            queue = self.spec.training.queue_name
            where = f"Kueue queue {queue!r}" if queue else "the Job's suspension"
            message = f"Job {name} is suspended; waiting on {where}"
            self._set(cond.TRAINED, "False", "JobSuspended", message)
        else:
            message = f"Job {name} running ({job.active} active pod(s))"
            self._set(cond.TRAINED, "False", "JobRunning", message)
        self._wait(self.settings.poll_seconds)
        return False

    def _evaluating(self) -> bool:
        report = self._report()
        status = self.status
        if report is None:
            error = self.observed.report.error if self.observed.report else None
            trained = cond.find(status.conditions, cond.TRAINED)
            since = trained.last_transition_time if trained else self.now
            if self.now - since < REPORT_GRACE:
                self._set(
                    cond.GATES_PASSED,
                    "False",
                    "WaitingForReport",
                    f"waiting for {status.report_uri}" + (f" ({error})" if error else ""),
                )
                self._wait(SOON)
                return False
            message = error or f"{status.report_uri} was not found after the Job succeeded"
            self._set(cond.GATES_PASSED, "False", "ReportUnreadable", message)
            self._finish(Phase.FAILED, "ReportUnreadable", message, "Warning")
            return False
        if report.run_id != status.run_id:
            message = f"{status.report_uri} belongs to run {report.run_id!r}, not {status.run_id!r}"
            self._set(cond.GATES_PASSED, "False", "ReportMismatch", message)
            self._finish(Phase.FAILED, "ReportMismatch", message, "Warning")
            return False
        data = report.data
        status.data = DataStatus(
            events_read=data.events_read,
            events_rejected=data.events_rejected,
            events_without_consent=data.events_without_consent,
            redactions=data.redactions,
            pairs_train=data.pairs_train,
            pairs_validation=data.pairs_validation,
            pairs_golden=data.pairs_golden,
        )
        status.candidate = _metrics(report.candidate)
        status.baseline = _metrics(report.baseline) if report.baseline else None
        status.gates = evaluate_gates(self.spec.gates, report)
        failed = [gate for gate in status.gates if not gate.passed]
        if failed:
            message = "; ".join(f"{gate.name}: {gate.message}" for gate in failed)
            self._set(cond.GATES_PASSED, "False", "GatesFailed", message)
            self._finish(Phase.REJECTED, "GatesFailed", message, "Warning")
            return False
        held_out = status.candidate.held_out_accuracy
        versus = f" vs served {status.baseline.held_out_accuracy}" if status.baseline else ""
        self._set(
            cond.GATES_PASSED,
            "True",
            "GatesPassed",
            f"all {len(status.gates)} gates passed: held-out accuracy {held_out}{versus}",
            "Normal",
        )
        status.phase = Phase.AWAITING_APPROVAL
        return True

    def _approval(self) -> tuple[str, str] | None:
        """(reason, message) when promotion may go ahead, else None."""
        promotion = self.spec.promotion
        if promotion.mode == "Automatic":
            return "Automatic", "promotion mode is Automatic"
        if promotion.approved:
            return "ApprovedInSpec", "spec.promotion.approved is true"
        if self.update.metadata.annotations.get(APPROVE_ANNOTATION) == "true":
            return "ApprovedByAnnotation", f"annotation {APPROVE_ANNOTATION}=true"
        return None

    def _awaiting_approval(self) -> bool:
        approval = self._approval()
        if approval is None:
            self._set(
                cond.APPROVED,
                "False",
                "AwaitingApproval",
                f"candidate {self._candidate_uri()} passed its gates; set "
                f"spec.promotion.approved: true or annotate {APPROVE_ANNOTATION}=true to promote",
                "Normal",
            )
            self.status.phase = Phase.AWAITING_APPROVAL
            return False
        reason, message = approval
        self._set(cond.APPROVED, "True", reason, message, "Normal")
        self.status.phase = Phase.PROMOTING
        return True

    def _promoting(self) -> bool:
        deployment = self.observed.deployment
        candidate = self._candidate_uri()
        serving = self.spec.serving
        if deployment is None:
            message = f"Deployment {serving.deployment!r} disappeared before promotion"
            self._set(cond.PROMOTED, "False", "DeploymentNotFound", message)
            self._finish(Phase.FAILED, "DeploymentNotFound", message, "Warning")
            return False
        container = self._container(deployment)
        if container is None:
            message = f"Deployment {deployment.name!r} has no container {serving.container!r}"
            self.actions.append(ReleaseLock(deployment.name, self.holder))
            self._set(cond.PROMOTED, "False", "ContainerNotFound", message)
            self._finish(Phase.FAILED, "ContainerNotFound", message, "Warning")
            return False
        if deployment.model_uri == candidate:
            # Set already; the status patch that should have said so was lost (restart).
            self.status.previous_model = self.status.previous_model or deployment.previous_model
            self.status.served_model = candidate
            self.status.promoted_at = self.status.promoted_at or self.now
            self.status.phase = Phase.VERIFYING
            return True
        if deployment.lock_holder is None:
            self.actions.append(AcquireLock(deployment.name, self.holder))
            self._set(
                cond.PROMOTED,
                "False",
                "AcquiringLock",
                f"taking the promotion lock on Deployment {deployment.name!r}",
            )
            self._wait(SOON)
            return False
        if deployment.lock_holder != self.holder:
            self._set(
                cond.PROMOTED,
                "False",
                "WaitingForLock",
                f"Deployment {deployment.name!r} is being promoted by "
                f"{deployment.lock_holder}; waiting for its lock",
                "Normal",
            )
            self._wait(self.settings.poll_seconds)
            return False
        previous = deployment.model_uri
        self.actions.append(
            SetServedModel(
                deployment=deployment.name,
                container=container,
                env=serving.model_env,
                model_uri=candidate,
                model_version=model_version(candidate),
                previous_model_uri=previous,
            )
        )
        self.status.previous_model = previous
        self.status.served_model = candidate
        self.status.promoted_at = self.now
        self.status.phase = Phase.VERIFYING
        self._set(
            cond.PROMOTED,
            "False",
            "RollingOut",
            f"Deployment {deployment.name!r} now serves {candidate} (was {previous}); "
            "waiting for the rollout",
            "Normal",
        )
        self._wait(SOON)
        return False

    def _verifying(self) -> bool:
        deployment = self.observed.deployment
        candidate = self._candidate_uri()
        if deployment is None:
            message = f"Deployment {self.spec.serving.deployment!r} disappeared during its rollout"
            self._set(cond.PROMOTED, "False", "DeploymentNotFound", message)
            self._finish(Phase.FAILED, "DeploymentNotFound", message, "Warning")
            return False
        if self.status.analysis is not None and self.spec.promotion.analysis is not None:
            # The rollout completed earlier; replica counts no longer decide anything.
            return self._analysing(deployment, self.spec.promotion.analysis)
        promoted_at = self.status.promoted_at or self.now
        deadline = promoted_at + timedelta(seconds=self.spec.promotion.rollout_deadline_seconds)
        ours = deployment.model_uri == candidate
        # Replica counts describe our template only once the controller saw its generation.
        current = ours and deployment.observed_generation >= deployment.generation
        desired = deployment.desired_replicas
        counts = (
            f"{deployment.updated_replicas}/{desired} updated, "
            f"{deployment.available_replicas}/{desired} available"
        )
        if current and min(deployment.updated_replicas, deployment.available_replicas) >= desired:
            message = (
                f"{candidate} serves in Deployment {deployment.name!r} "
                f"(generation {deployment.generation}, {counts})"
            )
            self._set(cond.PROMOTED, "True", "RolloutComplete", message)
            spec = self.spec.promotion.analysis
            if spec is not None:
                self.status.analysis = analysis.start(spec, self.now)
                self._set(
                    analysis.ANALYSIS_PASSED,
                    "Unknown",
                    analysis.RUNNING,
                    f"{message}; {self.status.analysis.message}",
                    "Normal",
                )
                wait = analysis.wait_seconds(spec, self.status.analysis, self.now)
                self._wait(min(self.settings.poll_seconds, wait))
                return False
            self.actions.append(ReleaseLock(deployment.name, self.holder))
            self._finish(Phase.SUCCEEDED, "Succeeded", message, "Normal")
            return False
        if current and deployment.progress_deadline_exceeded:
            self._roll_back(
                deployment,
                "ProgressDeadlineExceeded",
                f"Deployment {deployment.name!r} exceeded its progress deadline ({counts})",
            )
            return False
        if self.now >= deadline:
            self._roll_back(
                deployment,
                "RolloutDeadlineExceeded",
                f"rollout not complete after spec.promotion.rolloutDeadlineSeconds="
                f"{self.spec.promotion.rollout_deadline_seconds} ({counts})",
            )
            return False
        if ours:
            message = f"rolling out {candidate}: {counts}"
        else:
            message = (
                f"the serving container's {self.spec.serving.model_env} is "
                f"{deployment.model_uri}, not {candidate} (a stale view, or overwritten, "
                "e.g. by a GitOps sync)"
            )
        self._set(cond.PROMOTED, "False", "RollingOut", message)
        remaining = (deadline - self.now).total_seconds()
        self._wait(min(self.settings.poll_seconds, max(remaining, 1.0)))
        return False

    def _analysing(self, deployment: DeploymentState, spec: AnalysisSpec) -> bool:
        candidate = self._candidate_uri()
        state = self.status.analysis
        assert state is not None  # _verifying comes here only with an analysis under way
        if deployment.model_uri != candidate:
            # Someone else (a person, a GitOps sync) changed the model: not ours to undo.
            message = (
                f"the serving container's {self.spec.serving.model_env} became "
                f"{deployment.model_uri} during the live analysis of {candidate}; left as it is"
            )
            self.actions.append(ReleaseLock(deployment.name, self.holder))
            self._set(cond.PROMOTED, "False", "ModelReplaced", message)
            self._finish(Phase.FAILED, "ModelReplaced", message, "Warning")
            return False
        measured = self.observed.analysis
        if measured is not None and analysis.is_due(spec, state, self.now):
            state = analysis.record(spec, state, measured, self.now)
        evaluation = feedback.step(self.update, spec, state, self.observed, self.settings)
        state = evaluation.status
        self.actions.extend(evaluation.actions)
        verdict = analysis.judge(spec, state, self.now)
        if verdict.phase != AnalysisPhase.RUNNING:
            state, stopped = feedback.stop(state)
            self.actions.extend(stopped)
        self.status.analysis = state.model_copy(
            update={"phase": verdict.phase, "message": verdict.message}
        )
        if verdict.phase == AnalysisPhase.RUNNING:
            self._set(analysis.ANALYSIS_PASSED, "Unknown", verdict.reason, verdict.message)
            wait = analysis.wait_seconds(spec, state, self.now)
            if analysis.feedback_check(spec) is not None:
                wait = min(wait, feedback.wait_seconds(spec, state, self.now))
            if evaluation.waiting:
                # The Job's own watch event usually comes first.
                wait = self.settings.poll_seconds
            self._wait(min(self.settings.poll_seconds, wait))
            return False
        if verdict.phase == AnalysisPhase.PASSED:
            self._set(analysis.ANALYSIS_PASSED, "True", verdict.reason, verdict.message, "Normal")
            self.actions.append(ReleaseLock(deployment.name, self.holder))
            self._finish(
                Phase.SUCCEEDED, "Succeeded", f"{candidate} serves; {verdict.message}", "Normal"
            )
            return False
        self._set(analysis.ANALYSIS_PASSED, "False", verdict.reason, verdict.message)
        self._roll_back(deployment, verdict.reason, verdict.message)
        return False

    def _roll_back(self, deployment: DeploymentState, reason: str, why: str) -> None:
        candidate = self._candidate_uri()
        previous = self.status.previous_model or deployment.previous_model
        container = self._container(deployment)
        if previous is None or previous == candidate or container is None:
            message = f"{why}; no previous model to restore, {candidate} stays in place"
            self.actions.append(ReleaseLock(deployment.name, self.holder))
            self._set(cond.ROLLED_BACK, "False", "NothingToRestore", message)
            self._set(cond.PROMOTED, "False", reason, message)
            self._finish(Phase.FAILED, reason, message, "Warning")
            return
        # Restore before releasing, so no other update slips in between.
        self.actions.append(
            SetServedModel(
                deployment=deployment.name,
                container=container,
                env=self.spec.serving.model_env,
                model_uri=previous,
                model_version=model_version(previous),
                previous_model_uri=candidate,
            )
        )
        self.actions.append(ReleaseLock(deployment.name, self.holder))
        self.status.served_model = previous
        message = f"{why}; restored {previous}"
        self._set(cond.ROLLED_BACK, "True", reason, message)
        self._set(cond.PROMOTED, "False", "RolledBack", message)
        self._finish(Phase.ROLLED_BACK, reason, message, "Warning")
