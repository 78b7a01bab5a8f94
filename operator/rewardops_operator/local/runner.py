"""`rewardops run`: run the updates of a file to the end on this machine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from rewardops_operator.api.models import Phase, RewardModelUpdate
from rewardops_operator.api.validation import check_file, is_update, iter_documents
from rewardops_operator.local.console import report_change, status_yaml
from rewardops_operator.local.driver import LocalDriver, LocalUpdate, with_generation
from rewardops_operator.local.jobs import LocalJobs
from rewardops_operator.local.serving import LocalDeployment
from rewardops_operator.local.uris import localize, to_local
from rewardops_operator.settings import OperatorSettings
from rewardops_trainer.contract import StorageSettings

#: Exit codes of `rewardops run`, by the worst outcome among the file's updates.
EXIT_CODES = {
    Phase.SUCCEEDED: 0,
    Phase.REJECTED: 10,
    Phase.ROLLED_BACK: 11,
    Phase.FAILED: 12,
    Phase.AWAITING_APPROVAL: 13,
}
EXIT_INVALID = 1
EXIT_INTERRUPTED = 130


class InvalidInput(click.ClickException):
    exit_code = EXIT_INVALID


@dataclass(frozen=True)
class RunOptions:
    store: Path
    work_dir: Path
    serve_port: int
    served_model: str | None
    s3_endpoint: str | None = None
    s3_secure: bool = False
    approve: bool = False
    echo_trainer: bool = True


def load_updates(path: Path) -> list[RewardModelUpdate]:
    count, problems = check_file(path)
    if problems:
        raise InvalidInput("\n".join(str(problem) for problem in problems))
    if count == 0:
        raise InvalidInput(f"{path}: no RewardModelUpdate in the file")
    documents = (doc for _, doc in iter_documents(path.read_text()))
    return [RewardModelUpdate.model_validate(doc) for doc in documents if is_update(doc)]


def prepare(update: RewardModelUpdate, options: RunOptions) -> RewardModelUpdate:
    update = with_generation(update)
    if options.s3_endpoint is None:
        update = localize(update, options.store)
    if options.approve:
        promotion = update.spec.promotion.model_copy(update={"approved": True})
        update = update.model_copy(
            update={"spec": update.spec.model_copy(update={"promotion": promotion})}
        )
    return update


def stop_here(item: LocalUpdate) -> bool:
    return item.finished or item.status.phase == Phase.AWAITING_APPROVAL


class LocalEnvironment:
    """The local Jobs and Deployments a set of updates share, started and stopped together."""

    def __init__(self, updates: list[RewardModelUpdate], options: RunOptions) -> None:
        self.options = options
        s3_env = (
            {}
            if options.s3_endpoint is None
            else {
                "S3_ENDPOINT": options.s3_endpoint,
                "S3_SECURE": "true" if options.s3_secure else "false",
            }
        )
        self.storage = StorageSettings(endpoint=options.s3_endpoint, secure=options.s3_secure)
        logs = options.work_dir / "logs"
        self.jobs = LocalJobs(logs, s3_env, echo=options.echo_trainer)
        served = options.served_model
        if served is not None and options.s3_endpoint is None:
            served = to_local(served, options.store)
        self.deployments: dict[str, LocalDeployment] = {}
        for update in updates:
            serving = update.spec.serving
            if serving.deployment not in self.deployments:
                self.deployments[serving.deployment] = LocalDeployment(
                    serving.deployment,
                    serve_port=options.serve_port + len(self.deployments),
                    log_dir=logs,
                    env=s3_env,
                    model_uri=served,
                    container=serving.container or "scorer",
                    model_env=serving.model_env,
                )

    def driver(self) -> LocalDriver:
        return LocalDriver(
            jobs=self.jobs,
            deployments=self.deployments,
            settings=OperatorSettings(storage_endpoint=self.options.s3_endpoint),
            storage=self.storage,
            on_change=report_change,
        )

    def start(self) -> None:
        for deployment in self.deployments.values():
            click.echo(
                f"serving {deployment.name} on http://127.0.0.1:{deployment.serve_port}"
                f" (model: {deployment.model_uri or 'none yet'})"
            )
            deployment.start()

    def stop(self) -> None:
        self.jobs.stop_all()
        for deployment in self.deployments.values():
            deployment.stop()


def save_status(item: LocalUpdate, work_dir: Path) -> Path:
    path = work_dir / "status" / f"{item.name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(status_yaml(item.status))
    return path


def exit_code(items: list[LocalUpdate]) -> int:
    codes = [
        EXIT_CODES.get(Phase(item.status.phase), EXIT_INVALID)
        for item in items
        if item.status.phase is not None
    ]
    return max(codes, default=EXIT_INVALID)


def run_updates(updates: list[RewardModelUpdate], options: RunOptions) -> list[LocalUpdate]:
    """Run each update to its end, one after the other; statuses are saved as they finish."""
    items = [LocalUpdate(prepare(update, options)) for update in updates]
    environment = LocalEnvironment([item.update for item in items], options)
    try:
        environment.start()
        driver = environment.driver()
        for item in items:
            driver.run(item, until=stop_here)
            path = save_status(item, options.work_dir)
            click.echo(f"[{item.name}] status saved to {path}")
    finally:
        environment.stop()
    return items
