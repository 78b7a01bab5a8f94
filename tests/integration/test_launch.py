"""`rewardops-trainer launch`: data-parallel training as one process per rank (gloo on CPU
here, NCCL on GPUs), with the ranks' own exit code for the Job's podFailurePolicy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rewardops_trainer.contract import RUN_CONFIG_ENV, ExitCode, Report
from rewardops_trainer.launch import exit_code_of
from tests.integration.test_train_run import _config, sources  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        ([0, 0], 0),
        ([1, 3], 3),  # a bad config on one rank, the other crashed in a collective
        ([4, 1], 4),
        ([130, 130], 130),
        ([1, 130], 130),
        ([-9, 0], 1),  # killed by a signal: a crash
        ([2, 4], 2),
    ],
)
def test_the_pod_exits_with_the_most_telling_rank_code(codes: list[int], expected: int) -> None:
    assert exit_code_of(codes) == expected


def _launch(config_json: str, tmp_path: Path, nproc: int = 2) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("RANK", "WORLD"))}
    env.update({RUN_CONFIG_ENV: config_json, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)})
    command = [sys.executable, "-m", "rewardops_trainer", "launch"]
    command += [f"--nproc-per-node={nproc}", "train", "--no-progress"]
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def test_a_bad_config_exits_3_from_every_rank(tmp_path: Path) -> None:
    finished = _launch('{"runId": "Bad Name"}', tmp_path)
    assert finished.returncode == ExitCode.CONFIG_OR_DATA, finished.stderr
    assert finished.stderr.count("error: run config from $REWARDOPS_RUN_CONFIG") == 2


def test_two_ranks_train_one_model_and_publish_one_report(
    sources: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    config = _config(sources, f"file://{tmp_path}/out")
    finished = _launch(config.to_json(), tmp_path)
    assert finished.returncode == 0, finished.stderr[-3000:]
    report = Report.model_validate_json((tmp_path / "out" / "run-1" / "report.json").read_text())
    # Both ranks share each optimizer step: as many steps as one process would take.
    pairs = report.data.pairs_train
    batch = config.hyperparameters.batch_size
    assert report.training.steps == config.hyperparameters.epochs * -(-pairs // batch)
    assert report.baseline is not None
    assert report.candidate.held_out.accuracy > report.baseline.held_out.accuracy
