"""Read what trainer Jobs write back: a run's report.json, the one thing the core trusts about a
finished run, and a fresh-feedback evaluation's result.

Both drivers call these: the kopf driver with credentials from the update's Secret, the local
driver with the environment's.
"""

from __future__ import annotations

from pydantic import ValidationError

from rewardops_operator.core.observations import FeedbackState, ReportState
from rewardops_trainer.contract import FeedbackEvaluation, Report, StorageSettings
from rewardops_trainer.storage import Credentials, StorageError, open_store


def _read(
    uri: str, storage: StorageSettings, credentials: Credentials | None
) -> tuple[bytes | None, str | None]:
    """(content, None), or (None, why not)."""
    directory, name = uri.rsplit("/", 1)
    try:
        store = open_store(directory, storage, credentials=credentials)
        if not store.exists(name):
            return None, f"{uri} does not exist"
        with store.open_read(name) as stream:
            return stream.read(), None
    except (StorageError, ValueError, OSError) as error:
        return None, f"{uri}: {error}"


def read_report(
    uri: str, storage: StorageSettings, *, credentials: Credentials | None = None
) -> ReportState:
    """The report at ``uri``, or why it cannot be used; absent means the run is not complete."""
    raw, error = _read(uri, storage, credentials)
    if raw is None:
        return ReportState(error=error)
    try:
        return ReportState(report=Report.model_validate_json(raw))
    except ValidationError as invalid:
        return ReportState(error=f"{uri}: not a valid report: {invalid}")


def read_feedback(
    uri: str, storage: StorageSettings, *, credentials: Credentials | None = None
) -> FeedbackState:
    """A fresh-feedback evaluation's result at ``uri``, or why it cannot be used."""
    raw, error = _read(uri, storage, credentials)
    if raw is None:
        return FeedbackState(error=error)
    try:
        return FeedbackState(result=FeedbackEvaluation.model_validate_json(raw))
    except ValidationError as invalid:
        return FeedbackState(error=f"{uri}: not a valid evaluation result: {invalid}")
