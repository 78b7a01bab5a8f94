"""The local driver: the operator's reconcile core with local adapters.

The training Job is a local trainer process, the serving Deployment a local scorer behind one
port, object storage a directory (or any S3 endpoint). The core gets the same observations and
returns the same decisions as under the operator; only the hands that carry them out differ.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from rewardops_operator.analysis.measure import measure_all, offline_scores
from rewardops_operator.api.models import (
    Phase,
    RewardModelUpdate,
    RewardModelUpdateStatus,
    ServingMetricsCheckSpec,
)
from rewardops_operator.core.actions import (
    AcquireLock,
    Action,
    CreateFeedbackJob,
    CreateJob,
    DeleteJob,
    EmitEvent,
    ReleaseLock,
    SetServedModel,
)
from rewardops_operator.core.analysis import wanted
from rewardops_operator.core.observations import (
    Observations,
    feedback_job_to_observe,
    feedback_to_read,
    report_to_read,
)
from rewardops_operator.core.reconcile import reconcile
from rewardops_operator.local.jobs import LocalJobs
from rewardops_operator.local.serving import LocalDeployment
from rewardops_operator.reports import read_feedback, read_report
from rewardops_operator.settings import OperatorSettings
from rewardops_trainer.contract import StorageSettings

#: How often the loop looks again while waiting on a process.
POLL_SECONDS = 0.5


def _no_secrets(name: str, key: str) -> str:
    raise LookupError(
        f"Secret {name} (key {key}) cannot be read by `rewardops run`: there is no cluster; "
        "use a Prometheus check without auth locally"
    )


@dataclass
class LocalUpdate:
    """One RewardModelUpdate as the local driver holds it: object, status and event log."""

    update: RewardModelUpdate
    status: RewardModelUpdateStatus = field(default_factory=RewardModelUpdateStatus)
    events: list[EmitEvent] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.update.metadata.name

    @property
    def finished(self) -> bool:
        phase = self.status.phase
        return (
            phase is not None
            and Phase(phase).terminal
            and self.status.observed_generation == self.update.metadata.generation
        )

    def current(self) -> RewardModelUpdate:
        return self.update.model_copy(update={"status": self.status})


class LocalDriver:
    """Drives updates through the core until each finishes (or waits for approval)."""

    def __init__(
        self,
        *,
        jobs: LocalJobs,
        deployments: dict[str, LocalDeployment],
        settings: OperatorSettings,
        storage: StorageSettings,
        on_change: Callable[[LocalUpdate, RewardModelUpdateStatus, list[Action]], None],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.jobs = jobs
        self.deployments = deployments
        self.settings = settings
        self.storage = storage
        self.on_change = on_change
        self.clock = clock

    def observe(self, item: LocalUpdate) -> Observations:
        now = self.clock()
        status = item.status
        job = self.jobs.observe(status.job_name)
        uri = report_to_read(item.current(), job)
        report = read_report(uri, self.storage) if uri else None
        deployment = self.deployments.get(item.update.spec.serving.deployment)
        analysis = None
        spec = wanted(item.current(), now)
        if spec is not None and deployment is not None:
            port = deployment.serve_port

            def targets(check: ServingMetricsCheckSpec) -> list[str]:
                # The local scorer answers on the serving port, whatever the pods' port.
                return [f"http://127.0.0.1:{port}{check.path}"]

            analysis = measure_all(
                spec, offline_scores(status), targets=targets, secret=_no_secrets
            )
        feedback_job = self.jobs.observe(feedback_job_to_observe(item.current()))
        result_uri = feedback_to_read(item.current(), feedback_job)
        return Observations(
            now=now,
            job=job,
            report=report,
            deployment=deployment.observe() if deployment else None,
            analysis=analysis,
            feedback_job=feedback_job,
            feedback=read_feedback(result_uri, self.storage) if result_uri else None,
        )

    def step(self, item: LocalUpdate) -> float | None:
        """One reconcile: observe, decide, act. Returns the core's requeue hint."""
        decision = reconcile(item.current(), self.observe(item), self.settings)
        for action in decision.actions:
            self.apply(item, action)
        if decision.status != item.status or decision.actions:
            self.on_change(item, decision.status, decision.actions)
        item.status = decision.status
        return decision.requeue_after

    def apply(self, item: LocalUpdate, action: Action) -> None:
        match action:
            case CreateJob(name=name, run_config=config):
                self.jobs.create(name, config)
            case CreateFeedbackJob(name=name, config=feedback_config):
                self.jobs.create(name, feedback_config)
            case DeleteJob(name=name):
                self.jobs.delete(name)
            case AcquireLock(deployment=deployment, holder=holder):
                target = self.deployments[deployment]
                if target.lock_holder is None:
                    target.lock_holder = holder
            case ReleaseLock(deployment=deployment, holder=holder):
                target = self.deployments[deployment]
                if target.lock_holder == holder:
                    target.lock_holder = None
            case SetServedModel():
                self.deployments[action.deployment].set_model(action)
            case EmitEvent():
                item.events.append(action)

    def run(self, item: LocalUpdate, until: Callable[[LocalUpdate], bool] | None = None) -> None:
        """Reconcile until the update finishes (or ``until`` says stop)."""
        stop = until or (lambda current: current.finished)
        while not stop(item):
            requeue = self.step(item)
            if stop(item):
                break
            time.sleep(min(requeue or POLL_SECONDS, POLL_SECONDS))


def with_generation(update: RewardModelUpdate) -> RewardModelUpdate:
    """A resource read from a file has no generation or uid yet; the API server would add them."""
    meta = update.metadata
    changes: dict[str, object] = {}
    if meta.generation is None:
        changes["generation"] = 1
    if meta.uid is None:
        changes["uid"] = f"local-{meta.name}"
    if meta.namespace is None:
        changes["namespace"] = "default"
    return update.model_copy(update={"metadata": meta.model_copy(update=changes)})
