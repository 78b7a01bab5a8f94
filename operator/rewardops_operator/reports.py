"""Read a run's report.json, the one thing the core trusts about a finished run.

Both drivers call this: the kopf driver with credentials from the update's Secret, the local
driver with the environment's.
"""

from __future__ import annotations

from pydantic import ValidationError

from rewardops_operator.core.observations import ReportState
from rewardops_trainer.contract import Report, StorageSettings
from rewardops_trainer.storage import Credentials, StorageError, open_store


def read_report(
    uri: str, storage: StorageSettings, *, credentials: Credentials | None = None
) -> ReportState:
    """The report at ``uri``, or why it cannot be used; absent means the run is not complete."""
    directory, name = uri.rsplit("/", 1)
    try:
        store = open_store(directory, storage, credentials=credentials)
        if not store.exists(name):
            return ReportState(error=f"{uri} does not exist")
        with store.open_read(name) as stream:
            raw = stream.read()
    except (StorageError, ValueError, OSError) as error:
        return ReportState(error=f"{uri}: {error}")
    try:
        return ReportState(report=Report.model_validate_json(raw))
    except ValidationError as error:
        return ReportState(error=f"{uri}: not a valid report: {error}")
