from __future__ import annotations

from rewardops_operator.api.models import Phase, RewardModelUpdate, RewardModelUpdateStatus
from rewardops_operator.core.observations import JobState, report_to_read


def update_with(status: RewardModelUpdateStatus | None) -> RewardModelUpdate:
    return RewardModelUpdate.model_validate(
        {
            "metadata": {"name": "u"},
            "spec": {
                "serving": {"deployment": "d"},
                "telemetry": {"uri": "s3://t/"},
                "output": {"uri": "s3://o/runs/"},
            },
            "status": status.model_dump(by_alias=True) if status else None,
        }
    )


TRAINING = RewardModelUpdateStatus(phase=Phase.TRAINING, run_id="u-g1-abc", job_name="u-g1-abc")


def test_the_report_is_read_once_the_job_succeeded() -> None:
    update = update_with(TRAINING)
    assert report_to_read(update, JobState(name="u-g1-abc", active=1)) is None
    done = JobState(name="u-g1-abc", succeeded=True)
    assert report_to_read(update, done) == "s3://o/runs/u-g1-abc/report.json"


def test_a_reaped_job_while_training_still_reads_the_report() -> None:
    assert report_to_read(update_with(TRAINING), None) == "s3://o/runs/u-g1-abc/report.json"
    pending = RewardModelUpdateStatus(phase=Phase.PENDING, run_id="u-g1-abc")
    assert report_to_read(update_with(pending), None) is None


def test_no_run_means_no_report_and_a_recorded_uri_wins() -> None:
    assert report_to_read(update_with(None), None) is None
    recorded = TRAINING.model_copy(update={"report_uri": "s3://elsewhere/report.json"})
    done = JobState(name="u-g1-abc", succeeded=True)
    assert report_to_read(update_with(recorded), done) == "s3://elsewhere/report.json"
